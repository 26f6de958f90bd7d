"""The offload worker (emulator/offload.py): results and exceptions come back, a dead
worker is replaced, and the caller's own script is never run again in it."""

from __future__ import annotations

import io
import logging
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading

import pytest

from hwtoken.emulator import offload
from hwtoken.emulator.applets.piv.keys import rsa_private


def refuse(value: int) -> int:
    raise ValueError(f"no {value}")


def test_results_and_exceptions_come_back():
    assert offload.run(rsa_private, 5, 11, 13, 3, 5, 6) == 70  # CRT of 5^d mod 143
    with pytest.raises(ValueError, match="no 7"):
        offload.run(refuse, 7)


def test_a_dead_worker_is_replaced():
    assert offload.run(pow, 3, 4, 5) == 1
    worker = offload._worker
    assert worker is not None
    worker.kill()
    worker.wait()
    assert offload.run(pow, 3, 5, 7) == 5  # (computed here or in a new worker)
    assert offload.run(pow, 2, 10, 1000) == 24
    assert offload._worker is not None and offload._worker is not worker
    offload.shutdown()
    assert offload._worker is None


def test_the_callers_script_is_not_run_again_in_the_worker(tmp_path):
    script = tmp_path / "no_main_guard.py"
    script.write_text(
        "from hwtoken.emulator import offload\n"
        "print('script ran')\n"
        "print(offload.run(pow, 2, 8))\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "script ran\n256\n" and out.stderr == ""


# The framing, the worker's loop and the worker's process, each on its own.

def _frames(*objs: object) -> io.BytesIO:
    stream = io.BytesIO()
    for obj in objs:
        offload._send(stream, obj)
    stream.seek(0)
    return stream


def test_a_message_is_a_big_endian_length_then_the_pickle():
    stream = io.BytesIO()
    offload._send(stream, ("x", 1))
    data = pickle.dumps(("x", 1))
    assert stream.getvalue() == struct.pack(">I", len(data)) + data
    stream.seek(0)
    assert offload._receive(stream) == ("x", 1)
    with pytest.raises(EOFError, match=r"^the other side closed the pipe$"):
        offload._receive(stream)


def test_a_cut_message_is_the_end_of_the_pipe():
    with pytest.raises(EOFError, match=r"^the other side closed the pipe$"):
        offload._receive(io.BytesIO(b"\x00\x00\x00"))
    data = pickle.dumps(12345)
    with pytest.raises(EOFError, match=r"^the other side closed the pipe mid-message$"):
        offload._receive(io.BytesIO(struct.pack(">I", len(data)) + data[:-1]))
    assert offload._receive(io.BytesIO(struct.pack(">I", len(data)) + data)) == 12345


def _outcomes(stream: io.BytesIO) -> list:
    stream.seek(0)
    found = []
    while True:
        try:
            found.append(offload._receive(stream))
        except EOFError:
            return found


def test_serve_answers_each_call_until_the_pipe_closes():
    out = io.BytesIO()
    offload.serve(_frames((pow, (2, 10)), (int, ("x",)), (divmod, (17, 5))), out)
    (ok1, v1), (ok2, v2), (ok3, v3) = _outcomes(out)
    assert (ok1, v1) == (True, 1024)
    assert ok2 is False and type(v2) is ValueError
    assert v2.args == ("invalid literal for int() with base 10: 'x'",)
    assert (ok3, v3) == (True, (3, 2))


def test_serve_reports_an_outcome_that_cannot_be_pickled():
    out = io.BytesIO()
    offload.serve(_frames((threading.Lock, ()), (abs, (-3,))), out)
    (ok1, v1), (ok2, v2) = _outcomes(out)
    assert ok1 is False and type(v1) is RuntimeError
    assert v1.args == ("offload: unpicklable outcome: cannot pickle '_thread.lock' object",)
    assert (ok2, v2) == (True, 3)  # and goes on serving


def test_serve_of_an_empty_pipe_returns_at_once():
    out = io.BytesIO()
    offload.serve(io.BytesIO(), out)
    assert out.getvalue() == b""


@pytest.fixture
def fresh_worker():
    offload.shutdown()
    yield
    offload.shutdown()


def test_the_worker_is_one_process_of_its_own(fresh_worker):
    pid = offload.run(os.getpid)
    worker = offload._worker
    assert worker is not None and pid == worker.pid != os.getpid()
    assert offload.run(os.getpid) == pid  # the same worker for the next call
    assert offload.run(os.getsid, 0) == pid  # a session of its own
    assert offload.run(os.readlink, "/proc/self/fd/2") == "/dev/null"
    assert offload.run(os.getenv, "PYTHONPATH") == os.pathsep.join(p for p in sys.path if p)
    assert offload.run(os.getenv, "HWTOKEN_OFFLOAD_TEST_MARK") is None


def test_the_worker_gets_this_environment(fresh_worker, monkeypatch):
    monkeypatch.setenv("HWTOKEN_OFFLOAD_TEST_MARK", "seen")
    assert offload.run(os.getenv, "HWTOKEN_OFFLOAD_TEST_MARK") == "seen"


def test_a_worker_exception_is_raised_by_the_call(fresh_worker):
    with offload._lock:
        with pytest.raises(ValueError, match=r"^invalid literal for int\(\) with base 10: 'x'$"):
            offload._call(int, ("x",))
        assert offload._call(int, ("12",)) == 12
        assert offload._call(os.getpid, ()) != os.getpid()


def test_a_worker_dying_mid_call_is_worker_gone(fresh_worker):
    with offload._lock:
        assert offload._call(abs, (-1,)) == 1
        worker = offload._worker
        assert worker is not None
        with pytest.raises(offload.WorkerGone, match=r"^the other side closed the pipe$"):
            offload._call(os._exit, (3,))
        assert offload._worker is None
        assert worker.returncode == 3
        assert worker.stdin.closed and worker.stdout.closed


def test_a_worker_that_cannot_start_means_computing_here(fresh_worker, monkeypatch, caplog):
    monkeypatch.setattr(sys, "executable", "/nonexistent/python")
    with caplog.at_level(logging.WARNING, logger="hwtoken.emulator.offload"):
        assert offload.run(os.getpid) == os.getpid()
    assert offload._worker is None
    assert [r.getMessage() for r in caplog.records] == [
        "offload worker unavailable ([Errno 2] No such file or directory: "
        "'/nonexistent/python'); computing in process"]


def test_shutdown_ends_the_worker_and_closes_its_pipes(fresh_worker):
    offload.run(abs, -1)
    worker = offload._worker
    assert worker is not None
    offload.shutdown()
    assert offload._worker is None
    assert worker.returncode == 0  # it saw the pipe close and returned
    assert worker.stdin.closed and worker.stdout.closed
    offload.shutdown()  # nothing left to stop
    assert offload._worker is None


def test_a_worker_that_ignores_the_closed_pipe_is_killed(fresh_worker):
    stuck = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        offload._worker = stuck
        stopper = threading.Thread(target=offload.shutdown, daemon=True)
        stopper.start()
        stopper.join(timeout=20)
        assert not stopper.is_alive()
        assert stuck.returncode == -signal.SIGKILL
        assert stuck.stdin.closed and stuck.stdout.closed
    finally:
        if stuck.poll() is None:
            stuck.kill()
            stuck.wait(timeout=10)


def test_stopping_a_dead_worker_with_a_request_unsent_is_quiet(fresh_worker):
    offload.run(abs, -1)
    worker = offload._worker
    assert worker is not None and worker.stdin is not None
    worker.stdin.write(b"\x00\x00")  # half a header, still in the pipe's buffer
    worker.kill()
    worker.wait(timeout=10)
    offload.shutdown()  # closing stdin flushes into a broken pipe: that error is dropped
    assert offload._worker is None
    assert worker.stdin.closed and worker.stdout.closed
    assert worker.returncode == -signal.SIGKILL
