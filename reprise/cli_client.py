"""Client commands of the ``reprise`` CLI: ``trigger``, ``runs …``, ``schedules …``,
``queues …``, ``limits …`` and ``tokens …`` over HTTP.

Connection: ``--api-url`` / ``--key`` on any of these commands, else the values of
``--env-file`` (dotenv lines), else ``REPRISE_API_URL`` / ``REPRISE_API_KEY`` (or
``TRIGGER_API_URL`` / ``TRIGGER_SECRET_KEY``). An API error prints
``error: <message> (HTTP <status>)`` to stderr and exits 1; bad arguments exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reprise.client import UNSET, Client
from reprise.errors import ApiError, RunPollTimeoutError
from reprise.models import (
    FINAL_STATUSES,
    BulkAction,
    BulkActionPreview,
    ConcurrencyBound,
    ConcurrencyLimitItem,
    ConcurrencyLimitKeyItem,
    QueueItem,
    Run,
    RunListItem,
    RunLogLine,
    Schedule,
    WaitpointTokenDetail,
    WaitpointTokenItem,
)

URL_VARS = ("REPRISE_API_URL", "TRIGGER_API_URL")
KEY_VARS = ("REPRISE_API_KEY", "TRIGGER_SECRET_KEY")


class UsageError(Exception):
    """A bad argument value (exit 2)."""


def read_env_file(path: str) -> dict[str, str]:
    """``KEY=VALUE`` lines of a dotenv file (comments, ``export`` and quotes allowed)."""
    values: dict[str, str] = {}
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise UsageError(f"cannot read --env-file {path}: {exc.strerror}") from None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name.strip()] = value
    return values


# What `reprise dev` records about the stack it runs (owner-readable only), in its default
# data directory: the CLI finds a dev stack started in the same directory.
DEV_STATE = Path(".reprise") / "dev.json"


def dev_stack() -> dict[str, Any]:
    try:
        state = json.loads(DEV_STATE.read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def client_from_args(args: argparse.Namespace) -> Client:
    """The API and key: flags, then ``--env-file``, then the environment, then the
    ``reprise dev`` stack of this directory."""
    base_url, key = args.api_url, args.key
    if args.env_file:
        found = read_env_file(args.env_file)
        base_url = base_url or next((found[v] for v in URL_VARS if found.get(v)), None)
        key = key or next((found[v] for v in KEY_VARS if found.get(v)), None)
    base_url = base_url or next((os.environ[v] for v in URL_VARS if os.environ.get(v)), None)
    key = key or next((os.environ[v] for v in KEY_VARS if os.environ.get(v, "").startswith("tr_")),
                      None)
    if not (base_url and key):
        stack = dev_stack()
        base_url = base_url or stack.get("api")
        key = key or stack.get("key")
    if not key:
        raise UsageError(
            "no API key: pass --key, set REPRISE_API_KEY, or start `reprise dev` in this "
            "directory (its key is used here); `reprise keys create` makes one"
        )
    return Client(base_url, key)


def _json_arg(value: str | None, flag: str) -> Any:
    if value is None:
        return UNSET
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{flag} is not valid JSON: {exc.msg}") from None


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=False))


def _cmd_trigger(client: Client, args: argparse.Namespace) -> int:
    payload = _json_arg(args.payload, "--payload")
    metadata = _json_arg(args.metadata, "--metadata")
    handle = client.tasks.trigger(
        args.task_id,
        None if payload is UNSET else payload,
        idempotency_key=args.idempotency_key,
        delay=args.delay,
        ttl=args.ttl,
        tags=args.tag or None,
        metadata=None if metadata is UNSET else metadata,
        max_attempts=args.max_attempts,
        queue=args.queue,
        concurrency_key=args.concurrency_key,
        priority=args.priority,
        concurrency=args.concurrency,
    )
    if args.json:
        _print_json(handle.to_json_dict())
    else:
        print(handle.id)
        if handle.is_cached:
            print("(existing run for this idempotency key)", file=sys.stderr)
    return 0


def _when(item: RunListItem | Run) -> str:
    return item.created_at.strftime("%Y-%m-%d %H:%M:%S")


def _cmd_runs_list(client: Client, args: argparse.Namespace) -> int:
    """The REST list's filters, in the same words as ``runs bulk`` (the server reads
    both with one filter vocabulary)."""
    if args.since and args.created_from:
        raise UsageError("--since and --from both set a start: give one")
    items = list(
        client.runs.list(
            status=_words(args.status),
            task_identifier=_words(args.task),
            tag=_words(args.tag),
            version=_words(args.version),
            queue=_words(args.queue),
            period=args.since,
            created_from=args.created_from,
            created_to=args.created_to,
            schedule=args.schedule,
            not_replayed=args.not_replayed or None,
            limit=args.limit,
            page_size=min(args.limit, 100) if args.limit else None,
        )
    )
    if args.json:
        _print_json([item.to_json_dict() for item in items])
        return 0
    rows = [("ID", "STATUS", "TASK", "VERSION", "CREATED (UTC)", "REPLAYED FROM", "TAGS")]
    rows += [(i.id, i.status, i.task_identifier, i.version or "", _when(i),
              i.replayed_from or "", ",".join(i.tags)) for i in items]
    _print_table(rows)
    return 0


def _describe(run: Run) -> list[str]:
    lines = [
        f"id:        {run.id}",
        f"status:    {run.status}",
        f"task:      {run.task_identifier}",
        f"created:   {run.created_at.isoformat()}",
    ]
    optional = {
        "version": run.version,
        "delayed": run.delayed_until.isoformat() if run.delayed_until else None,
        "finished": run.finished_at.isoformat() if run.finished_at else None,
        "tags": ", ".join(run.tags) or None,
        "replayed": run.replayed_from,
        "attempts": str(run.attempt_count) if run.attempt_count else None,
    }
    lines += [f"{name + ':':<10} {value}" for name, value in optional.items() if value]
    if run.error is not None:
        lines.append(f"error:     {run.error.message}")
    if run.payload is not None:
        lines.append(f"payload:   {json.dumps(run.payload)}")
    if run.output is not None:
        lines.append(f"output:    {json.dumps(run.output)}")
    return lines


def _cmd_runs_get(client: Client, args: argparse.Namespace) -> int:
    run = client.runs.retrieve(args.run_id)
    if args.json:
        _print_json(run.to_json_dict())
    else:
        print("\n".join(_describe(run)))
    return 0


FINISHED = FINAL_STATUSES
# `runs wait`: the run was not final within --timeout.
WAIT_TIMEOUT_EXIT = 3


def _cmd_runs_cancel(client: Client, args: argparse.Namespace) -> int:
    """Cancel, and say what happened: a run that had already finished is left as it was
    (the API answers 200 either way, as Trigger.dev's does)."""
    before = client.runs.retrieve(args.run_id)
    if before.status in FINISHED:
        print(f"{before.id} already {before.status}; nothing to cancel")
        return 0
    print(client.runs.cancel(args.run_id, children=args.children).id)
    return 0


def _cmd_runs_wait(client: Client, args: argparse.Namespace) -> int:
    """Wait until the run is final and print its status: exit 0 for COMPLETED, 1 for any
    other final status, 3 when ``--timeout`` passes first."""
    try:
        run = client.runs.poll(args.run_id, timeout=args.timeout, interval=args.interval)
    except RunPollTimeoutError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return WAIT_TIMEOUT_EXIT
    if args.json:
        _print_json(run.to_json_dict())
    else:
        print(run.status)
    return 0 if run.status == "COMPLETED" else 1


def _log_line(line: RunLogLine) -> str:
    text = f"{line.logged_at:%Y-%m-%d %H:%M:%S} {line.level:<8} {line.logger}: {line.message}"
    if line.exception:
        text += "\n" + line.exception
    return text


def _cmd_runs_logs(client: Client, args: argparse.Namespace) -> int:
    """Print the run's log; with ``--follow``, poll until the run is final, print the rest
    and exit (its status is read before its lines: a final run's lines are all written)."""
    cursor: int | None = None
    while True:
        final = not args.follow or client.runs.retrieve(args.run_id).status in FINISHED
        for line in client.runs.logs(args.run_id, after=cursor, level=args.level,
                                     search=args.search):
            print(json.dumps(line.to_json_dict()) if args.json else _log_line(line), flush=True)
            cursor = line.seq
        if final:
            return 0
        time.sleep(args.interval)


def _cmd_runs_replay(client: Client, args: argparse.Namespace) -> int:
    metadata = _json_arg(args.metadata, "--metadata")
    handle = client.runs.replay(
        args.run_id,
        payload=_json_arg(args.payload, "--payload"),
        environment=args.env,
        tags=args.tag or None,
        metadata=None if metadata is UNSET else metadata,
        delay=args.delay,
        ttl=args.ttl,
        max_attempts=args.max_attempts,
        priority=args.priority,
        queue=args.queue,
        concurrency_key=args.concurrency_key,
        from_step=args.from_step,
        from_checkpoint=args.from_checkpoint,
    )
    print(handle.id)
    return 0


def _cmd_runs_reschedule(client: Client, args: argparse.Namespace) -> int:
    run = client.runs.reschedule(args.run_id, args.delay)
    until = run.delayed_until.isoformat() if run.delayed_until else "?"
    print(f"{run.id} delayed until {until}")
    return 0


def _words(values: list[str] | None) -> list[str] | None:
    """Repeatable flags whose values may also be comma-separated."""
    found = [word for value in values or [] for word in value.split(",") if word]
    return found or None


def _progress(action: BulkAction) -> str:
    counts = action.counts
    return (f"{action.id} {action.status}: {counts.processed}/{counts.total} runs "
            f"({counts.success} succeeded, {counts.failure} failed)")


def _cmd_runs_bulk(client: Client, args: argparse.Namespace) -> int:
    """Create a bulk action from the flags, then show its progress until it is done: one
    line rewritten in place on a terminal, a line per change otherwise. Exit 0 once it is
    COMPLETED, 1 if it was ABORTED."""
    verb = args.bulk_command
    filters: dict[str, Any] = {
        "status": _words(args.status), "task": _words(args.task), "tags": _words(args.tag),
        "version": _words(args.version), "queue": _words(args.queue), "period": args.since,
        "not_replayed": args.not_replayed or None,
    }
    selection: dict[str, Any] = {key: value for key, value in filters.items() if value}
    run_ids = _words(args.run_id)
    if run_ids and selection:
        raise UsageError("--run-id selects runs by id: give it without filter flags")
    if not run_ids and not selection:
        raise UsageError("select runs: --status, --task, --tag, --version, --queue, --since "
                         "or --run-id")
    common: dict[str, Any] = {"run_ids": run_ids, "name": args.name, "dry_run": args.dry_run,
                              **selection}
    bulk = client.runs.bulk
    if verb == "replay":
        created = bulk.replay(max_per_second=args.max_per_second, **common)
    elif verb == "cancel":
        created = bulk.cancel(**common)
    else:
        created = bulk.reschedule(args.delay, **common)
    if isinstance(created, BulkActionPreview):
        print(f"dry run: would {verb} {created.count} runs")
        for run_id in created.run_ids:
            print(f"  {run_id}")
        if created.count > len(created.run_ids):
            print(f"  … and {created.count - len(created.run_ids)} more")
        return 0
    print(f"bulk {verb} {created.id} accepted", flush=True)
    tty = sys.stdout.isatty()
    shown = ""

    def show(action: BulkAction) -> None:
        nonlocal shown
        line = _progress(action)
        if line == shown:
            return
        if tty:
            sys.stdout.write("\r\x1b[K" + line)
        else:
            sys.stdout.write(line + "\n")
        sys.stdout.flush()
        shown = line

    try:
        done = bulk.poll(created.id, interval=args.interval, on_progress=show)
    except KeyboardInterrupt:
        # Only the watching stops: the action goes on on the server.
        if tty:
            sys.stdout.write("\n")
            sys.stdout.flush()
        print(f"stopped watching; {created.id} goes on (`reprise runs bulk abort "
              f"{created.id}` stops it)", file=sys.stderr)
        return 130
    if tty:
        sys.stdout.write("\n")
    return 0 if done.status == "COMPLETED" else 1


def _cmd_runs_bulk_get(client: Client, args: argparse.Namespace) -> int:
    action = client.runs.bulk.retrieve(args.bulk_action_id)
    if args.json:
        _print_json(action.to_json_dict())
    else:
        print(f"{action.type.lower()} {_progress(action)}")
    return 0


def _cmd_runs_bulk_abort(client: Client, args: argparse.Namespace) -> int:
    client.runs.bulk.abort(args.bulk_action_id)
    print(_progress(client.runs.bulk.retrieve(args.bulk_action_id)))
    return 0


def _print_table(rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[-1]]).rstrip())


