"""A command as the API shows it: camelCase, ISO dates, absent fields omitted."""

from __future__ import annotations

from typing import Any

from reprise_server.shared.commands.models import Command
from reprise_server.shared.durations import iso


def _shown(arguments: dict[str, Any] | None) -> dict[str, Any] | None:
    """A command's arguments without the replay plan only apply reads."""
    shown = {key: value for key, value in (arguments or {}).items() if key != "plan"}
    return shown or None


def command_to_wire(command: Command, *, detailed: bool = True) -> dict[str, Any]:
    """``detailed`` adds what a run's history leaves out (arguments, result, publishing)."""
    data: dict[str, Any] = {
        "id": command.id,
        "kind": command.kind,
        "status": command.status,
        "runId": command.run_id,
        "targetRunId": command.target_run_id,
        "reason": command.reason,
        "createdAt": iso(command.created_at),
        "appliedAt": iso(command.applied_at),
    }
    if detailed:
        data.update(
            {
                "arguments": _shown(command.arguments),
                "result": command.result,
                "publishedAt": iso(command.published_at),
                "publishCount": command.publish_count,
                "appliedBy": command.applied_by,
            }
        )
    return {k: v for k, v in data.items() if v is not None}
