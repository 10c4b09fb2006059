"""Celery workers and beat: ``celery -A workers worker`` / ``celery -A workers beat``."""

from workers.app import app

__all__ = ["app"]