def _schedule_row(schedule: Schedule) -> tuple[str, ...]:
    next_run = schedule.next_run.strftime("%Y-%m-%d %H:%M:%S") if schedule.next_run else "-"
    return (schedule.id, schedule.task, schedule.generator.expression, schedule.timezone,
            "yes" if schedule.active else "no", next_run, schedule.external_id or "")


def _cmd_schedules_list(client: Client, args: argparse.Namespace) -> int:
    found = list(client.schedules.list())
    if args.json:
        _print_json([schedule.to_json_dict() for schedule in found])
        return 0
    header = ("ID", "TASK", "CRON", "TIMEZONE", "ACTIVE", "NEXT RUN (UTC)", "EXTERNAL ID")
    _print_table([header, *(_schedule_row(schedule) for schedule in found)])
    return 0


def _cmd_schedules_create(client: Client, args: argparse.Namespace) -> int:
    schedule = client.schedules.create(
        task=args.task, cron=args.cron, timezone=args.timezone,
        external_id=args.external_id, deduplication_key=args.deduplication_key,
    )
    if args.json:
        _print_json(schedule.to_json_dict())
        return 0
    print(schedule.id)
    when = schedule.next_run.isoformat() if schedule.next_run else "never"
    print(f"{schedule.generator.description}; next run {when}", file=sys.stderr)
    return 0


