"""Timers for delayed runs: Postgres holds the truth, Celery ETA tasks are a fast path."""
