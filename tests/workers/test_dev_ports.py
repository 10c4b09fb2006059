"""The port probe ``reprise dev`` runs before starting anything: it binds as the servers
bind, so a port a stopped stack left in TIME_WAIT counts as free, a listening one does not."""

from __future__ import annotations

import os
import socket

import pytest

from reprise_server.workers.devserver import _port_free


def _listener() -> socket.socket:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
    server.bind(("127.0.0.1", 0))
    server.listen()
    return server


def _plain_bind_fails(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as plain:
        try:
            plain.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def test_a_listening_port_is_in_use() -> None:
    with _listener() as server:
        port = server.getsockname()[1]
        assert not _port_free(port)


def test_a_port_bound_without_listening_by_a_plain_socket_is_in_use() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        assert not _port_free(holder.getsockname()[1])


@pytest.mark.skipif(os.name != "posix", reason="the probe sets SO_REUSEADDR on POSIX only")
def test_a_port_left_only_in_time_wait_is_free() -> None:
    server = _listener()
    port = server.getsockname()[1]
    with socket.create_connection(("127.0.0.1", port)) as client:
        accepted, _ = server.accept()
        accepted.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        accepted.close()  # the server closes first: its side of the pair enters TIME_WAIT
        assert client.recv(1024)
        assert client.recv(1024) == b""
    server.close()
    # TIME_WAIT is there: a bind without SO_REUSEADDR (the probe as it was) is refused.
    assert _plain_bind_fails(port)
    assert _port_free(port)