def _cmd_schedules_delete(client: Client, args: argparse.Namespace) -> int:
    print(client.schedules.delete(args.schedule_id))
    return 0


def _bound(value: int | None) -> str:
    return "-" if value is None else str(value)


def _bound_cell(bound: ConcurrencyBound) -> str:
    """``5``, ``-`` (unbounded), or ``5 (base 2)`` while overridden."""
    if bound.override is None:
        return _bound(bound.current)
    return f"{_bound(bound.current)} (base {_bound(bound.base)})"


def _queue_row(queue: QueueItem) -> tuple[str, ...]:
    return (queue.name, queue.type, str(queue.running), str(queue.queued),
            "yes" if queue.paused else "no", queue.id)


QUEUE_HEADER = ("NAME", "TYPE", "RUNNING", "QUEUED", "PAUSED", "ID")


def _print_listing(found: list[Any], header: tuple[str, ...],
                   row: Callable[[Any], tuple[str, ...]], as_json: bool) -> int:
    """A listing command's output: a table, or each item's JSON with ``--json``."""
    if as_json:
        _print_json([item.to_json_dict() for item in found])
    else:
        _print_table([header, *(row(item) for item in found)])
    return 0


def _cmd_queues_list(client: Client, args: argparse.Namespace) -> int:
    return _print_listing(list(client.queues.list(per_page=100)), QUEUE_HEADER, _queue_row,
                          args.json)


