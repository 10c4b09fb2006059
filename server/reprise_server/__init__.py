"""The Reprise server: the api (``reprise_server.api``), the Celery worker and control
processes (``reprise_server.workers``), the domain they share (``reprise_server.shared``)
and the demo tasks (``reprise_server.examples``).

The four subpackages are the repository's top-level folders, linked here so that the server
installs under one name of its own (``pip install ./server``) and never claims a generic
top-level name such as ``api`` or ``shared`` in a user's environment. See
``docs/architecture.md`` for how the processes fit together.
"""
