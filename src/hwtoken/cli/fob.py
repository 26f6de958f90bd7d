"""``hwtoken fob``: set up and inspect the DIY MicroPython TOTP fob."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from hwtoken.cli.common import (
    SECRET,
    UNIX_TIME,
    HwtokenGroup,
    allow_weak_option,
    confirm_or_force,
    emit_json,
    force_option,
    is_interactive,
    json_option,
    read_secret_input,
)
from hwtoken.errors import InvalidInput

# light: mpremote and pyserial are imported only when a port is opened
from hwtoken.fob.device import Fob
from hwtoken.fob.settings import BOARDS
from hwtoken.fob.simulate import FobAccount, find_account, render

F = TypeVar("F", bound=Callable[..., Any])


_PORT_META = "hwtoken.fob.port"
_PORT_HELP = ("The fob's serial port (/dev/ttyACM0, COM3, the pty of `hwtoken fob emulate`) "
              "or a pyserial URL such as socket://HOST:PORT. Default: $HWTOKEN_FOB_PORT, else "
              "the one MicroPython board plugged in.")


def _port_value(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--port`` after a subcommand wins over ``hwtoken fob --port``, which wins over
    $HWTOKEN_FOB_PORT (read when the port is opened)."""
    if value is not None:
        ctx.meta[_PORT_META] = value
        return value
    return ctx.meta.get(_PORT_META)


def port_option(f: F) -> F:
    return click.option("--port", "-p", metavar="PORT", callback=_port_value, help=_PORT_HELP)(f)


def _account_from_options(name: str | None, secret: str | None, uri: str | None,
                          digits: int | None, algorithm: str | None, period: int | None,
                          default_name: str = "", allow_weak: bool = False) -> FobAccount:
    from hwtoken.otp import parse_secret_or_uri

    if (secret is None) == (uri is None):
        raise InvalidInput("give exactly one of --secret or --uri (use - to read it from stdin)")
    value = read_secret_input(secret if secret is not None else uri)  # type: ignore[arg-type]
    if uri is not None and not value.lower().startswith("otpauth:"):
        raise InvalidInput("--uri must be an otpauth:// URI")
    if secret is not None and value.lower().startswith("otpauth:"):
        raise InvalidInput("--secret takes base32; pass otpauth:// URIs with --uri")
    params = parse_secret_or_uri(value, digits=digits, algorithm=algorithm, period=period,
                                 allow_weak=allow_weak)
    if params.type != "totp":
        raise InvalidInput("the fob shows time-based (TOTP) codes only, not HOTP")
    name = name or params.label or default_name
    if not name:
        raise InvalidInput("give the account a NAME")
    return FobAccount(name, params.secret_b32.rstrip("="), params.algorithm, params.digits,
                      params.period)


def _secret_options(f: F) -> F:
    f = allow_weak_option(f)
    f = click.option("--period", type=click.IntRange(1, 86400),
                     help="Seconds per code (default 30 or the URI's).")(f)
    f = click.option("--algorithm", type=click.Choice(["SHA1", "SHA256", "SHA512"],
                                                      case_sensitive=False),
                     help="HMAC algorithm (default SHA1 or the URI's).")(f)
    f = click.option("--digits", type=click.IntRange(6, 8), help="Code length 6-8.")(f)
    f = click.option("--uri", metavar="URI|-", type=SECRET,
                     help="An otpauth://totp/... URI, or - to read it from stdin.")(f)
    f = click.option("--secret", metavar="B32|-", type=SECRET,
                     help="The base32 secret, or - to read it from stdin (keeps it out of "
                          "your shell history).")(f)
    return f


@click.group(cls=HwtokenGroup)
@click.option("--port", "-p", metavar="PORT", callback=_port_value, expose_value=False,
              is_eager=True, help=_PORT_HELP)
def fob() -> None:
    """The DIY MicroPython TOTP key fob (Raspberry Pi Pico / ESP32 + SSD1306 OLED).

    Flash MicroPython on the board, then `hwtoken fob deploy`, `hwtoken fob sync-time` and
    `hwtoken fob add NAME --secret -`. Secrets go to the fob over its USB serial link
    only. `simulate` shows what the fob's screen shows, without a board.
    See firmware/README.md for parts, wiring and the security note.
    """


