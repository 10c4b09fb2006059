"""Replay and reschedule as durable commands: an outbox in Postgres, applied by the
control process (docs/architecture.md#commands)."""
