"""Input reports for one open device file, mirrored into a pty so that poll() works.

umockdev intercepts ``read()``, ``write()`` and ``ioctl()`` but not ``poll()``, ``select()``,
``epoll`` or reads that bypass the PLT (``__read_chk``): those reach the real file behind
the node. So each open of an emulated hidraw node gets a pseudo-terminal of its own
(:class:`PtyPool`), and :class:`PtyReportQueue` keeps one invariant: **the pty holds a
copy of the first queued report and nothing else** (nothing when the queue is empty).
Then:

* ``poll``/``epoll``/``ppoll`` are readable exactly when a report is waiting (the pty's
  ``VMIN`` is the report size, so readiness means the whole report is there);
* an intercepted ``read()`` is answered from the queue; the pty copy is flushed
  (``tcflush``, which also drops bytes still in flight) and the next report copied in;
* an intercepted ``read()`` with nothing queued is handed back to the program
  (``UNHANDLED``), which then reads its pty itself, *outside* umockdev's per-file lock:
  a non-blocking file gets EAGAIN, a blocking one sleeps in the kernel until the next
  copy arrives, while another thread of the program may write;
* a read of the pty itself (the case above, or a read umockdev does not see) is noticed
  through inotify's ``IN_ACCESS`` on the pty (:class:`Watcher`): that report was
  delivered, so it is dropped and the next one copied in.

A report is at most one read away from the program, so report boundaries hold whatever
buffer size it reads with, as on hidraw.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import select
import struct
import termios
import threading
from collections import deque
from pathlib import Path

log = logging.getLogger(__name__)

MAX_QUEUED = 256  # reports kept for a reader that never reads (then dropped, as hidraw does)
IN_ACCESS = 0x00000001
IN_NONBLOCK = os.O_NONBLOCK
_EVENT = struct.Struct("iIII")


def _set_raw(fd: int, vmin: int) -> None:
    attrs = termios.tcgetattr(fd)
    attrs[0] = 0  # iflag
    attrs[1] = 0  # oflag
    attrs[2] = (attrs[2] & ~(termios.CSIZE | termios.PARENB)) | termios.CS8 | termios.CREAD
    attrs[3] = 0  # lflag: no echo, no canonical mode, no signals
    cc = list(attrs[6])
    cc[termios.VMIN] = max(1, min(255, vmin))
    cc[termios.VTIME] = 0
    attrs[6] = cc
    termios.tcsetattr(fd, termios.TCSANOW, attrs)


SLEEP = "/bin/sleep"


class Pty:
    """One pseudo-terminal pair in raw mode; the program opens the slave by its path.

    A session leader without a controlling terminal (a daemon, a program started with
    setsid) that opens a terminal without ``O_NOCTTY`` makes it its controlling terminal;
    its ``/dev/tty`` prompts would then read our pty and hang. A terminal that already
    controls a session is never taken that way, so until a program has opened it
    (:meth:`guard`/:meth:`unguard`) the pty controls the session of a sleeping helper.
    """

    def __init__(self, vmin: int) -> None:
        self.master, self.slave = os.openpty()
        os.set_blocking(self.master, False)
        os.set_blocking(self.slave, False)
        _set_raw(self.slave, vmin)
        self.vmin = vmin
        self.path = os.ttyname(self.slave)
        self._guard: int | None = None

    def guard(self) -> None:
        """Make the pty the controlling terminal of a helper's own session."""
        if self._guard is not None or not os.path.exists(SLEEP):
            return
        try:
            self._guard = os.posix_spawn(
                SLEEP, [SLEEP, "infinity"], {}, setsid=True,
                file_actions=[(os.POSIX_SPAWN_OPEN, 0, self.path, os.O_RDWR, 0),
                              (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                              (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0)])
        except OSError as exc:
            log.debug("cannot guard %s: %s", self.path, exc)

    def unguard(self) -> None:
        pid, self._guard = self._guard, None
        if pid is None:
            return
        with contextlib.suppress(OSError):
            os.kill(pid, 9)
        with contextlib.suppress(OSError):
            os.waitpid(pid, 0)

    def put(self, data: bytes) -> None:
        os.write(self.master, data)

    def hang_up(self) -> None:
        """Close the master side: the program's end of the pty is hung up."""
        master, self.master = self.master, -1
        if master >= 0:
            with contextlib.suppress(OSError):
                os.close(master)

    def flush(self) -> None:
        """Drop whatever the program has not read, including bytes still in flight."""
        with contextlib.suppress(OSError, termios.error):
            termios.tcflush(self.slave, termios.TCIFLUSH)

    def close(self) -> None:
        self.unguard()
        for fd in (self.master, self.slave):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.master = self.slave = -1


class PtyReportQueue:
    """The input reports of one open file, the first mirrored into its own :class:`Pty`."""

    def __init__(self, pty: Pty, watcher: Watcher) -> None:
        self.pty = pty
        self._watcher = watcher
        self._lock = threading.Lock()
        self._queue: deque[bytes] = deque()
        self._copied = False
        self._running = False  # the program reads its pty inside its call (RUN): see end_run
        self._gone = False
        self.dropped = 0  # reports dropped because nobody read them
        watcher.watch(self)

    # -- the device side ---------------------------------------------------------------------
    def put(self, report: bytes) -> None:
        """Queue an input report from the device."""
        with self._lock:
            if self._gone:
                return
            if len(self._queue) >= MAX_QUEUED:  # a full ring: drop, like a kernel hidraw
                self.dropped += 1
                return
            self._queue.append(bytes(report))
            self._copy_head()

    # -- the program side --------------------------------------------------------------------
    def take(self) -> bytes | None:
        """The next report for an intercepted read, or None when none is waiting."""
        self._watcher.sync()  # first notice reads of the pty that already happened
        with self._lock:
            if not self._queue:
                return None
            report = self._queue.popleft()
            if self._copied:
                self.pty.flush()
                self._copied = False
            self._copy_head()
            return report

    def begin_run(self) -> None:
        """The program is about to read its pty inside its call (``--reads emulated``)."""
        with self._lock:
            self._running = True

    def end_run(self, result: int) -> None:
        """That read returned ``result`` bytes: the copied report (if any) is delivered."""
        self._watcher.sync()
        with self._lock:
            self._running = False
            if result > 0 and self._copied:
                self._delivered()

    def read_by_program(self) -> None:
        """inotify saw a read of the pty: the copy was delivered."""
        with self._lock:
            if self._running or not self._copied:
                return
            self._delivered()

    def waiting(self) -> int:
        with self._lock:
            return len(self._queue)

    def hang_up(self) -> None:
        """The device is gone: a poll() on the file reports POLLERR|POLLHUP (as hidraw does
        after an unplug) and a read of the pty itself ends."""
        with self._lock:
            self._gone = True
            self._queue.clear()
            self._copied = False
            self.pty.hang_up()

    def close(self) -> None:
        with self._lock:
            self._gone = True
            self._queue.clear()
            self._copied = False
        self._watcher.unwatch(self)
        self.pty.close()

    # -- the invariant ----------------------------------------------------------------------
    def _delivered(self) -> None:
        self.pty.flush()  # the rest of a report read with a short buffer is lost, as on hidraw
        self._copied = False
        if self._queue:
            self._queue.popleft()
        self._copy_head()

    def _copy_head(self) -> None:
        if self._copied or not self._queue or self._gone:
            return
        try:
            self.pty.put(self._queue[0])
        except OSError as exc:
            log.debug("cannot copy a report into %s: %s", self.pty.path, exc)
            return
        self._copied = True


class Watcher:
    """inotify ``IN_ACCESS`` on every open file's pty: who read a copy past umockdev.

    One inotify instance and one thread per testbed. :meth:`sync` handles the events
    already queued (called before answering a read, so that a report read from the pty a
    moment ago is not handed out again).
    """

    def __init__(self) -> None:
        libc_name = ctypes.util.find_library("c") or "libc.so.6"
        self._libc = ctypes.CDLL(libc_name, use_errno=True)
        fd = self._libc.inotify_init1(IN_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_init1: {os.strerror(err)}")
        self._fd = fd
        self._lock = threading.RLock()  # reading and handing over events is one step
        self._queues: dict[int, PtyReportQueue] = {}
        self._wd: dict[int, int] = {}  # id(queue) -> wd
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="hwtoken-umockdev-watch")
        self._thread.start()

    def watch(self, q: PtyReportQueue) -> None:
        wd = self._libc.inotify_add_watch(self._fd, os.fsencode(q.pty.path), IN_ACCESS)
        if wd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"inotify_add_watch {q.pty.path}: {os.strerror(err)}")
        with self._lock:
            self._queues[wd] = q
            self._wd[id(q)] = wd

    def unwatch(self, q: PtyReportQueue) -> None:
        with self._lock:
            wd = self._wd.pop(id(q), None)
            if wd is not None and self._queues.get(wd) is q:
                del self._queues[wd]
                self._libc.inotify_rm_watch(self._fd, wd)

    def sync(self) -> None:
        """Handle every event queued so far.

        Events are read and handed to their queues under one lock, so a read answered
        from a queue (:meth:`PtyReportQueue.take` calls this first) never overtakes an
        event the watcher thread has read but not yet handed over: that report would be
        given out twice, and the next one dropped.
        """
        with self._lock:
            try:
                data = os.read(self._fd, 65536)
            except (BlockingIOError, OSError):
                return
            offset = 0
            while offset + _EVENT.size <= len(data):
                wd, mask, _cookie, name_len = _EVENT.unpack_from(data, offset)
                offset += _EVENT.size + name_len
                q = self._queues.get(wd)
                if q is not None and mask & IN_ACCESS:
                    q.read_by_program()

    def _run(self) -> None:
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        poller.register(self._stop_r, select.POLLIN)
        while True:
            events = poller.poll()
            if any(fd == self._stop_r for fd, _ in events):
                return
            self.sync()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._stop_w, b"x")
        self._thread.join(2)
        for fd in (self._fd, self._stop_r, self._stop_w):
            with contextlib.suppress(OSError):
                os.close(fd)