@fob.command()
@port_option
@click.option("--board", type=click.Choice(BOARDS),
              help="Set the board type (a setting: kept by later deploys; default: detect "
                   "at boot).")
@click.option("--reset-settings", is_flag=True,
              help="Forget the fob's settings (Wi-Fi, pins, OLED address, display) and start "
                   "over with the defaults; asks on a terminal, else needs --force.")
@force_option("Rewrite files even when unchanged on the board; with --reset-settings, "
              "do not ask.")
@json_option
def deploy(port: str | None, board: str | None, reset_settings: bool, force: bool,
           as_json: bool) -> None:
    """Install (or update) the firmware on a MicroPython board.

    Keeps the accounts, the clock and the fob's settings (its settings.json, which
    `hwtoken fob config` changes); a board with the older firmware, whose settings sat in
    config.py, has them moved to settings.json, and the output names what was kept.
    """
    if reset_settings:
        confirm_or_force("Forget the fob's settings (Wi-Fi, pins, OLED address, display) and "
                         "start over with the defaults? Accounts and clock are kept.", force,
                         "--reset-settings forgets the fob's Wi-Fi, pins and display settings")
    with Fob(port) as f:
        done = f.deploy(board, force=force, reset_settings=reset_settings)
    if as_json:
        emit_json({"port": f.port, **done.to_dict()})
        return
    click.echo(f"deployed the fob firmware to {f.port}: {len(done.written)} file(s) written, "
               f"{len(done.files) - len(done.written)} unchanged; the fob restarts now")
    if done.reset:
        click.echo("settings: reset to the defaults" + (f", then {', '.join(done.kept)} set"
                                                        if done.kept else ""))
    elif done.moved:
        click.echo("settings: moved from the old config.py to settings.json and kept: "
                   + ", ".join(done.moved))
    elif done.kept:
        click.echo(f"settings: kept ({', '.join(done.kept)}; the rest are defaults)")
    else:
        click.echo("settings: all defaults (change them with hwtoken fob config KEY=VALUE)")
    if done.ignored:
        click.echo(f"warning: settings.json entries ignored (unknown, or of the wrong type): "
                   f"{', '.join(done.ignored)}", err=True)


def _read_wifi() -> tuple[str, str]:
    """The Wi-Fi network name and password: asked on a terminal, else two lines of stdin."""
    if is_interactive():
        ssid = click.prompt("Wi-Fi network name (SSID; empty: no Wi-Fi)", default="",
                            show_default=False, err=True)
        password = click.prompt("Wi-Fi password", default="", hide_input=True,
                                show_default=False, err=True) if ssid else ""
    else:
        lines = [sys.stdin.readline() for _ in range(2)]
        if not lines[0]:
            raise InvalidInput("--wifi reads the network name (SSID) and its password from "
                               "stdin, one line each")
        ssid, password = (line.rstrip("\r\n") for line in lines)
    if any(0xDC80 <= ord(c) <= 0xDCFF for c in ssid + password):  # surrogateescape'd bytes
        raise InvalidInput("stdin is not valid UTF-8 text")
    return ssid, password


def _settings_epilog() -> str:
    from hwtoken.fob.settings import SETTINGS

    return "\b\nSettings:\n" + "\n".join(f"  {k:<15} {s.help}" for k, s in SETTINGS.items())


@fob.command("config", epilog=_settings_epilog())
@click.argument("assignments", nargs=-1, metavar="[KEY=VALUE]...")
@click.option("--wifi", is_flag=True,
              help="Read the Wi-Fi network name (SSID) and its password from stdin, one line "
                   "each (asked on a terminal); an empty name turns Wi-Fi off.")
