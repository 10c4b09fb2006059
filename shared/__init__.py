"""Reprise's domain: every state change of runs, commands, timers and keys lives here."""
