"""The shared base of a server run as a local child process (Kafka, Prometheus): free loopback ports,
spawning with a log file, the readiness wait with a deadline that also watches the process, stopping."""

from __future__ import annotations

import contextlib
import ctypes
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, NoReturn, TypeVar

STOP_TIMEOUT_S = 30.0
LOOPBACK = "127.0.0.1"
LOG_TAIL_LINES = 40

_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


# --------------------------------------------------------------------------
# Text and ports
# --------------------------------------------------------------------------


def strip_ansi(text: str) -> str:
    """``text`` without ANSI colour codes.

    >>> strip_ansi("\\x1b[1;31mERROR\\x1b[m done")
    'ERROR done'
    """
    return _ANSI_ESCAPE.sub("", text)


def tail_text(text: str, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a tool's output, without colour codes.

    >>> tail_text("one\\ntwo\\n\\x1b[0mthree\\n", lines=2)
    'two\\nthree'
    """
    # Maven 3.8 emits colour resets even in batch mode; they garble messages.
    return "\n".join(strip_ansi(text).splitlines()[-lines:])


def free_loopback_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on 127.0.0.1 now."""
    # All sockets stay open until every port is picked, so the kernel never
    # hands out the same port twice; the server binds them right after.
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind((LOOPBACK, 0))
        return [sock.getsockname()[1] for sock in sockets]


def free_loopback_port() -> int:
    """A TCP port free on 127.0.0.1 now, for a server that must know its address before it starts."""
    return free_loopback_ports(1)[0]


# --------------------------------------------------------------------------
# The child process
# --------------------------------------------------------------------------


def _parent_death_signal_setter() -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGTERM the server when Python dies.

    Without it a killed pytest run leaves orphaned servers behind.  Linux
    ties the signal to the thread that forked, so start servers from a thread
    that outlives them (the main thread, as pytest does).  prctl is looked up
    here, before the fork: the child of a threaded process (Kafka clients run
    threads) must not load libraries.  None where unavailable.
    """
    if sys.platform != "linux":
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def set_death_signal() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)

    return set_death_signal


_P = TypeVar("_P", bound="LocalProcess")


class LocalProcess:
    """What a locally started server shares: a work directory, a child process, its log file.

    Subclasses implement ``start`` (ending in :meth:`_wait_until_ready`),
    ``log_path``, ``_is_ready`` and ``_fail``.  ``stop()`` keeps the work
    directory; ``close()``, and leaving a ``with`` block, also deletes it if
    this object created it.
    """

    def __init__(self, work_dir: Path | None, prefix: str, startup_timeout_s: float) -> None:
        self._owns_work_dir = work_dir is None
        self._work_dir = work_dir or Path(tempfile.mkdtemp(prefix=prefix))
        self._startup_timeout_s = startup_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._log_handle: IO[bytes] | None = None

    @property
    def work_dir(self) -> Path:
        return self._work_dir

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self: _P) -> _P:
        raise NotImplementedError

    def stop(self) -> None:
        """SIGTERM the server, SIGKILL it if it lingers; safe to call twice."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None

    def crash(self) -> None:
        """SIGKILL the server, as a power cut would (its data stays for the next ``start``)."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self.stop()

    def close(self) -> None:
        """Stop the server and delete a work directory this object made."""
        self.stop()
        if self._owns_work_dir:
            shutil.rmtree(self._work_dir, ignore_errors=True)

    def _spawn(self, command: list[str], cwd: Path) -> None:
        """Start ``command`` with its output appended to ``log_path`` (a restart keeps the earlier log)."""
        self._log_handle = self.log_path.open("ab")
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            # Own session: a terminal's Ctrl-C reaches only Python, which
            # then stops the server in order instead of both racing.
            start_new_session=True,
            # Safe despite client threads: the hook only calls a pre-resolved prctl.
            preexec_fn=_parent_death_signal_setter(),  # noqa: PLW1509
        )

    def _wait_until_ready(self, waiting_for: str) -> None:
        """Poll ``_is_ready`` until it answers, the process exits, or the start-up deadline passes."""
        deadline = time.monotonic() + self._startup_timeout_s
        while True:
            self._raise_if_exited()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._fail(f"did not {waiting_for} within {self._startup_timeout_s:.0f}s")
            if self._is_ready(min(remaining, 2.0)):
                return
            time.sleep(0.1)

    def _raise_if_exited(self) -> None:
        if self._process is not None and self._process.poll() is not None:
            self._fail(f"exited with code {self._process.returncode} while starting")

    @property
    def log_path(self) -> Path:
        raise NotImplementedError

    def _is_ready(self, timeout_s: float) -> bool:
        raise NotImplementedError

    def _fail(self, reason: str) -> NoReturn:
        raise NotImplementedError

    def __enter__(self: _P) -> _P:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
