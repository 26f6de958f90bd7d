"""Heavy computations of the applets run in a helper process, so the key keeps talking.

While a smart-card command runs, the CCID layer sends the host a time extension every
half second from a thread of its own (:class:`hwtoken.emulator.usb.CcidPort`), or libccid
gives up after about 1.5 s. Python threads share one interpreter lock, and a computation
in C that holds it stops every other thread until it returns: OpenSSL's check of an
RSA-4096 key holds it for 0.3 s, several seconds on a loaded machine. :func:`run` does
such work in a worker process and waits for it without the lock, so the time extensions
(and every other transport of the key) keep flowing.

The worker is one process per emulator process, started on first use (the ``spawn``
method: no fork of a threaded process), ignoring SIGINT (Ctrl-C ends the emulator, which
ends the worker), and it exits with its parent. What runs there must be a pure function
of picklable arguments, importable by name. If the worker cannot be started or dies, the
call runs here instead and the next call starts a new worker.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

_lock = threading.Lock()
_executor: Executor | None = None


def _worker_init() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _pool() -> Executor:
    global _executor
    with _lock:
        if _executor is None:
            import atexit
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            _executor = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                initializer=_worker_init)
            # let go of it while the interpreter is whole (left to the final teardown,
            # its clean-up callback prints an ignored exception)
            atexit.register(shutdown)
        return _executor


def _discard(broken: Executor) -> None:
    global _executor
    with _lock:
        if _executor is broken:
            _executor = None
    broken.shutdown(wait=False, cancel_futures=True)


def run(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` computed in the worker process; its result, or its exception.

    The calling thread waits without holding the interpreter lock.
    """
    from concurrent.futures.process import BrokenProcessPool

    pool = _pool()
    try:
        future = pool.submit(fn, *args)
    except (BrokenProcessPool, RuntimeError, OSError) as exc:
        log.warning("offload worker unavailable (%s); computing in process", exc)
        _discard(pool)
        return fn(*args)
    try:
        return future.result()
    except BrokenProcessPool as exc:
        log.warning("offload worker died (%s); computing in process", exc)
        _discard(pool)
        return fn(*args)


def shutdown() -> None:
    """Stop the worker (tests; a process that exits stops it by itself)."""
    global _executor
    with _lock:
        executor, _executor = _executor, None
    if executor is not None:
        executor.shutdown(wait=True, cancel_futures=True)
