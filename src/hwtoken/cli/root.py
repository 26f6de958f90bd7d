"""The root click group: subcommand modules are imported only when their command runs."""

from __future__ import annotations

import importlib

import click

from hwtoken import __version__
from hwtoken.cli.common import (
    HwtokenCommand,
    HwtokenGroup,
    device_group_option,
    state_dir_option,
)
from hwtoken.errors import InvalidInput

# command name -> (module, attribute, one-line help shown by --help without importing it)
SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "otp": ("hwtoken.cli.otp", "otp", "TOTP/HOTP secrets, codes, verification, otpauth:// URIs."),
    "paperkey": ("hwtoken.cli.otp", "paperkey", "One-time recovery keys stored only as a hash."),
    "emulate": ("hwtoken.cli.emulate", "emulate",
                "Virtual keys: create, inspect and serve them."),
    "fido2": ("hwtoken.cli.fido2", "fido2",
              "FIDO2 registration, assertion, PIN and credentials."),
    "yubikey": ("hwtoken.cli.yubikey", "yubikey", "YubiKey OTP slots and the OATH applet."),
    "provision": ("hwtoken.cli.provision", "provision",
                  "Batch-program keys and hand secrets to a validation server."),
    "fob": ("hwtoken.cli.fob", "fob", "The DIY MicroPython TOTP key fob."),
    "udev": ("hwtoken.cli.doctor", "udev", "Install and check the udev rules for keys and fobs."),
    "doctor": ("hwtoken.cli.doctor", "doctor",
               "Check this machine's setup, with a fix for each problem."),
    "demo": ("hwtoken.demo", "demo_command",
             "Run the non-interactive tour (what `make demo` runs)."),
}


class LazyGroup(HwtokenGroup):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = SUBCOMMANDS.get(cmd_name)
        if entry is None:
            return None
        module_name, attr, _ = entry
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("hwtoken"):
                raise
            return _missing_extra(cmd_name, exc.name or "?")
        return getattr(module, attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, SUBCOMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _missing_extra(cmd_name: str, module: str) -> click.Command:
    @click.command(cmd_name, cls=HwtokenCommand,
                   context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def stub(args: tuple[str, ...]) -> None:
        from hwtoken.extras import MissingDependency, for_module

        requirement = for_module(module)
        if requirement is not None:
            raise MissingDependency(requirement)
        raise InvalidInput(f"`hwtoken {cmd_name}` needs the Python module {module!r}; "
                           "install the extras: pip install 'hwtoken[all]'")

    return stub


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hwtoken")
@state_dir_option
@device_group_option
def cli() -> None:
    """Hardware security tokens from the command line.

    Program YubiKey OTP slots and the OATH applet, register and check FIDO2 keys, run a
    virtual YubiKey for tests, provision keys by the hundred, and set up a DIY TOTP fob.

    Exit codes: 0 success, 1 a check failed (wrong code, bad signature), 2 bad usage or
    input, 130 interrupted (Ctrl-C); a failure prints one `error:` line. Every command
    takes --json for one JSON document (a failure: {"error": ..., "code": N}). --device
    picks the key for every command below it (a serial, a path, or emu:NAME).
    """

