from __future__ import annotations

import socket
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest

from monitor.ops.http_server import BoundedServer, Limits

IDLE_CLIENTS = 1_500
LIMITS = Limits(workers=4, queued=16, waiting=256, timeout_seconds=2.0)


def hello(environ: dict[str, object], start_response: object) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])  # type: ignore[operator]
    return [b"hello\n"]


@pytest.fixture
def server() -> Iterator[BoundedServer]:
    served = BoundedServer("127.0.0.1", 0, hello, LIMITS).start()
    yield served
    served.close()


def server_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith("metrics-http"))


def closed_by_server(connection: socket.socket) -> bool:
    connection.settimeout(0.01)
    try:
        return connection.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:  # reset: closed too
        return True


def wait_until(condition: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_idle_and_half_sent_requests_hold_no_thread_and_are_closed(server: BoundedServer) -> None:
    idle = []
    try:
        for n in range(IDLE_CLIENTS):
            connection = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            if n % 2:
                connection.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # no blank line: never complete
            idle.append(connection)
        assert server.waiting() <= LIMITS.waiting
        assert server_threads() <= 1 + LIMITS.workers
        # A scrape sends its request at once: answered while the idle ones are still open.
        started = time.monotonic()
        assert urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5).read() == b"hello\n"
        assert time.monotonic() - started < 1.0
        assert server_threads() <= 1 + LIMITS.workers
        assert wait_until(lambda: all(closed_by_server(c) for c in idle), LIMITS.timeout_seconds + 2)
        assert server.waiting() == 0
    finally:
        for connection in idle:
            connection.close()


def test_a_request_sent_slowly_is_answered_within_the_timeout(server: BoundedServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as connection:
        for piece in (b"GET / HTTP/1.1\r\n", b"Host: x\r\n", b"\r\n"):
            connection.sendall(piece)
            time.sleep(0.2)
        assert connection.makefile("rb").readline().startswith(b"HTTP/1.0 200")


def test_answers_use_at_most_the_workers(server: BoundedServer) -> None:
    results: list[bytes] = []

    def scrape() -> None:
        results.append(urllib.request.urlopen(f"http://127.0.0.1:{server.port}/", timeout=5).read())

    clients = [threading.Thread(target=scrape) for _ in range(12)]
    for client in clients:
        client.start()
    for client in clients:
        client.join()
    assert results == [b"hello\n"] * 12
    assert server_threads() <= 1 + LIMITS.workers


def test_close_ends_the_thread_and_frees_the_port() -> None:
    served = BoundedServer("127.0.0.1", 0, hello, LIMITS).start()
    port = served.port
    served.close()
    served.close()  # twice is harmless
    assert not any(t.name == "metrics-http" and t.is_alive() for t in threading.enumerate())
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1)
