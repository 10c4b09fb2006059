"""The worker side of the server: the Celery app (``celery -A workers.app worker``), its
tasks and sweeps, the execution runtime, and the operator processes.

Importing this package loads nothing: the Celery app reads settings when it is built, so
it is built only where it is imported (``workers.app``).
"""