def _show_queue(queue: QueueItem, as_json: bool) -> None:
    if as_json:
        _print_json(queue.to_json_dict())
        return
    lines = [
        f"name:      {queue.name}",
        f"type:      {queue.type}",
        f"id:        {queue.id}",
        f"running:   {queue.running}",
        f"queued:    {queue.queued}",
        f"paused:    {'yes' if queue.paused else 'no'}",
    ]
    if queue.concurrency is not None and queue.concurrency.base is not None:
        lines.append(f"limit:     {_bound(queue.concurrency.current)}"
                     + (f" (base {queue.concurrency.base})"
                        if queue.concurrency.override is not None else ""))
    print("\n".join(lines))


def _cmd_queues_get(client: Client, args: argparse.Namespace) -> int:
    _show_queue(client.queues.retrieve(args.queue, type=args.type), args.json)
    return 0


def _cmd_queues_pause(client: Client, args: argparse.Namespace) -> int:
    pause = args.queues_command == "pause"
    queue = (client.queues.pause if pause else client.queues.resume)(args.queue, type=args.type)
    print(f"queue {queue.name} {'paused' if queue.paused else 'resumed'}")
    return 0


def _limit_row(limit: ConcurrencyLimitItem) -> tuple[str, ...]:
    return (limit.name, _bound_cell(limit.total), _bound_cell(limit.per_key),
            str(limit.running), str(limit.queued), "yes" if limit.paused else "no")


LIMIT_HEADER = ("NAME", "TOTAL", "PER KEY", "RUNNING", "QUEUED", "PAUSED")


def _cmd_limits_list(client: Client, args: argparse.Namespace) -> int:
    return _print_listing(list(client.concurrency_limits.list(per_page=100)), LIMIT_HEADER,
                          _limit_row, args.json)


def _show_limit(item: ConcurrencyLimitItem | ConcurrencyLimitKeyItem, as_json: bool) -> None:
    if as_json:
        _print_json(item.to_json_dict())
        return
    if isinstance(item, ConcurrencyLimitKeyItem):
        bound = item.per_key
        per_key = _bound(bound.current)
        if bound.override is not None:
            until = bound.expires_at.isoformat() if bound.expires_at else "?"
            per_key += f" (override until {until}; base {_bound(bound.base)})"
        lines = [
            f"name:      {item.name}",
            f"key:       {item.concurrency_key}",
            f"per key:   {per_key}",
            f"running:   {item.running}",
            f"paused:    {'yes' if item.paused else 'no'}",
        ]
    else:
        lines = [
            f"name:      {item.name}",
            f"id:        {item.id}",
            f"total:     {_bound_cell(item.total)}",
            f"per key:   {_bound_cell(item.per_key)}",
            f"running:   {item.running}",
            f"queued:    {item.queued}",
            f"paused:    {'yes' if item.paused else 'no'}",
        ]
    print("\n".join(lines))


def _cmd_limits_get(client: Client, args: argparse.Namespace) -> int:
    if args.concurrency_key is not None:
        _show_limit(client.concurrency_limits.retrieve(args.name, args.concurrency_key), args.json)
    else:
        _show_limit(client.concurrency_limits.retrieve(args.name), args.json)
    return 0


def _cmd_limits_override(client: Client, args: argparse.Namespace) -> int:
    limits = client.concurrency_limits
    if args.concurrency_key is not None:
        if args.per_key is None or args.total is not None:
            raise UsageError(
                "--concurrency-key overrides one key's cap: give --per-key (and no --total)"
            )
        ttl = int(args.ttl) if args.ttl and args.ttl.isdigit() else args.ttl
        _show_limit(limits.override(args.name, concurrency_key=args.concurrency_key,
                                    per_key=args.per_key, ttl=ttl), args.json)
        return 0
    if args.ttl is not None:
        raise UsageError("--ttl applies to one key's override: give --concurrency-key with it")
    if args.per_key is None and args.total is None:
        raise UsageError("give --total and/or --per-key")
    _show_limit(limits.override(args.name, total=args.total, per_key=args.per_key), args.json)
    return 0


def _cmd_limits_reset(client: Client, args: argparse.Namespace) -> int:
    if args.concurrency_key is not None:
        _show_limit(client.concurrency_limits.reset(args.name, args.concurrency_key), args.json)
    else:
        _show_limit(client.concurrency_limits.reset(args.name), args.json)
    return 0


def _cmd_limits_pause(client: Client, args: argparse.Namespace) -> int:
    limits = client.concurrency_limits
    limit = (limits.pause if args.limits_command == "pause" else limits.resume)(args.name)
    print(f"limit {limit.name} {'paused' if limit.paused else 'resumed'}")
    return 0


def _stamp(moment: Any) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment is not None else "-"


def _token_row(token: WaitpointTokenItem) -> tuple[str, ...]:
    return (token.id, token.status, _stamp(token.created_at), _stamp(token.timeout_at),
            token.idempotency_key or "", ",".join(token.tags))