@port_option
@json_option
def config_(assignments: tuple[str, ...], wifi: bool, port: str | None, as_json: bool) -> None:
    """Show the fob's settings, or change them: KEY=VALUE sets one, KEY= returns it to its
    default. They live in the fob's settings.json, which `hwtoken fob deploy` keeps; the
    fob restarts with them. The Wi-Fi password is never shown, nor read from argv.
    """
    from hwtoken.fob.settings import parse_assignments, shown, wifi_changes

    changes = parse_assignments(assignments)
    if wifi:
        changes = changes.merged(wifi_changes(*_read_wifi()))
    with Fob(port) as f:
        info = f.configure(changes) if changes else f.settings()
    values = shown(info)
    if as_json:
        emit_json({"changed": sorted({*changes.values, *changes.reset}), "settings": values,
                   "custom": info["custom"], "board_detected": info["detected_board"],
                   "ignored": info["ignored"], "damaged": info["damaged"]})
        return
    if changes:
        parts = [f"{k}={values[k]}" for k in changes.values] + \
                [f"{k} (default {values[k]})" for k in changes.reset]
        click.echo(f"set on the fob: {', '.join(parts)}; it restarts with them now")
        return
    for key, text in values.items():
        mark = "" if key in info["custom"] else "  (default)"
        if key == "board" and text == "auto":
            text = f"auto (detected: {info['detected_board']})"
        click.echo(f"{key:<15} {text}{mark}")
    if info["damaged"]:
        click.echo("warning: the fob's settings.json is damaged: every default applies "
                   "(hwtoken fob config KEY=VALUE writes a new one)", err=True)
    elif info["ignored"]:
        click.echo(f"warning: settings.json entries ignored (unknown, or of the wrong type): "
                   f"{', '.join(info['ignored'])}", err=True)


@fob.command()
@click.argument("name", required=False)
@_secret_options
@port_option
@json_option
def add(name: str | None, secret: str | None, uri: str | None, digits: int | None,
        algorithm: str | None, period: int | None, allow_weak: bool, port: str | None,
        as_json: bool) -> None:
    """Add an account NAME (or replace the one with that name).

    NAME defaults to the URI's label. The secret is never echoed.
    """
    account = _account_from_options(name, secret, uri, digits, algorithm,
                                    period, allow_weak=allow_weak)
    with Fob(port) as f:
        count = f.add(account)
    info = {"name": account.name, "algorithm": account.algorithm, "digits": account.digits,
            "period": account.period, "accounts": count}
    if as_json:
        emit_json(info)
    else:
        click.echo(f"added {account.name!r} ({account.algorithm}, {account.digits} digits, "
                   f"{account.period}s); the fob holds {count} account(s)")


@fob.command("list")
@port_option
@json_option
def list_(port: str | None, as_json: bool) -> None:
    """List the fob's accounts (never their secrets)."""
    with Fob(port) as f:
        accounts = f.accounts()
    if as_json:
        emit_json(accounts)
        return
    if not accounts:
        click.echo("no accounts on the fob (add one: hwtoken fob add NAME --secret -)")
    for a in accounts:
        click.echo(f"{a['name']:<24} {a['algorithm']:<7} {a['digits']} digits  {a['period']}s")


@fob.command()
@click.argument("name")
@port_option
@force_option("Remove without asking.")
@json_option
def remove(name: str, port: str | None, force: bool, as_json: bool) -> None:
    """Remove the account NAME (its exact name) from the fob.

    Asks on a terminal and needs --force otherwise; no such account is an error (exit 2).
    """
    with Fob(port) as f:
        names = [a["name"] for a in f.accounts()]
        if name not in names:
            raise InvalidInput(f"no account named {name!r} on the fob (it has: "
                               f"{', '.join(repr(n) for n in names) or 'none'})")
        confirm_or_force(f"Remove the account {name!r} from the fob?", force,
                         f"removing {name!r} deletes its secret from the fob")
        f.remove(name)
    if as_json:
        emit_json({"name": name, "removed": True})
    else:
        click.echo(f"removed {name!r}")


@fob.command()
@port_option
@force_option("Do not ask for confirmation.")
@click.option("--yes", "-y", "yes", is_flag=True, hidden=True, help="Old name of --force.")
@json_option
def wipe(port: str | None, force: bool, yes: bool, as_json: bool) -> None:
    """Delete every account from the fob (asks on a terminal, else needs --force)."""
    confirm_or_force("Delete every account from the fob?", force or yes,
                     "a wipe deletes every account from the fob")
    with Fob(port) as f:
        f.wipe()
    if as_json:
        emit_json({"wiped": True})
    else:
        click.echo("all accounts deleted from the fob")


