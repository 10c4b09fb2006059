"""Embedded PostgreSQL + Redis from workers.devstack start, serve, and stop cleanly."""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
import redis

from reprise_server.workers import devstack
from reprise_server.workers.devstack import EmbeddedPostgres, EmbeddedRedis, free_port


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _pg_dsn(url: str) -> str:
    return url.replace("postgresql+psycopg", "postgresql")


def test_free_port_is_bindable_and_not_a_system_port() -> None:
    port = free_port()
    assert port not in (5432, 6379)
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_postgres_and_redis_start_serve_and_stop(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path / "pg", durable=False)
    rd = EmbeddedRedis(tmp_path / "redis", appendonly=False)
    try:
        pg_url = pg.start()
        redis_url = rd.start()

        pg_port = urlsplit(pg_url).port
        redis_port = urlsplit(redis_url).port
        assert pg_url == f"postgresql+psycopg://postgres@127.0.0.1:{pg_port}/reprise"
        assert redis_url == f"redis://127.0.0.1:{redis_port}/0"
        assert pg_port not in (None, 5432)
        assert redis_port not in (None, 6379)
        assert pg.start() == pg_url  # idempotent while running

        with psycopg.connect(_pg_dsn(pg_url)) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
            assert conn.execute("show fsync").fetchone() == ("off",)
            max_conn = conn.execute("show max_connections").fetchone()
            assert max_conn is not None
            assert int(max_conn[0]) >= 200

        other = pg.create_database("reprise_other")
        assert other.endswith(f":{pg_port}/reprise_other")
        assert pg.create_database("reprise_other") == other  # already exists: no error
        with psycopg.connect(_pg_dsn(other)) as conn:
            assert conn.execute("select current_database()").fetchone() == ("reprise_other",)

        client = redis.Redis.from_url(redis_url)
        try:
            assert client.set("devstack:key", "value")
            assert client.get("devstack:key") == b"value"
        finally:
            client.close()

        assert (tmp_path / "pg" / "postgres.log").exists()
        assert (tmp_path / "redis" / "redis.log").exists()
    finally:
        pg.stop()
        rd.stop()

    assert pg_port is not None
    assert redis_port is not None
    assert not _port_open(pg_port)
    assert not _port_open(redis_port)
    pg.stop()  # idempotent
    rd.stop()


def test_restart_on_existing_dirs_keeps_data(tmp_path: Path) -> None:
    pg_dir, redis_dir = tmp_path / "pg", tmp_path / "redis"
    with EmbeddedPostgres(pg_dir, durable=False) as pg, psycopg.connect(_pg_dsn(pg.url)) as conn:
        conn.execute("create table t (x int)")
        conn.execute("insert into t values (42)")
    with EmbeddedRedis(redis_dir) as rd, redis.Redis.from_url(rd.url) as client:  # appendonly
        client.set("k", "persisted")

    with EmbeddedPostgres(pg_dir, durable=False) as pg, psycopg.connect(_pg_dsn(pg.url)) as conn:
        assert conn.execute("select x from t").fetchone() == (42,)
    with EmbeddedRedis(redis_dir) as rd, redis.Redis.from_url(rd.url) as client:
        assert client.get("k") == b"persisted"


@pytest.mark.slow
def test_a_server_that_loses_the_race_for_a_free_port_retries_on_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))  # holds the port; not listening, so probes are refused
        taken_port = taken.getsockname()[1]
        offered = iter([taken_port, free_port()])
        monkeypatch.setattr(devstack, "free_port", lambda: next(offered))
        with EmbeddedRedis(tmp_path / "redis", appendonly=False) as rd:
            port = urlsplit(rd.url).port
            assert port not in (None, taken_port)
            with redis.Redis.from_url(rd.url) as client:
                assert client.ping()


@pytest.mark.slow
def test_a_taken_port_asked_for_explicitly_is_an_error_with_the_server_log(
    tmp_path: Path,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        server = EmbeddedRedis(tmp_path / "redis", port=taken.getsockname()[1], appendonly=False)
        with pytest.raises(RuntimeError, match=r"(?s)redis-server exited with \d+; log:\n.*in use"):
            server.start()
    server.stop()  # never started: nothing to do
