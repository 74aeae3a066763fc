"""Bodies and headers get their bounded cost before they are trusted, as API Gateway bounds them.

A body declared over 10 MB is refused before a byte of it is read; one that streams in
without a declared length (chunked) is counted and refused at 10 MB; a request without a key
is answered before its body is read; headers over 10 KB are refused. Raw sockets send what a
client library would not, and the server's own peak memory (VmHWM) is the measure.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gateway_support import Served, ServerPool
from test_gateway_surface import registered

MB = 1024 * 1024


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, topics_bundle: tuple[dict[str, object], Path]
) -> Iterator[Served]:
    pool = ServerPool()
    try:
        yield pool.start(registered(tmp_path_factory.mktemp("limits") / "state", topics_bundle))
    finally:
        pool.stop_all()


def peak_rss_mb(served: Served) -> int:
    status = Path(f"/proc/{served.process.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))) // 1024


def connect(served: Served) -> socket.socket:
    host, port = served.base.removeprefix("http://").split(":")
    conn = socket.create_connection((host, int(port)), timeout=30)
    return conn


def read_response(conn: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers.get("content-length", 0)):
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def send_quietly(conn: socket.socket, data: bytes) -> int:
    """Send what the server will take; it may close the connection once it has answered."""
    try:
        conn.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        return 0
    return len(data)


def test_a_300_mb_body_without_a_key_is_refused_before_it_is_read(served: Served) -> None:
    before = peak_rss_mb(served)
    started = time.monotonic()
    answers = []
    for _ in range(4):  # four at once, as the report that found it sent them
        conn = connect(served)
        head = f"POST /test/topics/predict HTTP/1.1\r\nHost: x\r\nContent-Length: {300 * MB}\r\n\r\n"
        conn.sendall(head.encode() + b"[" * 65536)
        answers.append((conn, read_response(conn)))
    # THEN each got API Gateway's 413 at once, after 64 KB of 300 MB, and the connection ends
    for conn, (status, headers, body) in answers:
        assert (status, body) == (413, b'{"message":"Request Too Long"}')
        assert headers["connection"] == "close"
        assert "x-amzn-requestid" in headers
        conn.close()
    assert time.monotonic() - started < 10
    # AND the server read none of it
    assert peak_rss_mb(served) - before < 20


def test_a_chunked_body_is_counted_as_it_comes_and_stopped_at_10_mb(served: Served) -> None:
    before = peak_rss_mb(served)
    conn = connect(served)
    head = (
        "POST /test/topics/predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        f"x-api-key: {served.api_key}\r\n\r\n"
    )
    conn.sendall(head.encode())
    chunk = b"[" * MB
    sent = 0
    for _ in range(40):  # 40 MB offered
        sent += send_quietly(conn, f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        if not sent or sent > 12 * MB:
            break
    status, headers, body = read_response(conn)
    conn.close()
    assert (status, body) == (413, b'{"message":"Request Too Long"}')
    assert headers["connection"] == "close"
    # the server held at most about the 10 MB it counted
    assert peak_rss_mb(served) - before < 60


def test_a_chunked_body_without_a_key_gets_403_before_any_of_it_is_read(served: Served) -> None:
    conn = connect(served)
    conn.sendall(b"POST /test/topics/predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    status, headers, body = read_response(conn)
    conn.close()
    assert (status, body) == (403, b'{"message":"Forbidden"}')
    assert headers["connection"] == "close"


def test_headers_over_10_kb_are_refused(served: Served) -> None:
    conn = connect(served)
    head = (
        f"POST /test/topics/predict HTTP/1.1\r\nHost: x\r\nx-api-key: {served.api_key}\r\n"
        f"x-padding: {'a' * 10300}\r\nContent-Length: 2\r\n\r\n[]"
    )
    conn.sendall(head.encode())
    status, _, body = read_response(conn)
    conn.close()
    assert (status, body) == (431, b'{"message":"Request Header Fields Too Large"}')
    # and just under the limit, the same request is served
    just_under = served.post("/test/topics/predict", '["the rocket"]')
    assert just_under.status_code == 200


def test_the_invoke_api_and_the_admin_api_bound_their_bodies_too(served: Served) -> None:
    for path, declared, expected in (
        ("/2015-03-31/functions/topics/invocations", 7 * MB, b"Request must be smaller than 6291456 bytes"),
        ("/_/api/keys", 2 * MB, b"the admin API takes small JSON"),
    ):
        conn = connect(served)
        conn.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {declared}\r\n\r\n".encode())
        status, _, body = read_response(conn)
        conn.close()
        assert status == 413
        assert expected in body