class PtyPool:
    """Gives every open of one device node a pty of its own.

    The node (``$UMOCKDEV_DIR/dev/hidrawN``) is a symlink to a fresh pty's slave. When a
    program opens it, umockdev connects to the node's socket; :meth:`claim` then finds, in
    ``/proc/PID/fd``, which of this node's ptys that process opened, hands it to the
    connection, and points the node at a new fresh pty, so the next open gets its own.
    """

    def __init__(self, node: Path, vmin: int) -> None:
        self.node = node
        self.vmin = vmin
        self._lock = threading.Lock()
        self._free: dict[str, Pty] = {}
        self._owned: dict[str, Pty] = {}
        self._fresh = self._new_fresh()

    def _new_fresh(self) -> Pty:
        pty = Pty(self.vmin)
        pty.guard()
        self._free[pty.path] = pty
        tmp = self.node.with_name(f".{self.node.name}.new")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(pty.path, tmp)
        os.replace(tmp, self.node)  # atomic: an open sees the old or the new pty
        return pty

    def claim(self, fds: dict[int, str]) -> Pty:
        """The pty a new open of the node got (``fds``: that process's open files)."""
        with self._lock:
            opened = [self._free[t] for t in fds.values() if t in self._free]
            if opened:
                pty = self._fresh if self._fresh in opened else opened[-1]
            else:
                if any(t in self._owned for t in fds.values()):
                    log.warning("two opens of %s raced for one pty; the later one may miss "
                                "poll() wake-ups", self.node.name)
                pty = self._fresh  # /proc unreadable (another user): it took the fresh one
            del self._free[pty.path]
            self._owned[pty.path] = pty
            if pty is self._fresh:
                self._fresh = self._new_fresh()
        pty.unguard()  # opened now: no later open can take it as a terminal
        return pty

    def release(self, pty: Pty) -> None:
        with self._lock:
            self._owned.pop(pty.path, None)

    def close(self) -> None:
        with self._lock:
            ptys = list(self._free.values())
            self._free.clear()
        for pty in ptys:
            pty.close()
        with contextlib.suppress(FileNotFoundError):
            self.node.unlink()


__all__ = ["Pty", "PtyPool", "PtyReportQueue", "Watcher"]
