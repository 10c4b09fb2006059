"""Replay and reschedule as durable commands: an outbox in Postgres, applied by workers (§2)."""
