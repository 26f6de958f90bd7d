"""Firefox (ESR), headless, driven through its own Marionette protocol (:mod:`.marionette`).

No geckodriver is needed (Debian has none, and the PyPI and npm packages download one at
install time): Firefox is started as ``firefox-esr -headless -no-remote -marionette
-profile DIR`` with a fresh profile whose ``user.js`` sets ``marionette.port`` to 0, and
the port it picked is read from ``DIR/MarionetteActivePort``. Marionette applies its own
"recommended preferences" for automation (no updates, telemetry or remote settings);
``user.js`` adds the few first-run ones it leaves out.

Firefox's WebAuthn code (authenticator-rs, in the parent process) finds keys through
libudev and reads ``/dev/hidrawN`` with blocking reads on a thread per device; started
with a umockdev testbed's environment it finds the virtual keys. ``device_log`` sets
``RUST_LOG=authenticator=debug``, so its log says which devices it saw and what it did.

Headless Firefox still runs its browser chrome, and WebAuthn asks the user through it (a
PIN prompt, "which account?", attestation consent). :meth:`Firefox.answer_prompts`
answers those from the test, through Marionette's chrome context; :meth:`Firefox.prompts`
lists what Firefox asked.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from hwtoken.browser.driver import (
    POLL_INTERVAL,
    QUIT_TIMEOUT,
    Browser,
    BrowserError,
    BrowserUnavailable,
    Installed,
    ProcessGroup,
    find_program,
    given_program,
    make_workdir,
    start_process,
)
from hwtoken.browser.marionette import (
    CONTEXT_CHROME,
    CONTEXT_CONTENT,
    MarionetteClient,
    MarionetteError,
)

#: Firefox ESR major versions whose WebAuthn prompts answer_prompts() is tested with
#: (Debian 12's main suite and its security suite); others may move the hook's target
PROMPT_HOOK_TESTED = (140, 153)

SOCKET_MARGIN = 15.0  # seconds the Marionette socket waits beyond Firefox's timeouts

NAME = "firefox"
BINARY_ENV = "HWTOKEN_FIREFOX"
BINARIES = ("firefox-esr", "firefox")
DEBIAN_PACKAGES = "firefox-esr"
PORT_FILE = "MarionetteActivePort"

PREFS: dict[str, Any] = {
    "marionette.port": 0,  # any free port, written to MarionetteActivePort
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "browser.startup.page": 0,
    "browser.aboutwelcome.enabled": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "toolkit.telemetry.reportingpolicy.firstRun": False,
    "app.update.disabledForTesting": True,
    "browser.safebrowsing.update.enabled": False,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    # WebAuthn over USB HID on, Firefox's own software token off
    "security.webauth.webauthn_enable_usbtoken": True,
    "security.webauth.webauthn_enable_softtoken": False,
    # content processes forked by the (single-threaded) fork server, not by the browser
    # process: under umockdev's LD_PRELOAD a child forked from the multi-threaded browser
    # can deadlock before exec (the preload's open/close take locks another thread may hold
    # at fork time), and the page it was to show never loads (docs/browsers.md)
    "dom.ipc.forkserver.enable": True,
}

# Chrome-context script: route Firefox's WebAuthn prompts to answers set by the test.
# WebAuthnPromptHelper is what shows them (PIN dialog, account list, attestation consent):
# a module in ESR 153, a global of each browser window (browser.js) in ESR 140. Its
# observe() is wrapped so that the prompts the test answers never reach the UI, and every
# prompt is recorded. The answers go to nsIWebAuthnService as the UI's would (the same
# calls in both versions).
_PROMPT_HOOK = r"""
const [answers] = arguments;
let H = null;
for (const url of ["moz-src:///toolkit/modules/WebAuthnPromptHelper.sys.mjs",
                   "resource://gre/modules/WebAuthnPromptHelper.sys.mjs",
                   "resource:///modules/WebAuthnPromptHelper.sys.mjs"]) {
  try { H = ChromeUtils.importESModule(url).WebAuthnPromptHelper; break; } catch (e) {}
}
// ESR 140 and older: one helper per browser window, a global of browser.js
if (!H && typeof window !== "undefined" && window.WebAuthnPromptHelper) {
  H = window.WebAuthnPromptHelper;
}
if (!H) { return "no WebAuthnPromptHelper in this Firefox"; }
const svc = Cc["@mozilla.org/webauthn/service;1"].getService(Ci.nsIWebAuthnService);
if (!H.__hwtoken) {
  const original = H.observe;
  H.__hwtoken = {answers: {}, prompts: [], original};
  H.observe = function (subject, topic, data) {
    const state = H.__hwtoken;
    if (topic === "webauthn-prompt") {
      let d = null;
      try { d = JSON.parse(data); } catch (e) {}
      if (d && d.prompt) {
        const a = state.answers, type = d.prompt.type;
        const entry = {type, tid: d.tid, answered: null};
        if (d.prompt.retries !== undefined) { entry.retries = d.prompt.retries; }
        if (d.prompt.entities) { entry.entities = d.prompt.entities.map(e => e.name); }
        state.prompts.push(entry);
        if (type === "pin-required" && a.pin != null) {
          entry.answered = "pin"; svc.pinCallback(d.tid, a.pin); return;
        }
        if (type === "pin-invalid" && a.pin != null) {
          entry.answered = "cancel"; svc.cancel(d.tid); return;  // never retry a wrong PIN
        }
        if (type === "select-sign-result" && a.account != null) {
          entry.answered = "account " + a.account; svc.selectionCallback(d.tid, a.account);
          return;
        }
        if (type === "attestation-consent" && a.attestation != null) {
          entry.answered = "attestation " + a.attestation;
          svc.setHasAttestationConsent(d.tid, !!a.attestation); return;
        }
      }
    }
    return state.original.call(this, subject, topic, data);
  };
}
H.__hwtoken.answers = answers;
return "ok";
"""

_PROMPTS = r"""
let H = null;
for (const url of ["moz-src:///toolkit/modules/WebAuthnPromptHelper.sys.mjs",
                   "resource://gre/modules/WebAuthnPromptHelper.sys.mjs",
                   "resource:///modules/WebAuthnPromptHelper.sys.mjs"]) {
  try { H = ChromeUtils.importESModule(url).WebAuthnPromptHelper; break; } catch (e) {}
}
// ESR 140 and older: one helper per browser window, a global of browser.js
if (!H && typeof window !== "undefined" && window.WebAuthnPromptHelper) {
  H = window.WebAuthnPromptHelper;
}
return H && H.__hwtoken ? H.__hwtoken.prompts : [];
"""


def find(binary: str | os.PathLike[str] | None = None) -> Installed:
    """Firefox (``binary`` if given, e.g. another ESR unpacked from its Debian package),
    or :class:`BrowserUnavailable` saying what to install."""
    if binary is not None:
        return Installed(NAME, given_program(binary, "Firefox"))
    binary = find_program(BINARY_ENV, BINARIES)
    if binary is None:
        raise BrowserUnavailable(f"Firefox not found: install the Debian package "
                                 f"{DEBIAN_PACKAGES} (or set ${BINARY_ENV})")
    return Installed(NAME, binary)


def user_js(prefs: Mapping[str, Any]) -> str:
    """A ``user.js`` setting ``prefs``."""
    return "".join(f"user_pref({json.dumps(k)}, {json.dumps(v)});\n" for k, v in prefs.items())


class Firefox(Browser):
    """Headless Firefox through Marionette; ``marionette`` is the protocol client."""

    name = NAME

    def __init__(self, env: Mapping[str, str] | None = None, *,
                 workdir: str | os.PathLike[str] | None = None, device_log: bool = True,
                 extra_args: Sequence[str] = (), prefs: Mapping[str, Any] | None = None,
                 timeout: float = 60.0, binary: str | os.PathLike[str] | None = None) -> None:
        installed = find(binary)
        path, own = make_workdir(workdir, NAME)
        super().__init__(path, own_workdir=own)
        self.marionette: MarionetteClient | None = None
        self._process: Any = None
        try:
            self._start(installed, dict(os.environ if env is None else env), device_log,
                        extra_args, {**PREFS, **(prefs or {})}, timeout)
        except BaseException:
            self.close()
            raise

    def _start(self, installed: Installed, env: dict[str, str], device_log: bool,
               extra_args: Sequence[str], prefs: dict[str, Any], timeout: float) -> None:
        self.profile.mkdir(parents=True, exist_ok=True)
        (self.profile / "user.js").write_text(user_js(prefs))
        env["MOZ_HEADLESS"] = "1"
        env.setdefault("MOZ_CRASHREPORTER_DISABLE", "1")
        if device_log:
            env["RUST_LOG"] = "authenticator=debug"
        argv = [installed.binary, "-headless", "-no-remote", "-marionette",
                "-remote-allow-system-access",  # Marionette's chrome context (prompts)
                "-profile", str(self.profile), *extra_args]
        self._process = start_process(argv, env, self.log_path)
        self._group = ProcessGroup(self._process.pid)
        port = self._wait_for_port(timeout)
        # the socket waits longer than Firefox's own timeouts, so that a page or script that
        # times out is reported by Firefox (what, where) rather than by a silent socket
        self.marionette = MarionetteClient(port, timeout=timeout + SOCKET_MARGIN)
        caps = self.marionette.new_session({"unhandledPromptBehavior": "ignore"})
        self.marionette.set_timeouts(script=timeout, page_load=timeout, implicit=0)
        self.version = str(caps.get("browserVersion", ""))
        with contextlib.suppress(MarionetteError):  # record prompts from the start
            self.execute_chrome(_PROMPT_HOOK, {})

    def _wait_for_port(self, timeout: float) -> int:
        port_file = self.profile / PORT_FILE
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise BrowserError(f"firefox exited with status {self._process.returncode} "
                                   f"before Marionette listened\n--- {self.log_path} ---\n"
                                   f"{self.log_tail()}")
            try:
                text = port_file.read_text().strip()
            except FileNotFoundError:
                text = ""
            if text.isdigit() and int(text) > 0:
                return int(text)
            time.sleep(POLL_INTERVAL)
        raise BrowserError(f"firefox: Marionette did not listen within {timeout:g} s\n"
                           f"--- {self.log_path} ---\n{self.log_tail()}")

    @property
    def _m(self) -> MarionetteClient:
        if self.marionette is None:
            raise BrowserError("firefox is not running")
        return self.marionette

    def get(self, url: str) -> None:
        try:
            self._m.navigate(url)
        except MarionetteError as exc:
            if exc.error != "timeout":
                raise
            what = f"firefox did not load {url}: {exc.message}"
            raise BrowserError(self.timed_out(what)) from None

    def execute(self, script: str, *args: Any) -> Any:
        return self._m.execute_script(script, list(args))

    def click(self, selector: str) -> None:
        self._m.click(self._m.find_element(selector))

    def fill(self, selector: str, text: str) -> None:
        element = self._m.find_element(selector)
        self._m.clear(element)
        self._m.send_keys(element, text)

    def text(self, selector: str) -> str:
        return self._m.element_text(self._m.find_element(selector))

    def execute_chrome(self, script: str, *args: Any) -> Any:
        """Run ``script`` with the browser's privileges (Marionette's chrome context)."""
        m = self._m
        m.set_context(CONTEXT_CHROME)
        try:
            return m.execute_script(script, list(args))
        finally:
            m.set_context(CONTEXT_CONTENT)

    def answer_prompts(self, *, pin: str | None = None, account: int | None = None,
                       attestation: bool | None = None) -> None:
        """Answer Firefox's WebAuthn prompts from now on, as a user at the screen would.

        ``pin``: typed into the PIN prompt (once per request: a wrong PIN cancels the
        request instead of retrying, so a test cannot lock the key by accident);
        ``account``: the index chosen when a discoverable sign-in finds several accounts;
        ``attestation``: the answer to "share the key's attestation?". A prompt left
        ``None`` goes to Firefox's own UI, which nobody answers in a headless browser.
        """
        answers = {"pin": pin, "account": account, "attestation": attestation}
        result = self.execute_chrome(_PROMPT_HOOK, answers)
        if result != "ok":
            raise BrowserError(
                f"Firefox {self.version or '(version unknown)'}: cannot answer its WebAuthn "
                f"prompts ({result}); hwtoken answers them in Firefox ESR "
                f"{' and '.join(map(str, PROMPT_HOOK_TESTED))} (docs/browsers.md)")

    def prompts(self) -> list[dict[str, Any]]:
        """The WebAuthn prompts Firefox showed since it started: their ``type``
        (``presence``, ``select-device``, ``pin-required``, ``select-sign-result`` ...) and
        how each was answered (``pin``, ``account N``, ``attestation ...``, or None: left
        to Firefox's UI)."""
        return list(self.execute_chrome(_PROMPTS) or [])

    def _quit(self) -> bool:
        m, self.marionette = self.marionette, None
        process = self._process
        if m is None or process is None or process.poll() is not None:
            if m is not None:
                m.close()
            return False  # never started, or Firefox is gone: close() ends the rest
        try:
            m.set_socket_timeout(QUIT_TIMEOUT)
            with contextlib.suppress(MarionetteError, TimeoutError):
                m.quit()
        finally:
            m.close()
        with contextlib.suppress(Exception):  # close() ends the process group next
            process.wait(timeout=QUIT_TIMEOUT)
        return True


__all__ = ["Firefox", "find", "user_js", "PREFS"]
