"""``hwtoken fob emulate``: the virtual fob, and its buttons and screen from another shell."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from hwtoken.cli.common import HwtokenGroup, StopSignals, emit_json, json_option
from hwtoken.errors import DeviceError, InvalidInput

F = TypeVar("F", bound=Callable[..., Any])


class I2cAddress(click.ParamType):
    """An I2C address, decimal or hex (0x3D), from 0x08 to 0x77."""

    name = "address"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        from hwtoken.fob.settings import SETTINGS

        try:
            return int(SETTINGS["oled_addr"].parse(str(value)))
        except InvalidInput as exc:
            self.fail(str(exc), param, ctx)


def name_option(f: F) -> F:
    return click.option("--name", default="fob", show_default=True, metavar="NAME",
                        help="Which virtual fob (several may run at once).")(f)


@click.group(cls=HwtokenGroup, invoke_without_command=True)
@name_option
@click.option("--tcp-port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Serve the fob's serial port on 127.0.0.1:PORT (0: a free port).")
@click.option("--pty", "pty", metavar="PATH", type=click.Path(dir_okay=False),
              help="Serve it on a pseudo-terminal instead (yours alone), with a symlink to it "
                   "created at PATH and removed at the end.")
@click.option("--flash", type=click.Path(file_okay=False, exists=True, writable=True),
              metavar="DIR", help="Keep the fob's flash (firmware, accounts, settings) in DIR "
                                  "between runs. Default: in memory, empty at the start, like "
                                  "a freshly flashed board.")
@click.option("--oled-addr", type=I2cAddress(), default="0x3C", show_default=True,
              help="The I2C address the simulated OLED answers (0x3D tries the setting "
                   "oled_addr).")
@click.option("--ds3231", is_flag=True, help="Add a DS3231 clock module (I2C 0x68).")
@click.option("--show", is_flag=True,
              help="Print each new screen here (terminal blocks; with --json, JSON lines).")
@click.option("--frames", type=click.Path(file_okay=False, exists=True, writable=True),
              metavar="DIR", help="Write each new screen as DIR/frame-NNNNNN.png.")
@click.option("--scale", type=click.IntRange(1, 32), default=4, show_default=True,
              help="Pixels per OLED pixel in the PNG frames.")
@json_option
@click.pass_context
def emulate(ctx: click.Context, name: str, tcp_port: int, pty: str | None, flash: str | None,
            oled_addr: int, ds3231: bool, show: bool, frames: str | None, scale: int,
            as_json: bool) -> None:
    """Run a virtual fob until Ctrl-C (exit 130) or SIGTERM (exit 0).

    The firmware runs on MicroPython's WebAssembly port under Node.js, with a simulated
    SSD1306 OLED, buttons A and B, a chip RTC and optionally a DS3231. Its serial port
    speaks the raw REPL of a board, so `hwtoken fob --port PORT deploy` (then sync-time,
    add, list, status, config...) and `mpremote connect PORT` work unchanged. From another
    shell, `hwtoken fob emulate press next` presses a button and `hwtoken fob emulate
    screen` shows its screen. Rehearse the whole set-up before buying parts, or test a
    provisioning script against it.
    """
    if ctx.invoked_subcommand is not None:
        return
    from hwtoken.fob.emulator.control import check_name
    from hwtoken.fob.emulator.service import FrameLog, Service

    check_name(name)
    if pty is not None and ctx.get_parameter_source("tcp_port") is \
            click.core.ParameterSource.COMMANDLINE:
        raise InvalidInput("give --tcp-port or --pty, not both")
    svc = Service(name, tcp_port=tcp_port, pty=pty, flash=flash, oled_addr=oled_addr,
                  ds3231=ds3231)
    watcher = FrameLog(_frame_printer(as_json) if show else None, frames, scale)
    with StopSignals() as signals, svc:
        doc = svc.describe()
        if as_json:
            click.echo(_json_line(doc))
        else:
            _banner(doc)
        sys.stdout.flush()
        if show or frames:  # after the banner: the screen as it is, then each change
            svc.emulator.on_frame = watcher
            if svc.emulator.frame.n:
                watcher(svc.emulator.frame)
        while not signals.stop.wait(0.5):
            if not svc.emulator.alive:
                raise DeviceError("the virtual fob's Node.js process ended unexpectedly: "
                                  + svc.emulator.failure())
    if not as_json:
        click.echo(f"stopped the virtual fob {name!r}")
    signals.exit_if_interrupted()


def _json_line(doc: Any) -> str:
    import json

    return json.dumps(doc)


def _banner(doc: dict[str, Any]) -> None:
    port = doc["port"]
    extra = " and a DS3231" if doc["ds3231"] else ""
    click.echo(f"virtual fob {doc['name']!r} is running: MicroPython {doc['micropython']} "
               f"(WebAssembly), an SSD1306 OLED at {doc['oled_addr']}, buttons A and B{extra}")
    click.echo(f"  its serial port:  {port}" + (f" (-> {doc['pty']})" if "pty" in doc else ""))
    click.echo(f"  set it up:        hwtoken fob --port {port} deploy   (then sync-time, "
               "add, list, status, config)")
    click.echo(f"                    or export HWTOKEN_FOB_PORT={port}; mpremote connect "
               f"{port}")
    name = "" if doc["name"] == "fob" else f" --name {doc['name']}"
    click.echo(f"  press a button:   hwtoken fob emulate press next|prev|long{name}")
    click.echo(f"  see its screen:   hwtoken fob emulate screen{name}")
    click.echo(f"  flash:            {doc['flash'] or 'in memory (lost at the end)'}")
    click.echo("Ctrl-C stops it.")


def _frame_printer(as_json: bool) -> Callable[[Any, int], None]:
    from hwtoken.fob.screenread import read_screen

    tty = not as_json and sys.stdout.isatty()

    def show(frame: Any, n: int) -> None:
        screen = frame.visible
        state = frame.display
        reads = read_screen(screen)
        if as_json:
            click.echo(_json_line({"frame": n, "display": state, "reads": reads.to_dict(),
                                   "screen": screen.to_ascii().splitlines()}))
        else:
            if tty:
                click.echo("\x1b[H\x1b[2J", nl=False)
            click.echo(f"frame {n}, display {state}: {reads.summary()}")
            click.echo(screen.to_ascii())
        sys.stdout.flush()

    return show


@emulate.command()
@click.argument("button", type=click.Choice(["next", "prev", "long"]))
@name_option
@json_option
def press(button: str, name: str, as_json: bool) -> None:
    """Press a button of the running virtual fob: next (A), prev (B) or long (A held: the
    next code too). Returns once the fob has handled the press and redrawn its screen; a
    display that was dimmed or off only wakes, as on the fob itself."""
    from hwtoken.fob.emulator.control import check_name, request
    from hwtoken.fob.screenread import read_screen

    answer = request(check_name(name), {"op": "press", "button": button})
    reads = read_screen(_screen_of(request(name, {"op": "screen"})))
    if as_json:
        emit_json({"button": button, "pin": answer["pin"], "woke": answer["woke"],
                   "reads": reads.to_dict()})
        return
    which = "B" if answer["button"] == "b" else "A"
    how = "held" if answer["long"] else "pressed"
    woke = " (it only woke the display)" if answer["woke"] else ""
    click.echo(f"{how} button {which} (GPIO {answer['pin']}){woke}; the screen shows: "
               f"{reads.summary()}")


def _screen_of(answer: dict[str, Any]) -> Any:
    import base64

    from hwtoken.fob.simulate import Screen

    screen = Screen(base64.b64decode(answer["ram"]))
    return screen if answer["on"] else Screen(bytes(len(screen.buffer)))


@emulate.command()
@name_option
@click.option("--png", "png_path", type=click.Path(dir_okay=False), metavar="FILE",
              help="Also write the screen as a PNG.")
@click.option("--scale", type=click.IntRange(1, 32), default=4, show_default=True,
              help="Pixels per OLED pixel in the PNG.")
@click.option("--wide", is_flag=True, help="1x2 pixels per character (130 columns).")
@json_option
def screen(name: str, png_path: str | None, scale: int, wide: bool, as_json: bool) -> None:
    """Show what the running virtual fob's OLED shows, and what it reads as (the account,
    the code, the seconds left), read back from its pixels."""
    from hwtoken.fob.emulator.control import check_name, request
    from hwtoken.fob.emulator.process import display_state
    from hwtoken.fob.screenread import read_screen

    if png_path:
        from hwtoken.fileio import require_parent

        require_parent(png_path)
    answer = request(check_name(name), {"op": "screen"})
    shown = _screen_of(answer)
    reads = read_screen(shown)
    state = display_state(answer["on"], answer["contrast"])
    if png_path:
        try:
            Path(png_path).write_bytes(shown.to_png(scale))
        except OSError as exc:
            raise InvalidInput(f"cannot write {png_path}: {exc.strerror or exc}") from None
    if as_json:
        emit_json({"display": state, "contrast": answer["contrast"], "frames": answer["n"],
                   "running": answer["running"], "reads": reads.to_dict(), "png": png_path,
                   "screen": shown.to_ascii(wide=wide).splitlines()})
        return
    click.echo(shown.to_ascii(wide=wide))
    loop = "" if answer["running"] else "; its main loop is stopped (a host holds its REPL)"
    click.echo(f"display {state}{loop}: {reads.summary()}")
