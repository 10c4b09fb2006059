"""The worker side of the server: the Celery app (``celery -A workers.app worker``), its
tasks and sweeps, the execution runtime, the dev stack and the server commands.

Importing the package does not build the Celery app: server tools that live here (the
``reprise`` server commands, the dev stack) must be importable before settings are final
(the test suite starts its embedded servers first) and without the server's dependencies.
"""
