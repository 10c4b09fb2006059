"""Cron schedules kept in Postgres and fired by a beat sweep."""
