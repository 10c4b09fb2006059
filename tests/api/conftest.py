"""Fixtures of the API tests: ``parked_commands`` (replays, reschedules and edits whose
commands wait in a queue no worker consumes until the test delivers them)."""

from tests.support.commands import parked_commands  # noqa: F401
