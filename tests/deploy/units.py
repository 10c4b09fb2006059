"""The systemd units in deploy/systemd/, read as systemd reads them (the parts they use:
sections, `Key=value` lines, `#` comments, the default of every key they leave out)."""

from __future__ import annotations

import shlex
import signal
from dataclasses import dataclass
from pathlib import Path

UNITS_DIR = Path(__file__).resolve().parents[2] / "deploy" / "systemd"

# systemd's defaults for the keys of a stop that a unit leaves out (systemd.kill(5),
# DefaultTimeoutStopSec in systemd-system.conf(5)).
DEFAULTS = {"KillMode": "control-group", "KillSignal": "SIGTERM", "TimeoutStopSec": "90"}


@dataclass
class Unit:
    name: str
    sections: dict[str, dict[str, str]]

    @classmethod
    def read(cls, path: Path) -> Unit:
        sections: dict[str, dict[str, str]] = {}
        current: dict[str, str] | None = None
        for raw in path.read_text().splitlines():
            line = raw.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("[") and line.endswith("]"):
                current = sections.setdefault(line[1:-1], {})
                continue
            assert current is not None, f"{path.name}: {line!r} outside a section"
            key, sep, value = line.partition("=")
            assert sep, f"{path.name}: {line!r} is not Key=value"
            current[key.strip()] = value.strip()
        return cls(path.stem, sections)

    def service(self, key: str) -> str:
        return self.sections["Service"].get(key, DEFAULTS.get(key, ""))

    @property
    def exec_start(self) -> list[str]:
        return shlex.split(self.service("ExecStart"))

    @property
    def kill_mode(self) -> str:
        return self.service("KillMode")

    @property
    def kill_signal(self) -> signal.Signals:
        return signal.Signals[self.service("KillSignal")]

    @property
    def timeout_stop_seconds(self) -> float:
        value = self.service("TimeoutStopSec")
        assert value.rstrip("s").isdigit(), f"{self.name}: TimeoutStopSec={value} (whole seconds)"
        return float(value.rstrip("s"))


def units() -> dict[str, Unit]:
    return {path.stem: Unit.read(path) for path in sorted(UNITS_DIR.glob("*.service"))}