TOKEN_HEADER = ("ID", "STATUS", "CREATED (UTC)", "TIMEOUT (UTC)", "IDEMPOTENCY KEY", "TAGS")


def _cmd_tokens_create(client: Client, args: argparse.Namespace) -> int:
    token = client.waitpoints.create_token(
        idempotency_key=args.idempotency_key, idempotency_key_ttl=args.idempotency_key_ttl,
        timeout=args.timeout, tags=args.tag or None,
    )
    if args.json:
        _print_json(token.to_json_dict())
        return 0
    print(token.id)
    print(f"callback URL: {token.url}", file=sys.stderr)
    if token.is_cached:
        print("(existing token for this idempotency key)", file=sys.stderr)
    return 0


def _cmd_tokens_list(client: Client, args: argparse.Namespace) -> int:
    statuses = [s for value in args.status or [] for s in value.split(",") if s]
    found = list(client.waitpoints.list_tokens(
        status=statuses or None, idempotency_key=args.idempotency_key, tags=args.tag or None,
        period=args.period, limit=args.limit,
        page_size=min(args.limit, 100) if args.limit else None,
    ))
    return _print_listing(found, TOKEN_HEADER, _token_row, args.json)


def _show_token(token: WaitpointTokenDetail, as_json: bool) -> None:
    if as_json:
        _print_json(token.to_json_dict())
        return
    lines = [
        f"id:          {token.id}",
        f"status:      {token.status}",
        f"created:     {_stamp(token.created_at)}",
    ]
    if token.timeout_at is not None:
        lines.append(f"timeout:     {_stamp(token.timeout_at)}")
    if token.completed_at is not None:
        lines.append(f"completed:   {_stamp(token.completed_at)}")
    if token.idempotency_key:
        lines.append(f"idempotency: {token.idempotency_key}")
    if token.tags:
        lines.append(f"tags:        {', '.join(token.tags)}")
    lines.append(f"url:         {token.url}")
    if token.status == "COMPLETED":
        lines.append(f"output:      {json.dumps(token.output)}")
    elif token.error:
        lines.append(f"error:       {token.error}")
    print("\n".join(lines))


def _cmd_tokens_get(client: Client, args: argparse.Namespace) -> int:
    _show_token(client.waitpoints.retrieve_token(args.token_id), args.json)
    return 0


def _cmd_tokens_complete(client: Client, args: argparse.Namespace) -> int:
    if args.data is not None and args.data_file is not None:
        raise UsageError("pass --data or --data-file, not both")
    data: Any = None
    if args.data is not None:
        data = _json_arg(args.data, "--data")
    elif args.data_file is not None:
        try:
            text = sys.stdin.read() if args.data_file == "-" else Path(args.data_file).read_text()
        except OSError as exc:
            raise UsageError(f"--data-file: {exc.strerror or exc}") from None
        data = _json_arg(text, "--data-file")
    client.waitpoints.complete_token(args.token_id, data)
    print(f"token {args.token_id} completed")
    return 0


ClientHandler = Callable[[Client, argparse.Namespace], int]


def _handler(command: ClientHandler) -> Callable[[argparse.Namespace], int]:
    """Wrap a client command: build the client, render API errors, exit codes 1 and 2."""

    def run(args: argparse.Namespace) -> int:
        try:
            with client_from_args(args) as client:
                return command(client, args)
        except UsageError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except ApiError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1

    return run


def _connection_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("connection")
    group.add_argument("--api-url", help="API base URL (default: $REPRISE_API_URL)")
    group.add_argument("--key", help="secret key tr_… (default: $REPRISE_API_KEY)")
    group.add_argument("--env-file", help="read REPRISE_API_URL / REPRISE_API_KEY from it")
    return parent


