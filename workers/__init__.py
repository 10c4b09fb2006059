"""Celery workers and beat (``reprise worker`` / ``reprise beat``; the app is
:data:`workers.app.app`, e.g. ``celery -A workers.app worker``).

Importing the package does not build the Celery app: server tools that live here (the
``reprise`` server commands, the dev stack) must be importable before settings are final
(the test suite starts its embedded servers first) and without the server's dependencies.
"""
