"""Run many ``hwtoken`` invocations fast, each as a real process of its own.

A *zygote*: this script imports hwtoken's command line once, then for every request it
forks a child that runs ``hwtoken.cli.main(argv)`` -- the console script's entry point --
with its own stdin, stdout, stderr, environment and working directory, and reports the
child's exit status and output. Each invocation is a separate process with real file
descriptors and a real exit code; only the interpreter start-up and imports are shared,
which is what makes hundreds of invocations affordable in a test.

Protocol (one JSON object per line, both ways)::

    -> {"argv": [hex of os.fsencode(arg), ...], "env": {...}, "cwd": "...",
        "stdin": hex, "timeout": seconds}
    <- {"rc": N (or null on timeout), "stdout": hex, "stderr": hex}

Used by ``tests/cli/test_cli_contract.py``; run as ``python cli_zygote.py``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import sys
import tempfile
import time
import traceback


def _preload() -> None:
    """Import what commands import lazily, so children start their work at once."""
    import click

    from hwtoken.cli.root import cli

    def walk(cmd: click.Command, ctx: click.Context) -> None:
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                if sub is not None:
                    walk(sub, click.Context(sub, parent=ctx, info_name=name))

    walk(cli, click.Context(cli, info_name="hwtoken"))
    for module in ("hwtoken.fido.device", "hwtoken.yubikey.device", "hwtoken.yubikey.oath",
                   "hwtoken.emulator.key", "hwtoken.provision.inventory", "hwtoken.fob.device",
                   "hwtoken.otp", "hwtoken.paperkey", "hwtoken.doctor", "segno"):
        __import__(module)


def _child(req: dict, out_fd: int, err_fd: int, in_fd: int) -> None:
    os.dup2(in_fd, 0)
    os.dup2(out_fd, 1)
    os.dup2(err_fd, 2)
    for fd in (in_fd, out_fd, err_fd):
        os.close(fd)
    # the streams a fresh interpreter (same locale: this one's) makes on these descriptors
    def stream(fd: int, mode: str, like: io.TextIOWrapper) -> io.TextIOWrapper:
        return io.TextIOWrapper(io.BufferedReader(io.FileIO(fd, mode, closefd=False))
                                if mode == "r" else
                                io.BufferedWriter(io.FileIO(fd, mode, closefd=False)),
                                encoding=like.encoding, errors=like.errors,
                                line_buffering=fd == 2)

    sys.stdin = stream(0, "r", sys.__stdin__)
    sys.stdout = stream(1, "w", sys.__stdout__)
    sys.stderr = stream(2, "w", sys.__stderr__)
    os.environ.clear()
    os.environ.update(req["env"])
    os.chdir(req["cwd"])
    signal.signal(signal.SIGINT, signal.default_int_handler)
    argv = [os.fsdecode(bytes.fromhex(a)) for a in req["argv"]]
    sys.argv = ["hwtoken", *argv]
    code = 0
    try:
        from hwtoken.cli import main

        main(argv)
    except SystemExit as exc:  # what the interpreter does with it
        if exc.code is None:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:  # noqa: BLE001 - an uncaught exception: Python prints it, exit 1
        traceback.print_exc()
        code = 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code & 0xFF)


def _run(req: dict) -> dict:
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.TemporaryFile() as inp:
        inp.write(bytes.fromhex(req.get("stdin", "")))
        inp.flush()
        inp.seek(0)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                _child(req, os.dup(out.fileno()), os.dup(err.fileno()), os.dup(inp.fileno()))
            finally:
                os._exit(99)
        deadline = time.monotonic() + float(req.get("timeout", 30))
        rc: int | None = None
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                rc = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                break
            time.sleep(0.002)
        out.seek(0)
        err.seek(0)
        return {"rc": rc, "stdout": out.read().hex(), "stderr": err.read().hex()}


def main() -> None:
    _preload()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        sys.stdout.write(json.dumps(_run(json.loads(line))) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