def add_client_commands(sub: Any) -> None:
    """Add ``trigger``, ``runs``, ``schedules``, ``queues``, ``limits`` and ``tokens`` to
    the CLI's subparsers action ``sub``."""
    conn = [_connection_options()]

    trigger = sub.add_parser("trigger", parents=conn, help="trigger a task; prints the run id")
    trigger.add_argument("task_id")
    trigger.add_argument("--payload", help='JSON payload, e.g. \'{"to": "a@b.c"}\'')
    trigger.add_argument("--delay", help="duration (10m, 1h30m) or ISO date-time")
    trigger.add_argument("--ttl", help="time to live in the queue, e.g. 10m")
    trigger.add_argument("--tag", action="append", help="a tag (repeatable)")
    trigger.add_argument("--metadata", help="JSON object")
    trigger.add_argument("--idempotency-key")
    trigger.add_argument("--max-attempts", type=int)
    trigger.add_argument("--queue")
    trigger.add_argument("--concurrency-key", metavar="KEY",
                         help="the pool of the limits' per-key bound this run counts in")
    trigger.add_argument("--priority", type=int, metavar="SECONDS",
                         help="admitted as if queued SECONDS earlier")
    trigger.add_argument("--concurrency", action="append", metavar="NAME",
                         help="a named limit replacing the task's for this run "
                              "(repeatable, at most two)")
    trigger.add_argument("--json", action="store_true", help="print {id, isCached, …}")
    trigger.set_defaults(handler=_handler(_cmd_trigger))

    runs = sub.add_parser("runs", help="list, inspect, cancel, replay and reschedule runs")
    runs_sub = runs.add_subparsers(dest="runs_command", required=True, metavar="ACTION")

    listing = runs_sub.add_parser("list", parents=conn, help="list runs, newest first")
    _add_run_filters(listing, since="runs created in the last PERIOD (1d, 6h)")
    listing.add_argument("--from", dest="created_from", type=_datetime, metavar="WHEN",
                         help="runs created at or after WHEN (ISO date or date-time, UTC)")
    listing.add_argument("--to", dest="created_to", type=_datetime, metavar="WHEN",
                         help="runs created at or before WHEN")
    listing.add_argument("--schedule", help="only the runs of this schedule (sched_…)")
    listing.add_argument("--limit", type=_positive, default=25, help="at most N runs (25)")
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    listing.set_defaults(handler=_handler(_cmd_runs_list))

    get = runs_sub.add_parser("get", parents=conn, help="show one run")
    get.add_argument("run_id")
    get.add_argument("--json", action="store_true", help="print the full run object")
    get.set_defaults(handler=_handler(_cmd_runs_get))

    cancel = runs_sub.add_parser("cancel", parents=conn, help="cancel a run")
    cancel.add_argument("run_id")
    cancel.add_argument("--children", action="store_true",
                        help="also cancel every unfinished run it triggered, to any depth")
    cancel.set_defaults(handler=_handler(_cmd_runs_cancel))

    wait = runs_sub.add_parser(
        "wait", parents=conn,
        help="wait until a run is final; prints its status (exit 0 COMPLETED, 1 other, "
        f"{WAIT_TIMEOUT_EXIT} timeout)",
    )
    wait.add_argument("run_id")
    wait.add_argument("--timeout", type=_seconds, help="give up after S seconds (exit "
                      f"{WAIT_TIMEOUT_EXIT}); default: wait as long as it takes")
    wait.add_argument("--interval", type=_seconds, default=1.0, help="poll this often (s)")
    wait.add_argument("--json", action="store_true", help="print the final run object")
    wait.set_defaults(handler=_handler(_cmd_runs_wait))

    logs = runs_sub.add_parser("logs", parents=conn, help="print a run's log lines")
    logs.add_argument("run_id")
    logs.add_argument("--follow", "-f", action="store_true",
                      help="keep printing new lines until the run is final")
    logs.add_argument("--level", help="this level and above (DEBUG, INFO, WARNING, ERROR…)")
    logs.add_argument("--search", help="only lines whose message or traceback contains this")
    logs.add_argument("--interval", type=float, default=1.0, help="--follow polls this often (s)")
    logs.add_argument("--json", action="store_true", help="one JSON object per line")
    logs.set_defaults(handler=_handler(_cmd_runs_logs))

    replay = runs_sub.add_parser("replay", parents=conn, help="replay a run; prints the new id")
    replay.add_argument("run_id")
    replay.add_argument("--payload", help="JSON payload instead of the original")
    replay.add_argument("--env", help="replay into this environment (dev, staging, prod)")
    replay.add_argument("--tag", action="append", help="tags instead of the original (repeatable)")
    replay.add_argument("--metadata", help="JSON object instead of the original")
    replay.add_argument("--delay", help="delay the new run (duration or ISO date-time)")
    replay.add_argument("--ttl", help="time to live in the queue instead of the original's")
    replay.add_argument("--max-attempts", type=int, help="instead of the original's")
    replay.add_argument("--queue", help="instead of the original's")
    replay.add_argument("--concurrency-key", metavar="KEY",
                        help="another pool of the limits' per-key bound than the original's")
    replay.add_argument("--priority", type=int, metavar="SECONDS",
                        help="admitted as if queued SECONDS earlier")
    start = replay.add_mutually_exclusive_group()
    start.add_argument("--from-step", metavar="STEP",
                       help="start from this step of the run's durable record (its position, "
                            "or its name; name#2 for its second call): the steps before it "
                            "are answered from the record, not run again")
    start.add_argument("--from-checkpoint", type=int, metavar="N",
                       help="start from checkpoint N: its state becomes the payload (the task "
                            "reads ctx.run.resumed_from_checkpoint and ctx.run.original_payload)")
    replay.set_defaults(handler=_handler(_cmd_runs_replay))

    reschedule = runs_sub.add_parser(
        "reschedule", parents=conn, help="move a delayed run to a new time"
    )
    reschedule.add_argument("run_id")
    reschedule.add_argument("--delay", required=True, help="duration (2h) or ISO date-time")
    reschedule.set_defaults(handler=_handler(_cmd_runs_reschedule))

    _add_bulk_commands(runs_sub, conn)

    schedules = sub.add_parser("schedules", help="list, create and delete cron schedules")
    schedules_sub = schedules.add_subparsers(
        dest="schedules_command", required=True, metavar="ACTION"
    )
    sched_list = schedules_sub.add_parser("list", parents=conn, help="list schedules, newest first")
    sched_list.add_argument("--json", action="store_true", help="print a JSON array")
    sched_list.set_defaults(handler=_handler(_cmd_schedules_list))

    create = schedules_sub.add_parser("create", parents=conn, help="create a schedule; prints its id")
    create.add_argument("--task", required=True, help="the task to run on each tick")
    create.add_argument("--cron", required=True, help="cron expression, e.g. '0 9 * * 1-5'")
    create.add_argument("--timezone", help="IANA timezone, e.g. Europe/London (default UTC)")
    create.add_argument("--external-id", help="your own id, passed to each run (externalId)")
    create.add_argument("--deduplication-key",
                        help="create once: the same key again updates that schedule")
    create.add_argument("--json", action="store_true", help="print the schedule object")
    create.set_defaults(handler=_handler(_cmd_schedules_create))

    remove = schedules_sub.add_parser("delete", parents=conn, help="delete a schedule")
    remove.add_argument("schedule_id")
    remove.set_defaults(handler=_handler(_cmd_schedules_delete))

    _add_flow_commands(sub, conn)
    _add_token_commands(sub, conn)


