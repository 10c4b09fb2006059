"""Fixtures of the flow control tests: a queue prefix of their own, so what the admissions
publish reaches no worker (these tests play the worker themselves)."""

from tests.support.processes import own_queues

__all__ = ["own_queues"]
