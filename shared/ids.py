"""Public identifiers (a prefix and 24 unguessable url-safe characters), and the shape of a
task's identifier."""

from __future__ import annotations

import re
import secrets

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_ID_LENGTH = 24
RUN_ID_RE = re.compile(r"^run_[0-9A-Za-z_-]{4,64}$")
# A task's identifier, as a trigger or a schedule names it.
TASK_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$")


def _random(length: int = _ID_LENGTH) -> str:
    # One read of the system's CSPRNG, written in base 36 (secrets.choice per character
    # was a system call per character: 7% of a trigger's CPU). 128 bits are 25 base-36
    # digits, the top one rarely non-zero: 24 are taken from the low end, ~124 bits.
    value = int.from_bytes(secrets.token_bytes(16))
    digits = []
    for _ in range(length):
        value, digit = divmod(value, 36)
        digits.append(_ALPHABET[digit])
    return "".join(digits)


def new_id(prefix: str) -> str:
    return f"{prefix}_{_random()}"


# A project's ref, as Trigger.dev spells one: ``proj_`` and 20 lowercase letters or digits.
PROJECT_REF_RE = re.compile(r"^proj_[0-9a-z]{20}$")


def new_project_ref() -> str:
    return f"proj_{_random(20)}"


def new_run_id() -> str:
    return new_id("run")


def new_attempt_id() -> str:
    return new_id("attempt")


def new_command_id() -> str:
    return new_id("cmd")


def is_run_id(value: str) -> bool:
    return bool(RUN_ID_RE.match(value))