def _add_token_commands(sub: Any, conn: list[argparse.ArgumentParser]) -> None:
    """``tokens …``: waitpoint tokens runs wait for (``ctx.wait_for_token``)."""
    tokens = sub.add_parser("tokens", help="create, list, inspect and complete waitpoint tokens")
    tokens_sub = tokens.add_subparsers(dest="tokens_command", required=True, metavar="ACTION")

    create = tokens_sub.add_parser("create", parents=conn,
                                   help="create a token; prints its id (its URL to stderr)")
    create.add_argument("--timeout", help="time it out after a duration (30s, 1h) or at a date")
    create.add_argument("--tag", action="append", help="a tag (repeatable, at most 10)")
    create.add_argument("--idempotency-key", help="the same key again gives the same token")
    create.add_argument("--idempotency-key-ttl", help="how long the key holds (default 30d)")
    create.add_argument("--json", action="store_true", help="print {id, url, isCached, …}")
    create.set_defaults(handler=_handler(_cmd_tokens_create))

    listing = tokens_sub.add_parser("list", parents=conn, help="list tokens, newest first")
    listing.add_argument("--status", action="append",
                         help="WAITING, COMPLETED or TIMED_OUT (repeatable or comma-separated)")
    listing.add_argument("--tag", action="append", help="tokens with any of these tags")
    listing.add_argument("--idempotency-key")
    listing.add_argument("--period", help="created within, e.g. 1d")
    listing.add_argument("--limit", type=_positive, default=50, help="at most this many (50)")
    listing.add_argument("--json", action="store_true", help="print a JSON array")
    listing.set_defaults(handler=_handler(_cmd_tokens_list))

    get = tokens_sub.add_parser("get", parents=conn, help="show one token (and its output)")
    get.add_argument("token_id")
    get.add_argument("--json", action="store_true", help="print the token object")
    get.set_defaults(handler=_handler(_cmd_tokens_get))

    complete = tokens_sub.add_parser(
        "complete", parents=conn, help="complete a token; the runs waiting on it continue"
    )
    complete.add_argument("token_id")
    complete.add_argument("--data", help='JSON data, e.g. \'{"approved": true}\'')
    complete.add_argument("--data-file", help="read the JSON data from a file (- for stdin)")
    complete.set_defaults(handler=_handler(_cmd_tokens_complete))


def _add_run_filters(parser: argparse.ArgumentParser, *, since: str) -> None:
    """The run filters ``runs list`` and ``runs bulk`` share (one vocabulary)."""
    parser.add_argument("--status", action="append", help="status (repeatable or a,b)")
    parser.add_argument("--task", action="append", help="task identifier (repeatable)")
    parser.add_argument("--tag", action="append", help="tag (repeatable)")
    parser.add_argument("--version", action="append", help="worker version (repeatable)")
    parser.add_argument("--queue", action="append",
                        help="queue: task/<taskId> or a queue's name (repeatable)")
    parser.add_argument("--since", metavar="PERIOD", help=since)
    parser.add_argument("--not-replayed", action="store_true",
                        help="only runs no replay of which completed or is still under way "
                             "(a failed or canceled replay does not count)")


