"""A run's options, in the domain's words: what a trigger asks for, what a replay copies
from the original and what its body overrides, before task defaults apply."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from reprise_server.shared.runs.models import Run
from reprise_server.shared.runs.schemas import TriggerOptions

DEFAULT_MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class RunOptions:
    """Options of a run as requested; None means "not given" (the task's default, then
    Reprise's, applies: :meth:`resolved`)."""

    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] | None = None
    is_test: bool = False
    queue: str | None = None
    concurrency_key: str | None = None
    max_attempts: int | None = None
    max_duration: int | None = None
    priority: int = 0
    machine: str | None = None
    ttl: str | int | None = None
    lock_to_version: str | None = None
    # Named concurrency limits replacing the task's for this run (``options.concurrency``).
    concurrency: tuple[str, ...] | None = None

    @classmethod
    def from_trigger(cls, options: TriggerOptions) -> RunOptions:
        return cls(
            tags=options.tag_list,
            metadata=options.metadata,
            is_test=bool(options.test),
            queue=options.queue_name,
            concurrency_key=options.concurrency_key,
            max_attempts=options.max_attempts,
            max_duration=options.max_duration,
            priority=options.priority or 0,
            machine=options.machine_name,
            ttl=options.ttl,
            lock_to_version=options.lock_to_version,
            concurrency=tuple(options.concurrency) if options.concurrency is not None else None,
        )

    @classmethod
    def from_run(cls, run: Run) -> RunOptions:
        """What a replay copies from the original. Not copied: idempotency keys,
        delay, version lock, attempts, output, parent/root/batch (a replay is a new root).

        Its named limits: those its trigger named (``options.concurrency``), as any other
        trigger option; without one, those the task declares when the replay is created
        (the task's own limit always so: a new version's bounds and declarations apply)."""
        return cls(
            tags=list(run.tags or []),
            metadata=run.metadata_,
            is_test=run.is_test,
            queue=run.queue,
            concurrency_key=run.concurrency_key,
            max_attempts=run.max_attempts,
            max_duration=run.max_duration_seconds,
            priority=run.priority,
            machine=run.machine,
            # The TTL itself; its clock restarts at the new run's own enqueue.
            ttl=run.ttl_seconds,
            concurrency=(
                tuple(run.concurrency_override) if run.concurrency_override is not None
                else None
            ),
        )

    def with_overrides(self, changes: Mapping[str, Any]) -> RunOptions:
        """These options with a replay's changes (fields of this class, resolved at the
        replay's accept: :class:`shared.commands.replay.ReplayPlan`)."""
        return replace(self, **changes) if changes else self

    def resolved(self, task_defaults: Mapping[str, Any]) -> RunOptions:
        """With the task's registered defaults (and Reprise's) filled in where not given;
        ``ttl`` is left for :func:`shared.ttl.policy.effective_ttl`."""
        return replace(
            self,
            max_attempts=self.max_attempts
            or int(task_defaults.get("max_attempts") or DEFAULT_MAX_ATTEMPTS),
            max_duration=self.max_duration or task_defaults.get("max_duration"),
            queue=self.queue or task_defaults.get("queue"),
            machine=self.machine or task_defaults.get("machine"),
        )