@fob.command("sync-time")
@port_option
@json_option
def sync_time(port: str | None, as_json: bool) -> None:
    """Set the fob's clock (DS3231 module and chip RTC) from this computer's clock.

    Reports the drift it corrected. Keep this computer's clock right (NTP).
    """
    with Fob(port) as f:
        result = f.sync_time()
    if as_json:
        emit_json(result)
        return
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(result["time"]))
    if result["drift"] is None:
        click.echo(f"set the fob's clock ({result['source']}) to {when}; it had no trusted "
                   "time before")
    else:
        d = result["drift"]
        how = "in step" if d == 0 else f"{abs(d)} s {'fast' if d > 0 else 'slow'}"
        click.echo(f"set the fob's clock ({result['source']}) to {when}; it was {how} "
                   f"(drift {d:+d} s corrected)")


@fob.command()
@port_option
@json_option
def status(port: str | None, as_json: bool) -> None:
    """Show the fob's time, accounts, free memory and firmware."""
    with Fob(port) as f:
        st = f.status()
    if as_json:
        emit_json(st)
        return
    if st.get("trusted"):
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(st["time"]))
        click.echo(f"time:     {when} ({st['source']}, {st['offset']:+d} s from this computer)")
    else:
        click.echo(f"time:     NOT TRUSTED ({st.get('reason')}; run hwtoken fob sync-time)")
    click.echo(f"accounts: {st['accounts']}")
    click.echo(f"memory:   {st['mem_free']} bytes free, {st['mem_alloc']} in use")
    click.echo(f"board:    {st['board']}, firmware {st['version']}")


@fob.command()
@click.option("--at", "at", type=UNIX_TIME, metavar="UNIX_TIME",
              help="Unix time to show (default: now).")
@click.option("--account", metavar="NAME", help="Which account (default: the first).")
@click.option("--name", help="Account name shown with --secret/--uri.")
@_secret_options
@click.option("--next", "show_next", is_flag=True, help="Show the long-press view (next code).")
@click.option("--no-time", is_flag=True, help="Show the screen of a fob without trusted time.")
@click.option("--png", "png_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="Write the screen as a PNG.")
@click.option("--scale", type=click.IntRange(1, 32), default=4, show_default=True,
              help="Pixels per OLED pixel in the PNG.")
@click.option("--ascii", "as_ascii", is_flag=True,
              help="Print the screen in the terminal (2x2 pixels per character, 66 columns).")
@click.option("--wide", is_flag=True, help="With --ascii: 1x2 pixels per character (130 columns).")
@port_option
@json_option
def simulate(at: float | None, account: str | None, name: str | None, secret: str | None,
             uri: str | None, digits: int | None, algorithm: str | None, period: int | None,
             allow_weak: bool, show_next: bool, no_time: bool, png_path: str | None,
             scale: int, as_ascii: bool, wide: bool, port: str | None, as_json: bool) -> None:
    """Render what the fob's OLED shows, with the firmware's own drawing code.

    The accounts come from --secret/--uri, or else from the fob (read over USB; the
    secrets stay in memory). Prints the screen with --ascii (the default without --png);
    with --json, one document with the screen as text lines.
    """
    if secret is not None or uri is not None:
        accounts = [_account_from_options(name or account, secret, uri, digits, algorithm,
                                          period, default_name="demo",
                                          allow_weak=allow_weak)]
    else:
        with Fob(port) as f:
            accounts = f.export_accounts()
    index = find_account(accounts, account) if accounts else 0
    t = None if no_time else (time.time() if at is None else at)
    screen = render(accounts, t, index=index, show_next=show_next)
    if png_path:
        from hwtoken.fileio import require_parent

        require_parent(png_path)
        try:
            Path(png_path).write_bytes(screen.to_png(scale))
        except OSError as exc:
            raise InvalidInput(f"cannot write {png_path}: {exc.strerror or exc}") from None
    if as_json:
        emit_json({"account": accounts[index].name if accounts else None,
                   "time": t, "next": show_next, "png": png_path,
                   "size": [128 * scale, 64 * scale] if png_path else None,
                   "screen": screen.to_ascii(wide=wide).splitlines()})
        return
    if png_path and not as_ascii:
        click.echo(f"wrote {png_path} ({128 * scale}x{64 * scale})")
    if as_ascii or not png_path:
        click.echo(screen.to_ascii(wide=wide))


from hwtoken.cli.fob_emulate import emulate  # noqa: E402 - a subgroup, defined in its own module

fob.add_command(emulate)