def _add_bulk_commands(runs_sub: Any, conn: list[argparse.ArgumentParser]) -> None:
    """``runs bulk replay|cancel|reschedule|get|abort``."""
    bulk = runs_sub.add_parser("bulk", help="replay, cancel or reschedule many runs at once")
    bulk_sub = bulk.add_subparsers(dest="bulk_command", required=True, metavar="ACTION")
    for verb, text in (("replay", "replay the selected runs as new runs"),
                       ("cancel", "cancel the selected runs"),
                       ("reschedule", "move the selected DELAYED runs to one time")):
        parser = bulk_sub.add_parser(verb, parents=conn, help=text)
        _add_run_filters(parser, since="runs created in the last PERIOD (1d, 6h); "
                                       "default 7 days")
        parser.add_argument("--run-id", action="append",
                            help="these runs instead of a filter (repeatable, up to 500)")
        parser.add_argument("--name", help="a name for the bulk action")
        parser.add_argument("--dry-run", action="store_true",
                            help="count the runs it would take and name the first ten; do nothing")
        parser.add_argument("--interval", type=_seconds, default=1.0,
                            help="read its progress this often (s)")
        if verb == "replay":
            parser.add_argument("--max-per-second", type=float,
                                help="replay at most this many runs a second")
        if verb == "reschedule":
            parser.add_argument("--delay", required=True,
                                help="duration from now (2h) or ISO date-time")
        parser.set_defaults(handler=_handler(_cmd_runs_bulk))
    get = bulk_sub.add_parser("get", parents=conn, help="show a bulk action's progress")
    get.add_argument("bulk_action_id")
    get.add_argument("--json", action="store_true", help="print the bulk action object")
    get.set_defaults(handler=_handler(_cmd_runs_bulk_get))
    abort = bulk_sub.add_parser("abort", parents=conn,
                                help="stop a bulk action before its next batch")
    abort.add_argument("bulk_action_id")
    abort.set_defaults(handler=_handler(_cmd_runs_bulk_abort))


def _add_flow_commands(sub: Any, conn: list[argparse.ArgumentParser]) -> None:
    """``queues …`` and ``limits …``."""
    queues = sub.add_parser("queues", help="list, inspect, pause and resume queues")
    queues_sub = queues.add_subparsers(dest="queues_command", required=True, metavar="ACTION")
    q_list = queues_sub.add_parser("list", parents=conn, help="list queues, by name")
    q_list.add_argument("--json", action="store_true", help="print a JSON array")
    q_list.set_defaults(handler=_handler(_cmd_queues_list))
    type_help = ("what QUEUE is: id, task (a task id) or custom (a queue name); default: "
                 "queue_… is an id, task/… a task's queue, anything else a name")
    for action, command, text in (("get", _cmd_queues_get, "show one queue"),
                                  ("pause", _cmd_queues_pause, "start no more of its runs"),
                                  ("resume", _cmd_queues_pause, "start its runs again")):
        parser = queues_sub.add_parser(action, parents=conn, help=text)
        parser.add_argument("queue", help="queue_…, task/<taskId> or a queue's name")
        parser.add_argument("--type", choices=("id", "task", "custom"), help=type_help)
        if action == "get":
            parser.add_argument("--json", action="store_true", help="print the queue object")
        parser.set_defaults(handler=_handler(command))

    limits = sub.add_parser("limits", help="list, inspect, override, reset, pause and resume "
                            "concurrency limits")
    limits_sub = limits.add_subparsers(dest="limits_command", required=True, metavar="ACTION")
    l_list = limits_sub.add_parser("list", parents=conn, help="list concurrency limits, by name")
    l_list.add_argument("--json", action="store_true", help="print a JSON array")
    l_list.set_defaults(handler=_handler(_cmd_limits_list))
    name_help = "the limit: task/<taskId> (a task's own) or a named limit"

    get = limits_sub.add_parser("get", parents=conn, help="show one limit (or one key's view)")
    get.add_argument("name", help=name_help)
    get.add_argument("--concurrency-key", help="show the limit as this key sees it")
    get.add_argument("--json", action="store_true", help="print the limit object")
    get.set_defaults(handler=_handler(_cmd_limits_get))

    override = limits_sub.add_parser(
        "override", parents=conn, help="override a limit's bounds, or cap one key for a while"
    )
    override.add_argument("name", help=name_help)
    override.add_argument("--total", type=_bound_arg, help="runs holding the limit at once")
    override.add_argument("--per-key", type=_bound_arg, help="runs of each key at once")
    override.add_argument("--concurrency-key", help="cap only this key (with --per-key)")
    override.add_argument("--ttl", help="how long a key's cap lasts: 1h, 7d (default 7d, at most 30d)")
    override.add_argument("--json", action="store_true", help="print the limit object")
    override.set_defaults(handler=_handler(_cmd_limits_override))

    reset = limits_sub.add_parser("reset", parents=conn, help="back to the declared bounds")
    reset.add_argument("name", help=name_help)
    reset.add_argument("--concurrency-key", help="clear only this key's cap")
    reset.add_argument("--json", action="store_true", help="print the limit object")
    reset.set_defaults(handler=_handler(_cmd_limits_reset))

    for action, text in (("pause", "admit no more runs holding it"),
                         ("resume", "admit runs again, in order")):
        parser = limits_sub.add_parser(action, parents=conn, help=text)
        parser.add_argument("name", help=name_help)
        parser.set_defaults(handler=_handler(_cmd_limits_pause))


def _bound_arg(value: str) -> int:
    if not value.isdigit() or int(value) > 100_000:
        raise argparse.ArgumentTypeError("must be a whole number from 0 to 100000")
    return int(value)


def _seconds(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a number of seconds") from None
    if not number > 0 or number == float("inf"):
        raise argparse.ArgumentTypeError("must be more than 0 seconds")
    return number


def _datetime(value: str) -> datetime:
    """An ISO-8601 date or date-time; UTC unless it names a zone."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            "must be an ISO-8601 date or date-time, e.g. 2026-12-01 or 2026-12-01T09:30"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number
