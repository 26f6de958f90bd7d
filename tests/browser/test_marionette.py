"""The Marionette client's framing against a server on a local socket that answers with
scripted bytes (the client's conversation with real Firefox is in
test_webauthn_in_browsers.py): greeting, matching answers to commands, errors, and any
bytes a broken or hostile server sends."""

from __future__ import annotations

import contextlib
import json
import socket
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwtoken.browser.marionette import ELEMENT_KEY, MarionetteClient, MarionetteError

GREETING = {"applicationType": "gecko", "marionetteProtocol": 3}


def frame(obj) -> bytes:
    data = json.dumps(obj).encode()
    return str(len(data)).encode() + b":" + data


class ScriptedServer:
    """Accepts one connection, sends ``greeting``, then answers each command with
    ``answer(command) -> bytes``; records the commands."""

    def __init__(self, greeting: bytes, answer=None, *, hang_up: bool = False) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.commands: list = []
        self.greeting = greeting
        self.answer = answer
        self.hang_up = hang_up  # close the connection after the first answer
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        conn, _ = self.sock.accept()
        with conn:
            conn.sendall(self.greeting)
            buf = b""
            while self.answer is not None:
                try:
                    chunk = conn.recv(65536)
                except OSError:
                    return
                if not chunk:
                    return
                buf += chunk
                while b":" in buf:
                    length, _, rest = buf.partition(b":")
                    if len(rest) < int(length):
                        break
                    command = json.loads(rest[:int(length)])
                    buf = rest[int(length):]
                    self.commands.append(command)
                    conn.sendall(self.answer(command))
                    if self.hang_up:
                        return

    def close(self) -> None:
        self.sock.close()
        self.thread.join(5)


def test_commands_get_their_own_answers():
    def answer(command):
        _, msg_id, name, params = command
        if name == "WebDriver:FindElement":
            # an unrelated message first (an event, or a stale answer): skipped
            return frame([1, msg_id + 100, None, {}]) + \
                frame([1, msg_id, None, {"value": {ELEMENT_KEY: "e-1"}}])
        if name == "WebDriver:ExecuteScript":
            return frame([1, msg_id, None, {"value": params["args"][0] * 2}])
        return frame([1, msg_id, {"error": "no such element", "message": "gone"}, None])

    server = ScriptedServer(frame(GREETING), answer)
    client = MarionetteClient(server.port, timeout=5)
    try:
        assert client.application == "gecko"
        assert client.find_element("#x") == "e-1"
        assert client.execute_script("return arguments[0] * 2", [21]) == 42
        with pytest.raises(MarionetteError) as exc:
            client.click("e-1")
        assert exc.value.error == "no such element" and exc.value.message == "gone"
        assert [c[2] for c in server.commands] == ["WebDriver:FindElement",
                                                   "WebDriver:ExecuteScript",
                                                   "WebDriver:ElementClick"]
        assert [c[1] for c in server.commands] == [1, 2, 3]
    finally:
        client.close()
        server.close()


@pytest.mark.parametrize("greeting", [
    frame({"applicationType": "gecko", "marionetteProtocol": 2}),
    frame(["not", "a", "greeting"]),
    b"x" * 40,
    b"99999999999:",
])
def test_bad_greetings_are_refused(greeting):
    server = ScriptedServer(greeting)
    try:
        with pytest.raises((MarionetteError, ConnectionError, ValueError)):
            MarionetteClient(server.port, timeout=5)
    finally:
        server.close()


def test_a_server_that_goes_away_mid_answer():
    server = ScriptedServer(frame(GREETING), lambda command: b"120:[1, 1, null",
                            hang_up=True)
    client = MarionetteClient(server.port, timeout=5)
    try:
        with pytest.raises((ConnectionError, TimeoutError)):
            client.execute_script("return 1")
    finally:
        client.close()
        server.close()


@settings(max_examples=60)
@given(st.binary(max_size=200))
def test_any_bytes_from_the_server(data):
    """Garbage after the greeting, then the server hangs up: a Marionette, connection or
    JSON error (or, for garbage that parses as an answer, a result), nothing else."""
    server = ScriptedServer(frame(GREETING), lambda command: data, hang_up=True)
    client = MarionetteClient(server.port, timeout=5)
    try:
        with contextlib.suppress(MarionetteError, ConnectionError, ValueError):
            client.execute_script("return 1")
    finally:
        client.close()
        server.close()
