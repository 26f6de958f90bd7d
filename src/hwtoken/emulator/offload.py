"""Heavy computations of the applets run in a helper process, so the key keeps talking.

While a smart-card command runs, the CCID layer sends the host a time extension every
quarter second from a thread of its own (:class:`hwtoken.emulator.usb.CcidPort`), or
libccid gives up after about 1.5 s. Python threads share one interpreter lock, and a
computation in C that holds it stops every other thread until it returns: OpenSSL's check
of an RSA-4096 key holds it for 0.3 s, several seconds on a loaded machine. :func:`run`
does such work in a worker process and waits for it without the lock, so the time
extensions (and every other transport of the key) keep flowing.

The worker is one process per emulator process (``python -m hwtoken.emulator.offload``,
started on first use, in a session of its own so a terminal's Ctrl-C ends the emulator and
not it); it exits when its parent closes the pipe or dies. Calls go one at a time over its
stdin/stdout as length-prefixed pickles: what runs there must be a pure function of
picklable arguments, importable by name (the worker gets this process's ``sys.path``; no
``__main__`` is re-imported, unlike multiprocessing's spawn). If the worker cannot be
started or dies, the call runs here instead and the next call starts a new worker.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import pickle
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import IO, Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
_HEADER = struct.Struct(">I")

_lock = threading.Lock()  # one call at a time; guards _worker
_worker: subprocess.Popen[bytes] | None = None


class WorkerGone(Exception):
    """The worker process could not be reached (it died, or never started)."""


def _send(stream: IO[bytes], obj: object) -> None:
    data = pickle.dumps(obj)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _receive(stream: IO[bytes]) -> Any:
    head = stream.read(_HEADER.size)
    if len(head) < _HEADER.size:
        raise EOFError("the other side closed the pipe")
    (size,) = _HEADER.unpack(head)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("the other side closed the pipe mid-message")
    return pickle.loads(data)  # noqa: S301 - our own parent or worker, over a private pipe


def _start() -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return subprocess.Popen(
        [sys.executable, "-m", "hwtoken.emulator.offload"], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, start_new_session=True)


def _call(fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    """Call with the lock held: ``fn(*args)`` in the worker (WorkerGone if unreachable)."""
    global _worker
    if _worker is None or _worker.poll() is not None:
        try:
            _worker = _start()
        except OSError as exc:
            raise WorkerGone(str(exc)) from None
    assert _worker.stdin is not None and _worker.stdout is not None
    try:
        _send(_worker.stdin, (fn, args))
        ok, value = _receive(_worker.stdout)
    except (OSError, EOFError, pickle.UnpicklingError) as exc:
        _stop_worker()
        raise WorkerGone(str(exc)) from None
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


def run(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` computed in the worker process; its result, or its exception.

    The calling thread waits without holding the interpreter lock.
    """
    with _lock:
        try:
            return _call(fn, args)
        except WorkerGone as exc:
            log.warning("offload worker unavailable (%s); computing in process", exc)
    return fn(*args)


def _stop_worker() -> None:
    global _worker
    worker, _worker = _worker, None
    if worker is None:
        return
    with contextlib.suppress(OSError):
        if worker.stdin is not None:
            worker.stdin.close()
    try:
        worker.wait(timeout=2)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait()
    if worker.stdout is not None:
        worker.stdout.close()


def shutdown() -> None:
    """Stop the worker (tests; it also stops when this process exits)."""
    with _lock:
        _stop_worker()


atexit.register(shutdown)


def serve(stdin: IO[bytes], stdout: IO[bytes]) -> None:
    """The worker's loop: a call in, its outcome out, until the parent closes the pipe."""
    while True:
        try:
            fn, args = _receive(stdin)
        except EOFError:
            return
        try:
            outcome: tuple[bool, Any] = (True, fn(*args))
        except Exception as exc:  # the caller gets it raised
            outcome = (False, exc)
        try:
            _send(stdout, outcome)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            _send(stdout, (False, RuntimeError(f"offload: unpicklable outcome: {exc}")))


if __name__ == "__main__":  # pragma: no cover - the worker process
    serve(sys.stdin.buffer, sys.stdout.buffer)
