"""Public identifiers: a prefix and 24 unguessable url-safe characters."""

from __future__ import annotations

import re
import secrets

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_ID_LENGTH = 24
RUN_ID_RE = re.compile(r"^run_[0-9A-Za-z_-]{4,64}$")


def _random(length: int = _ID_LENGTH) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def new_id(prefix: str) -> str:
    return f"{prefix}_{_random()}"


def new_run_id() -> str:
    return new_id("run")


def new_attempt_id() -> str:
    return new_id("attempt")


def new_command_id() -> str:
    return new_id("cmd")


def is_run_id(value: str) -> bool:
    return bool(RUN_ID_RE.match(value))
