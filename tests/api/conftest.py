"""Fixtures of command tests."""

from tests.support.commands import parked_commands  # noqa: F401
