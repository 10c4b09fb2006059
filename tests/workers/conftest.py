"""Fixtures of tests that run real worker, control and beat processes."""

from tests.support.processes import own_queues

__all__ = ["own_queues"]
