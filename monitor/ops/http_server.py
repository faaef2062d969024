"""A small WSGI server for scrapes and probes that idle or slow clients cannot exhaust: bounded threads, bounded
connections, and a deadline on every request.

A thread-per-connection server (``wsgiref`` with ``ThreadingMixIn``) holds a thread for as long as a client
keeps a connection open without finishing its request. Here a connection waits without a thread until its
request head (request line and headers, all a GET or HEAD sends) has arrived; only then does one of a few
worker threads answer it, with the standard library's ``WSGIRequestHandler`` reading the head from memory.
"""

from __future__ import annotations

import io
import logging
import selectors
import socket
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

log = logging.getLogger(__name__)
_HEAD_END = b"\r\n\r\n"


@dataclass(frozen=True)
class Limits:
    """``workers``: requests answered at once; ``queued``: complete requests waiting for a worker (more are
    closed unanswered); ``waiting``: connections whose request is not complete yet (beyond it the oldest is
    closed: a scrape or probe sends its request at once, a stalled client never does); ``timeout_seconds``:
    time for a connection to send its whole request head, and for each write of the answer;
    ``max_head_bytes``: a longer request head is closed unanswered."""

    workers: int = 4
    queued: int = 16
    waiting: int = 256
    timeout_seconds: float = 5.0
    max_head_bytes: int = 16384


@dataclass
class _Waiting:
    address: Any
    deadline: float
    head: bytes = b""


class _Handler(WSGIRequestHandler):
    server: _Server

    def setup(self) -> None:
        self.timeout = self.server.limits.timeout_seconds  # bounds each write to a client that does not read
        super().setup()
        self.rfile.close()  # the head was read already: the handler reads it from memory
        self.rfile = io.BytesIO(self.server.heads.pop(self.connection.fileno(), b""))

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass  # one line per scrape would drown the service's own logs


class _Server(WSGIServer):
    request_queue_size = 128  # the listen backlog: connections are accepted as fast as they come

    def __init__(self, address: tuple[str, int], limits: Limits) -> None:
        self.limits = limits
        self.heads: dict[int, bytes] = {}  # by socket descriptor, for the handler
        super().__init__(address, _Handler)


class BoundedServer:
    """Serves ``app`` on ``host:port`` (0: any port) from ``start`` until ``close``, within ``limits``."""

    def __init__(self, host: str, port: int, app: Any, limits: Limits = Limits()) -> None:
        self.limits = limits
        self._server = _Server((host, port), limits)
        self._server.set_app(app)
        self._server.socket.setblocking(False)
        self._waiting: OrderedDict[socket.socket, _Waiting] = OrderedDict()  # oldest first
        self._workers = ThreadPoolExecutor(limits.workers, thread_name_prefix="metrics-http-worker")
        self._in_hand = threading.BoundedSemaphore(limits.workers + limits.queued)
        self._selector = selectors.DefaultSelector()
        self._wake_read, self._wake_write = socket.socketpair()
        self._stopping = False
        self._thread = threading.Thread(target=self._serve, name="metrics-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    def start(self) -> BoundedServer:
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop accepting, close the waiting connections and the socket; answers under way finish."""
        if self._stopping:
            return
        self._stopping = True
        self._wake_write.send(b"x")
        self._thread.join(timeout=self.limits.timeout_seconds)
        self._workers.shutdown(wait=False)

    def waiting(self) -> int:
        """Connections accepted whose request is not complete yet."""
        return len(self._waiting)

    def _serve(self) -> None:
        self._selector.register(self._server.socket, selectors.EVENT_READ)
        self._selector.register(self._wake_read, selectors.EVENT_READ)
        try:
            while not self._stopping:
                for key, _ in self._selector.select(timeout=self._next_deadline()):
                    if key.fileobj is self._server.socket:
                        self._accept()
                    elif key.fileobj is not self._wake_read:
                        self._read(key.fileobj)  # type: ignore[arg-type]
                self._close_expired()
        finally:
            for connection in list(self._waiting):
                self._drop(connection)
            self._selector.close()
            self._server.server_close()
            self._wake_read.close()
            self._wake_write.close()

    def _next_deadline(self) -> float:
        if not self._waiting:
            return self.limits.timeout_seconds
        oldest = next(iter(self._waiting.values()))
        return max(0.0, oldest.deadline - time.monotonic())

    def _accept(self) -> None:
        try:
            connection, address = self._server.socket.accept()
        except BlockingIOError:
            return
        except OSError as exc:  # out of file descriptors: make room for the next one
            log.warning("metrics endpoint: cannot accept a connection (%s); closing the oldest idle one", exc)
            if self._waiting:
                self._drop(next(iter(self._waiting)))
            return
        if len(self._waiting) >= self.limits.waiting:
            self._drop(next(iter(self._waiting)))
        connection.setblocking(False)
        self._waiting[connection] = _Waiting(address, time.monotonic() + self.limits.timeout_seconds)
        self._selector.register(connection, selectors.EVENT_READ)

    def _read(self, connection: socket.socket) -> None:
        waiting = self._waiting.get(connection)
        if waiting is None:
            return  # closed to make room earlier in this round
        try:
            received = connection.recv(self.limits.max_head_bytes)
        except BlockingIOError:
            return
        except OSError:
            received = b""
        waiting.head += received
        if not received or len(waiting.head) > self.limits.max_head_bytes:
            self._drop(connection)  # closed by the client, or no request of ours
        elif _HEAD_END in waiting.head:
            self._hand_over(connection, waiting)

    def _hand_over(self, connection: socket.socket, waiting: _Waiting) -> None:
        self._selector.unregister(connection)
        del self._waiting[connection]
        if not self._in_hand.acquire(blocking=False):
            connection.close()  # every worker busy and the queue full: refused rather than held
            return
        self._server.heads[connection.fileno()] = waiting.head
        self._workers.submit(self._answer, connection, waiting.address)

    def _answer(self, connection: socket.socket, address: Any) -> None:
        try:
            self._server.finish_request(connection, address)
        except OSError:
            pass  # the client went away or stopped reading: nothing to answer
        except Exception:
            log.exception("metrics endpoint: answering %s failed", address)
        finally:
            self._server.heads.pop(connection.fileno(), None)
            self._server.shutdown_request(connection)
            self._in_hand.release()

    def _close_expired(self) -> None:
        now = time.monotonic()
        while self._waiting:
            connection, oldest = next(iter(self._waiting.items()))
            if oldest.deadline > now:
                return
            self._drop(connection)

    def _drop(self, connection: socket.socket) -> None:
        self._selector.unregister(connection)
        del self._waiting[connection]
        connection.close()
