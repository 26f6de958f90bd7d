"""Chromium, headless, driven by Selenium through ``chromedriver`` (Debian: ``chromium``,
``chromium-driver``; PyPI: ``selenium``).

chromedriver is started with the caller's environment (a umockdev testbed's ``LD_PRELOAD``
and ``UMOCKDEV_DIR``), so the Chromium it starts — and Chromium's browser process, which
enumerates HID devices through udev and opens ``/dev/hidrawN`` — inherit it. Chromium talks
to a FIDO key with epoll and non-blocking reads; the testbed's hidraw nodes serve that.

The flags: ``--headless=new`` (the full browser without a display), ``--no-sandbox`` (when
running as root, which Chromium's sandbox refuses), ``--disable-gpu`` and
``--disable-dev-shm-usage`` (containers with a small /dev/shm), and no background
networking, component updates, sync or first-run UI (test machines are often offline);
the network service runs in the browser process (see ``FLAGS``).
With ``device_log`` the browser logs what its FIDO and HID code sees to stderr.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hwtoken.browser.driver import (
    QUIT_TIMEOUT,
    Browser,
    BrowserError,
    BrowserUnavailable,
    Installed,
    ProcessGroup,
    find_program,
    given_program,
    make_workdir,
)

NAME = "chromium"
BINARY_ENV = "HWTOKEN_CHROMIUM"
DRIVER_ENV = "HWTOKEN_CHROMEDRIVER"
# The real binary first: Debian's /usr/bin/chromium is a shell wrapper that adds flags.
BINARIES = ("/usr/lib/chromium/chromium", "chromium", "chromium-browser", "google-chrome")
DRIVERS = ("chromedriver", "/usr/lib/chromium/chromedriver")
DEBIAN_PACKAGES = "chromium chromium-driver"

FLAGS = (
    "--headless=new", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run", "--no-default-browser-check", "--disable-default-apps",
    "--password-store=basic", "--use-mock-keychain",
    # the network service in the browser process, not a child forked from it: under
    # umockdev's LD_PRELOAD a child forked from the multi-threaded browser can deadlock
    # before exec (the preload's open/close take locks another thread may hold at fork
    # time), and without the network service no page ever loads (~4% of starts)
    "--enable-features=NetworkServiceInProcess2",
)
DEVICE_LOG_FLAGS = ("--enable-logging=stderr", "--v=0",
                    "--vmodule=*device/fido/*=2,*device/hid/*=2,device_event_log*=1")


def find(binary: str | os.PathLike[str] | None = None, *, driver: bool = True) -> Installed:
    """Chromium (``binary`` if given) and, with ``driver``, chromedriver and Selenium, or
    :class:`BrowserUnavailable` saying what to install."""
    binary = (given_program(binary, "Chromium") if binary is not None
              else find_program(BINARY_ENV, BINARIES))
    driver_path = find_program(DRIVER_ENV, DRIVERS) if driver else None
    missing = [what for what, path, wanted in (("chromium", binary, True),
                                                ("chromedriver", driver_path, driver))
               if wanted and path is None]
    if missing:
        raise BrowserUnavailable(
            f"{' and '.join(missing)} not found: install the Debian packages "
            f"{DEBIAN_PACKAGES} (or set ${BINARY_ENV} / ${DRIVER_ENV})")
    if driver:
        try:
            import selenium  # noqa: F401
        except ImportError:
            from hwtoken.extras import for_module, message

            requirement = for_module("selenium")
            assert requirement is not None  # noqa: S101 - listed in hwtoken.extras
            raise BrowserUnavailable(message(requirement)) from None
    assert binary is not None  # noqa: S101 - checked above
    return Installed(NAME, binary, driver_path)


@dataclass(frozen=True)
class ChromiumLaunch:
    """How to start Chromium so that it finds a testbed's keys, for any automation tool.

    Playwright: ``p.chromium.launch(executable_path=o.executable, args=o.args,
    env=o.env)``. Selenium: ``ChromeOptions`` with ``binary_location = o.executable`` and
    each of ``o.args``, and ``Service(o.driver, env=o.env)``.
    """

    executable: str  #: the browser binary
    args: list[str]  #: its command-line flags (no profile directory: the tool picks one)
    env: dict[str, str]  #: the environment (the testbed's LD_PRELOAD and UMOCKDEV_DIR)
    driver: str | None  #: chromedriver, when installed (Selenium needs it)


def chromium_args(*, headless: bool = True, device_log: bool = False) -> list[str]:
    """The flags hwtoken starts Chromium with (see ``FLAGS``), ``--no-sandbox`` as root,
    and with ``device_log`` those that log its FIDO and HID code to stderr."""
    args = [a for a in FLAGS if headless or not a.startswith("--headless")]
    if os.geteuid() == 0:
        args.append("--no-sandbox")  # Chromium's sandbox refuses to run as root
    if device_log:
        args.extend(DEVICE_LOG_FLAGS)
    return args


def launch_options(env: Mapping[str, str] | None = None, *, headless: bool = True,
                   device_log: bool = False) -> ChromiumLaunch:
    """:class:`ChromiumLaunch` for Debian's Chromium with ``env`` (a testbed's
    ``env()``, or ``plugged_key.env``); :class:`BrowserUnavailable` if it is missing."""
    installed = find(driver=False)
    return ChromiumLaunch(installed.binary, chromium_args(headless=headless,
                                                         device_log=device_log),
                          dict(os.environ if env is None else env),
                          find_program(DRIVER_ENV, DRIVERS))


class Chromium(Browser):
    """Headless Chromium through Selenium; ``webdriver`` is the Selenium driver itself."""

    name = NAME

    def __init__(self, env: Mapping[str, str] | None = None, *,
                 workdir: str | os.PathLike[str] | None = None, device_log: bool = True,
                 extra_args: Sequence[str] = (), timeout: float = 60.0,
                 binary: str | os.PathLike[str] | None = None) -> None:
        installed = find(binary)
        path, own = make_workdir(workdir, NAME)
        super().__init__(path, own_workdir=own)
        try:
            self._start(installed, dict(os.environ if env is None else env), device_log,
                        extra_args, timeout)
        except BaseException:
            self.close()
            raise

    def _start(self, installed: Installed, env: dict[str, str], device_log: bool,
               extra_args: Sequence[str], timeout: float) -> None:
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = installed.binary
        args = [*chromium_args(device_log=device_log), f"--user-data-dir={self.profile}"]
        for arg in (*args, *extra_args):
            options.add_argument(arg)
        self.profile.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in _quit
        service = Service(executable_path=installed.driver, env=env, log_output=self._log,
                          popen_kw={"start_new_session": True})
        self._service = service
        self.webdriver: Any = None
        try:
            self.webdriver = webdriver.Chrome(options=options, service=service)
        except WebDriverException as exc:
            raise BrowserError(f"chromium did not start: {exc.msg}\n--- {self.log_path} ---\n"
                               f"{self.log_tail()}") from None
        finally:
            process = getattr(service, "process", None)
            if process is not None:
                self._group = ProcessGroup(process.pid)
        self.webdriver.set_script_timeout(timeout)
        self.webdriver.set_page_load_timeout(timeout)
        self.version = str(self.webdriver.capabilities.get("browserVersion", ""))

    def get(self, url: str) -> None:
        from selenium.common.exceptions import TimeoutException

        try:
            self.webdriver.get(url)
        except TimeoutException as exc:  # say what the browser logged meanwhile
            raise BrowserError(self.timed_out(f"chromium did not load {url}: {exc.msg}")) from None

    def execute(self, script: str, *args: Any) -> Any:
        return self.webdriver.execute_script(script, *args)

    def _element(self, selector: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.webdriver.find_element(By.CSS_SELECTOR, selector)

    def click(self, selector: str) -> None:
        self._element(selector).click()

    def fill(self, selector: str, text: str) -> None:
        element = self._element(selector)
        element.clear()
        element.send_keys(text)

    def text(self, selector: str) -> str:
        return str(self._element(selector).text)

    def _quit(self) -> bool:
        try:
            driver = getattr(self, "webdriver", None)
            process = getattr(getattr(self, "_service", None), "process", None)
            if driver is None or process is None or process.poll() is not None:
                return False  # never started, or chromedriver is gone: close() ends the rest
            # ends Chromium, then chromedriver; a hung one is killed by close()
            done: list[bool] = []

            def quit_driver() -> None:
                driver.quit()
                done.append(True)

            quitter = threading.Thread(target=quit_driver, daemon=True)
            quitter.start()
            quitter.join(QUIT_TIMEOUT)
            return bool(done)
        finally:
            log = getattr(self, "_log", None)
            if log is not None:
                log.close()


__all__ = ["Chromium", "ChromiumLaunch", "chromium_args", "find", "launch_options"]
