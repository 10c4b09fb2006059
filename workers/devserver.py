"""``reprise dev``: the whole stack on one machine.

Starts embedded PostgreSQL and Redis (unless ``REPRISE_DATABASE_URL`` and
``REPRISE_REDIS_URL`` are set), migrates, starts the api, a worker, the control process,
beat and Flower as child processes, makes sure a dev project and key exist, and prints
the URLs and the key once the API answers and the worker has registered. Ctrl-C stops
everything.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from reprise_server.shared.settings import get_settings, reset_settings_cache
from reprise_server.workers.cli import DEV_PARENT_ENV
from reprise_server.workers.devstack import EmbeddedPostgres, EmbeddedRedis, free_port

DEV_KEY_FILE = "dev-key"


def _dev_key(data_dir: Path) -> str:
    """The dev key, reused across restarts while it stays valid (keys are stored hashed,
    so the plain key is kept in the data dir, which is for this machine only)."""
    from reprise_server.shared.db import transaction
    from reprise_server.shared.errors import Unauthorized
    from reprise_server.shared.projects.service import authenticate, create_key, ensure_project

    path = data_dir / DEV_KEY_FILE
    with transaction() as session:
        ensure_project(session)
        if path.exists():
            saved = path.read_text().strip()
            try:
                authenticate(session, saved)
                return saved
            except Unauthorized:
                pass
        secret = create_key(session, "dev")
    path.write_text(secret + "\n")
    path.chmod(0o600)
    return secret


def _sign_in_link(key: str) -> str:
    """A one-time link that signs the dashboard in with the dev key (printed at start)."""
    from reprise_server.shared.db import transaction
    from reprise_server.shared.sessions.service import create_sign_in_link

    with transaction() as session:
        return create_sign_in_link(session, key)


STATE_FILE = "dev.json"
TAIL_LINES = 20  # of a child's output, shown when it exits
CHILD_STOP_SECONDS = 15  # after SIGTERM, before SIGKILL (for all children together)
LOCK_FILE = "dev.lock"


class DevStackError(Exception):
    """``reprise dev`` cannot start (the message says why and what to do)."""


def _port_free(port: int) -> bool:
    """Whether a server could listen on ``port`` now. The probe binds as uvicorn (and the
    embedded servers) bind, with SO_REUSEADDR on POSIX: the TIME_WAIT sockets a stopped
    stack leaves behind after serving requests do not count as in use, a socket that is
    listening still does. (On Windows SO_REUSEADDR would let the probe share a live port.)"""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        if os.name == "posix":
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _lock(root: Path) -> Any:
    """Hold the data directory for this stack: a second ``reprise dev`` on it refuses at
    once (it would take the first one's embedded servers for leftovers), naming the one
    running. Released by the kernel however this process ends."""
    handle = (root / LOCK_FILE).open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        state = read_state(root)
        where = (
            f" (pid {state.get('pid')}; API {state.get('api')}, Flower {state.get('flower')})"
            if state else ""
        )
        raise DevStackError(
            f"reprise dev is already running on {root}{where}; stop it first, or use "
            "another --data-dir for a second stack"
        ) from None
    return handle


def read_state(root: Path) -> dict[str, Any]:
    """What a running (or the last) ``reprise dev`` on ``root`` recorded: pid, URLs, key."""
    try:
        return dict(json.loads((root / STATE_FILE).read_text()))
    except (OSError, ValueError):
        return {}


def _write_state(root: Path, state: dict[str, Any]) -> None:
    """Readable by the owner only: it holds the dev key."""
    path = root / STATE_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(state, out, indent=2)
    path.chmod(0o600)


def _db_clock() -> datetime:
    from reprise_server.shared.db import db_now, transaction

    with transaction() as session:
        return db_now(session)


def _registered_since(since: datetime) -> bool:
    from reprise_server.shared.db import transaction
    from reprise_server.shared.versions.service import worker_registered

    with transaction() as session:
        return worker_registered(session, since=since)


def _wait(probe: Callable[[], bool], stack: _Stack, timeout: float, what: str) -> None:
    """Until ``probe()``; a child that exits meanwhile is named at once, with its code."""
    deadline = time.monotonic() + timeout
    while True:
        gone = stack.exited()
        if gone is not None:
            raise gone
        try:
            if probe():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise DevStackError(f"{what} did not happen within {timeout:.0f}s")
        time.sleep(0.1)


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=1) as response:
        return bool(response.status == 200)


def run_dev(port: int = 8000, data_dir: str = ".reprise", flower_port: int = 5555,
            verbose: bool = False) -> int:
    # Ctrl-C and SIGTERM mean the same from the very first moment: stop what has started.
    interrupts = _Interrupts()
    stack = _Stack(interrupts, verbose=verbose)
    interrupted = False
    try:
        signal.signal(signal.SIGINT, interrupts.handle)
        signal.signal(signal.SIGTERM, interrupts.handle)
        return _run_dev(stack, port, data_dir, flower_port)
    except DevStackError as exc:
        print(f"reprise dev: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        interrupted = True
        return 0
    finally:
        # A second Ctrl-C must not abandon the stack half stopped; every wait is bounded.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stopping = time.monotonic()
        stopped = stack.stop()
        if stopped or interrupted:
            what = f" ({', '.join(stopped)})" if stopped else ""
            print(f"reprise dev: stopped{what} in {time.monotonic() - stopping:.1f}s",
                  file=sys.stderr, flush=True)


class _Interrupts:
    """SIGINT and SIGTERM as KeyboardInterrupt, except inside :meth:`deferred` (between
    starting a process and recording it), where one is held until the block ends."""

    def __init__(self) -> None:
        self._depth = 0
        self._pending = False

    def handle(self, *_: object) -> None:
        if self._depth:
            self._pending = True
            return
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if not self._depth and self._pending:
                self._pending = False
                raise KeyboardInterrupt


class _Stack:
    """What ``reprise dev`` has started so far, stopped in reverse whatever the moment.

    Children run in sessions of their own, so the terminal's Ctrl-C reaches only
    ``reprise dev``, which stops them with one SIGTERM each; their output comes through
    this process, each line prefixed with the child's name. Until the stack is ready it is
    only kept (the last lines of a child that exits are shown with its exit code) unless
    ``verbose``: the ready block is the first thing a person sees. It is dropped once
    stopping begins (shutdown chatter is not news)."""

    def __init__(self, interrupts: _Interrupts, verbose: bool = False) -> None:
        self.interrupts = interrupts
        self.verbose = verbose
        self.ready = threading.Event()
        self.servers: list[EmbeddedPostgres | EmbeddedRedis] = []
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.lock: Any = None
        self._quiet = threading.Event()
        self._tails: dict[str, deque[str]] = {}
        self._pumps: list[threading.Thread] = []

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        with self.interrupts.deferred():
            child = subprocess.Popen(
                argv, env={**env, "PYTHONUNBUFFERED": "1", DEV_PARENT_ENV: str(os.getpid())}, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
            self.children[name] = child
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._tails[name] = tail
        pump = threading.Thread(target=self._pump, args=(name, child, tail), daemon=True,
                                name=f"dev-output-{name}")
        pump.start()
        self._pumps.append(pump)

    def _pump(self, name: str, child: subprocess.Popen[bytes], tail: deque[str]) -> None:
        assert child.stdout is not None
        prefix = f"{name:<8}| "
        for raw in child.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            tail.append(line)
            if not self._quiet.is_set() and (self.verbose or self.ready.is_set()):
                sys.stdout.write(prefix + line + "\n")
                sys.stdout.flush()

    def exited(self) -> DevStackError | None:
        """The first child that has exited, named with its code and last lines."""
        for name, child in self.children.items():
            code = child.poll()
            if code is not None:
                for pump in self._pumps:
                    pump.join(timeout=1)  # its last words
                last = "\n".join(f"    {line}" for line in self._tails[name])
                return DevStackError(
                    f"the {name} process exited with code {code}"
                    + (f"; its last lines:\n{last}" if last else "")
                )
        return None

    def stop(self) -> list[str]:
        """Stop everything started, children first; the names of what was stopped."""
        self._quiet.set()
        stopped = [name for name, child in self.children.items() if child.poll() is None]
        for child in self.children.values():
            if child.poll() is None:
                child.terminate()
        deadline = time.monotonic() + CHILD_STOP_SECONDS  # one for all, not one each
        for child in self.children.values():
            try:
                child.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            # Anything the child left in its session (a pool process) goes with it.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGKILL)
        for server in reversed(self.servers):
            if server.running:
                stopped.append(server.binary)
            server.stop()
        if self.lock is not None:
            self.lock.close()
        return stopped


def _run_dev(stack: _Stack, port: int, data_dir: str, flower_port: int) -> int:
    began = time.monotonic()
    root = Path(data_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    stack.lock = _lock(root)
    # Ports first, before anything starts: the api's port is the user's choice, Flower's
    # is only a convenience.
    if not _port_free(port):
        raise DevStackError(
            f"port {port} is in use by another program; pick another with --port"
        )
    if not _port_free(flower_port):
        taken, flower_port = flower_port, free_port()
        print(f"reprise dev: port {taken} is taken; Flower will listen on {flower_port}")
    previous = read_state(root)
    env = dict(os.environ)
    if not (env.get("REPRISE_DATABASE_URL") and env.get("REPRISE_REDIS_URL")):
        # The same ports as last time when they are free: URLs others saved keep working.
        # Each server is recorded before it starts, so an interrupt mid-start stops it.
        guard = stack.interrupts.deferred
        redis = EmbeddedRedis(root / "redis", port=_reuse(previous.get("redis_port")),
                              launch_guard=guard)
        postgres = EmbeddedPostgres(root / "postgres", port=_reuse(previous.get("postgres_port")),
                                    launch_guard=guard)
        stack.servers += [redis, postgres]
        env.setdefault("REPRISE_REDIS_URL", redis.start())
        env.setdefault("REPRISE_DATABASE_URL", postgres.start())
    env.setdefault("REPRISE_MODE", "dev")
    # Ctrl-C should stop the dev worker in seconds, not wait out production's soft shutdown.
    env.setdefault("REPRISE_WORKER_SOFT_SHUTDOWN_SECONDS", "5")
    # Liveness files of this stack, not of every stack on the host.
    env.setdefault("REPRISE_LIVENESS_DIR", str(root))
    from reprise_server.workers.ops import flower_command, flower_url

    # The dashboard's header links to this stack's Flower.
    env.setdefault("REPRISE_FLOWER_URL", flower_url(flower_port))
    os.environ.update(env)
    reset_settings_cache()

    from reprise_server.shared.migrations import upgrade

    upgrade(get_settings().database_url)
    key = _dev_key(root)
    base = f"http://127.0.0.1:{port}"
    started_at = _db_clock()

    exe = [sys.executable, "-m", "reprise.cli"]
    stack.spawn("api", [*exe, "api", "--port", str(port)], env)
    stack.spawn("worker", [*exe, "worker", "--pool", "threads", "--concurrency", "4",
                           "--loglevel", "INFO"], env)
    stack.spawn("control", [*exe, "control", "--loglevel", "INFO"], env)
    stack.spawn("beat", [*exe, "beat", "--schedule", str(root / "celerybeat-schedule"),
                         "--loglevel", "WARNING"], env)
    stack.spawn("flower", flower_command(flower_port), env)

    _wait(lambda: _http_ok(f"{base}/healthz"), stack, 60, "the api answering")
    # A registration from this start, not one left by an earlier run.
    _wait(lambda: _registered_since(started_at), stack, 60, "the worker registering")
    settings = get_settings()
    _write_state(root, {
        "pid": os.getpid(), "api": base, "flower": flower_url(flower_port), "key": key,
        "database_url": settings.database_url, "redis_url": settings.redis_url,
        "postgres_port": urlsplit(settings.database_url).port if stack.servers else None,
        "redis_port": urlsplit(settings.redis_url).port if stack.servers else None,
    })
    ready = time.monotonic() - began
    link = f"{base}/dashboard/sign-in/{_sign_in_link(key)}"
    print(
        "\n"
        f"  Reprise is ready in {ready:.1f}s\n"
        f"  API:        {base}\n"
        f"  Dashboard:  {link}\n"
        f"              (a one-time sign-in link; then sign in with the secret key)\n"
        f"  Docs:       {base}/docs\n"
        f"  Flower:     {flower_url(flower_port)}\n"
        f"  Secret key: {key}\n"
        f"  Database:   {settings.database_url}\n"
        f"  Redis:      {settings.redis_url}\n"
        f"  (recorded in {root / STATE_FILE}: the reprise CLI uses it in this directory)\n\n"
        f"  curl -X POST {base}/api/v1/tasks/hello-world/trigger \\\n"
        f"    -H 'Authorization: Bearer {key}' -H 'content-type: application/json' \\\n"
        "    -d '{\"payload\": {\"name\": \"Ada\"}}'\n"
        "  Ctrl-C stops the whole stack.\n",
        flush=True,
    )
    stack.ready.set()  # the children's lines from now on
    while True:
        gone = stack.exited()
        if gone is not None:
            raise DevStackError(f"{gone}; stopping the stack")
        time.sleep(0.5)


def _reuse(port: Any) -> int | None:
    return port if isinstance(port, int) and _port_free(port) else None
