"""hwtoken.cli.common in process: the contract's command classes, the option types and
standard options, the one-line log format, confirmations and stop signals.

The real program is walked by test_cli_contract.py and the destructive commands are run
without a terminal by test_destructive_refusals.py; these tests pin each shared piece down
with its exact message and exit status, without starting a process.
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import sys
import threading

import click
import pytest
from click.testing import CliRunner

from hwtoken import paths
from hwtoken.cli import common, contract
from hwtoken.errors import InvalidInput

BAD = b"caf\xe9".decode("utf-8", "surrogateescape")  # what Python makes of a non-UTF-8 arg


def _group() -> common.HwtokenGroup:
    @click.group(cls=common.HwtokenGroup)
    def root() -> None:
        pass

    @root.command()
    @click.option("--name")
    @click.option("--names", multiple=True)
    @click.option("--path", type=click.Path())
    @click.option("--count", type=int)
    def show(name, names, path, count) -> None:
        click.echo(json.dumps([name, list(names), path, count]))

    @root.command()
    @click.argument("code", type=int)
    def leave(code) -> None:
        sys.exit(code)

    @root.command()
    def fail() -> None:
        raise InvalidInput("bad input")

    return root


def _run(args, **kwargs):
    return CliRunner().invoke(_group(), args, **kwargs)


# -- the command classes ----------------------------------------------------------------------
def test_text_that_is_not_utf8_is_refused_with_one_error_line():
    for args in (["show", "--name", BAD], ["show", "--names", "ok", "--names", BAD]):
        out = _run(args)
        assert out.exit_code == 2
        assert out.stderr.splitlines() == [
            f"error: Invalid value for '{args[-2]}': is not valid UTF-8 text "
            "(see 'root show --help')"]


def test_paths_numbers_and_good_text_pass():
    out = _run(["show", "--name", "café", "--names", "a", "--path", BAD, "--count", "3"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout) == ["café", ["a"], BAD, 3]


def test_subgroups_and_their_commands_keep_the_contract():
    assert common.HwtokenGroup.command_class is common.HwtokenCommand
    assert common.HwtokenGroup.group_class is type
    root = _group()

    @root.group()
    def sub() -> None:
        pass

    @sub.command()
    @click.option("--name")
    def inner(name) -> None:
        pass

    assert isinstance(sub, common.HwtokenGroup) and isinstance(inner, common.HwtokenCommand)
    out = CliRunner().invoke(root, ["sub", "inner", "--name", BAD])
    assert out.exit_code == 2 and "is not valid UTF-8 text" in out.stderr


def test_undecodable_looks_into_sequences():
    assert common._undecodable(BAD) and common._undecodable(("ok", BAD))
    assert common._undecodable(["ok", BAD])
    assert not common._undecodable("café") and not common._undecodable(("a", "b"))
    assert not common._undecodable(3) and not common._undecodable(None)


def test_main_exits_with_the_commands_status():
    with pytest.raises(SystemExit) as leave:
        _group().main(["leave", "3"])
    assert leave.value.code == 3
    with pytest.raises(SystemExit) as ok:
        _group().main(["show"])
    assert ok.value.code == 0


def test_main_returns_the_status_without_standalone_mode(capsys):
    assert _group().main(["fail"], standalone_mode=False) == 2
    assert capsys.readouterr().err == "error: bad input\n"
    assert _group().main(["leave", "4"], standalone_mode=False) == 4


def test_main_reads_sys_argv_without_args(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["hwtoken", "show", "--name", "x"])
    assert _group().main(standalone_mode=False) in (0, None)
    assert json.loads(capsys.readouterr().out) == ["x", [], None, None]


def test_each_run_reports_its_own_error(capsys):
    group = _group()
    assert group.main(["fail"], standalone_mode=False) == 2
    assert group.main(["fail"], standalone_mode=False) == 2
    assert capsys.readouterr().err == "error: bad input\nerror: bad input\n"


# -- log records on the CLI's stderr ----------------------------------------------------------
def _record(level: int, message: str, exc: BaseException | None = None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord("hwtoken.x", level, __file__, 1, message, None, exc_info)


def test_log_records_are_one_line_warnings(monkeypatch):
    monkeypatch.delenv(contract.DEBUG_ENV, raising=False)
    fmt = common._OneLineFormatter()
    assert fmt.format(_record(logging.WARNING, "disk\nfull")) == "warning: disk; full"
    assert fmt.format(_record(logging.ERROR, "gone")) == "warning: gone"
    assert fmt.format(_record(logging.CRITICAL, "gone")) == "warning: gone"
    assert fmt.format(_record(logging.INFO, "hello")) == "info: hello"
    try:
        raise ValueError("no\nspace")
    except ValueError as exc:
        error = exc
    assert fmt.format(_record(logging.WARNING, "failed", error)) == \
        "warning: failed (ValueError: no; space)"


def test_log_records_carry_the_traceback_when_debugging(monkeypatch):
    monkeypatch.setenv(contract.DEBUG_ENV, "1")
    try:
        raise ValueError("boom")
    except ValueError as exc:
        text = common._OneLineFormatter().format(_record(logging.WARNING, "failed", exc))
    first, *rest = text.splitlines()
    assert first == "warning: failed"
    assert rest[0] == "Traceback (most recent call last):" and rest[-1] == "ValueError: boom"


def test_a_command_logs_its_warnings_on_stderr_and_then_stops(monkeypatch, capsys):
    logger = logging.getLogger("hwtoken")
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    monkeypatch.setattr(logger, "handlers", [])
    with common._cli_logging():
        logging.getLogger("hwtoken.some").warning("careful\nnow")
        assert len(logger.handlers) == 1
    assert logger.handlers == []
    assert capsys.readouterr().err == "warning: careful; now\n"


def test_a_program_that_configured_logging_keeps_its_own(monkeypatch):
    logger = logging.getLogger("hwtoken")
    mine = logging.NullHandler()
    monkeypatch.setattr(logging.getLogger(), "handlers", [mine])
    monkeypatch.setattr(logger, "handlers", [])
    with common._cli_logging():
        assert logger.handlers == []
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    monkeypatch.setattr(logger, "handlers", [mine])
    with common._cli_logging():
        assert logger.handlers == [mine]


# -- option types -----------------------------------------------------------------------------
@pytest.mark.parametrize(("value", "number"), [("0", 0.0), ("2.5", 2.5), ("10", 10.0),
                                               (" 7 ", 7.0), (3, 3.0)])
def test_finite_float_accepts_its_closed_range(value, number):
    assert common.FiniteFloat(0, 10).convert(value, None, None) == number


@pytest.mark.parametrize(("value", "message"), [
    ("nan", "'nan' is not a number from 0 to 10"),
    ("inf", "'inf' is not a number from 0 to 10"),
    ("-inf", "'-inf' is not a number from 0 to 10"),
    ("-0.5", "'-0.5' is not a number from 0 to 10"),
    ("10.01", "'10.01' is not a number from 0 to 10"),
    ("ten", "'ten' is not a number"),
    (None, "None is not a number"),
])
def test_finite_float_refusals(value, message):
    with pytest.raises(click.BadParameter) as refused:
        common.FiniteFloat(0, 10).convert(value, None, None)
    assert refused.value.message == message


def test_finite_float_names_fractional_bounds():
    with pytest.raises(click.BadParameter) as refused:
        common.FiniteFloat(0.5, 1.5).convert("2", None, None)
    assert refused.value.message == "'2' is not a number from 0.5 to 1.5"
    assert common.FiniteFloat.name == "float"


def test_unix_time_runs_to_the_end_of_year_9999():
    assert common.MAX_UNIX_TIME == 253402300799
    assert common.UNIX_TIME.name == "unix_time"
    assert common.UNIX_TIME.convert("253402300799", None, None) == 253402300799.0
    assert common.UNIX_TIME.convert("0", None, None) == 0.0
    for bad in ("253402300800", "-1"):
        with pytest.raises(click.BadParameter) as refused:
            common.UNIX_TIME.convert(bad, None, None)
        assert refused.value.message == f"{bad!r} is not a number from 0 to 253402300799"


def _secret_command(env: str | None = None) -> click.Command:
    @click.command(cls=common.HwtokenCommand)
    @click.option("--secret", type=common.SecretText(env), envvar="MY_SECRET")
    def cmd(secret) -> None:
        click.echo(f"got {secret}")

    return cmd


def test_a_secret_on_the_command_line_is_taken_with_a_warning():
    out = CliRunner().invoke(_secret_command("MY_SECRET"), ["--secret", "hunter2"])
    assert out.exit_code == 0 and out.stdout == "got hunter2\n"
    assert out.stderr == contract.ARGV_SECRET_WARNING.format(env=" (or set $MY_SECRET)") + "\n"
    out = CliRunner().invoke(_secret_command(), ["--secret", "hunter2"])
    assert out.stderr == contract.ARGV_SECRET_WARNING.format(env="") + "\n"


def test_a_secret_from_stdin_or_the_environment_gives_no_warning():
    out = CliRunner().invoke(_secret_command("MY_SECRET"), ["--secret", "-"])
    assert (out.exit_code, out.stdout, out.stderr) == (0, "got -\n", "")
    out = CliRunner().invoke(_secret_command("MY_SECRET"), [], env={"MY_SECRET": "s3"})
    assert (out.exit_code, out.stdout, out.stderr) == (0, "got s3\n", "")


def test_a_secret_must_be_utf8_text():
    with pytest.raises(click.BadParameter) as refused:
        common.SECRET.convert(b"bytes", None, None)
    assert refused.value.message == "must be text"
    with pytest.raises(click.BadParameter) as refused:
        common.SECRET.convert(BAD, None, None)
    assert refused.value.message == "is not valid UTF-8 text"
    assert common.SECRET.convert("fine", None, None) == "fine"
    assert common.SecretText.name == "secret" and common.SECRET.env is None


def test_read_secret_input(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("  s3cret \nsecond line\n"))
    assert common.read_secret_input("-") == "s3cret"
    assert common.read_secret_input("given") == "given"
    monkeypatch.setattr(sys, "stdin", io.StringIO(BAD + "\n"))
    with pytest.raises(InvalidInput, match="^stdin is not valid UTF-8 text$"):
        common.read_secret_input("-")


# -- standard options -------------------------------------------------------------------------
def _state_command() -> click.Command:
    @click.command(cls=common.HwtokenCommand)
    @common.state_dir_option
    def cmd() -> None:
        click.echo(str(paths.state_dir()))

    return cmd


def test_state_dir_may_be_new_but_not_its_parent(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "_override", None)
    new = tmp_path / "new"
    out = CliRunner().invoke(_state_command(), ["--state-dir", str(new)])
    assert (out.exit_code, out.stdout) == (0, f"{new}\n")
    out = CliRunner().invoke(_state_command(), ["--state-dir", str(tmp_path)])
    assert (out.exit_code, out.stdout) == (0, f"{tmp_path}\n")
    missing = tmp_path / "no" / "such"
    monkeypatch.setattr(paths, "_override", None)
    out = CliRunner().invoke(_state_command(), ["--state-dir", str(missing)])
    assert out.exit_code == 2
    assert f"neither {str(missing)!r} nor its parent directory exists" in out.output
    assert paths._override is None  # nothing was set


def test_standard_flags():
    @click.command(cls=common.HwtokenCommand)
    @common.json_option
    @common.force_option("Really.")
    @common.allow_weak_option
    def cmd(as_json, force, allow_weak) -> None:
        click.echo(json.dumps([as_json, force, allow_weak]))

    runner = CliRunner()
    assert json.loads(runner.invoke(cmd, []).stdout) == [False, False, False]
    assert json.loads(runner.invoke(cmd, ["--json", "-f", "--allow-weak"]).stdout) == \
        [True, True, True]
    assert json.loads(runner.invoke(cmd, ["--force"]).stdout) == [False, True, False]
    helps = {p.name: p.help for p in cmd.params}
    assert helps == {
        "as_json": "Print one JSON document (an error: {\"error\", \"code\"}).",
        "force": "Really.",
        "allow_weak": "Accept a secret shorter than 80 bits (RFC 4226 asks for 128).",
    }


def _device_group() -> click.Group:
    @click.group(cls=common.HwtokenGroup)
    @common.device_group_option
    def root() -> None:
        pass

    @root.command()
    @common.device_option
    def which(device) -> None:
        click.echo(repr(device))

    return root


@pytest.mark.parametrize(("args", "env", "device"), [
    (["which"], {}, None),
    (["which"], {"HWTOKEN_DEVICE": "12345678"}, "12345678"),
    (["-d", "111", "which"], {"HWTOKEN_DEVICE": "12345678"}, "111"),
    (["--device", "111", "which", "-d", "222"], {}, "222"),
    (["which", "--device", "333"], {"HWTOKEN_DEVICE": "12345678"}, "333"),
])
def test_device_after_the_command_wins_then_before_it_then_the_environment(args, env, device):
    out = CliRunner().invoke(_device_group(), args, env=env)
    assert out.exit_code == 0, out.output
    assert out.stdout == f"{device!r}\n"
    which = _device_group().commands["which"]
    assert [p.help for p in which.params if p.name == "device"] == [common.DEVICE_HELP]


@pytest.mark.parametrize("args", [["-d", "emu:missing", "which"], ["which", "-d", "emu:missing"]])
def test_a_missing_virtual_key_is_refused_at_every_level(args, tmp_path):
    out = CliRunner().invoke(_device_group(), ["--help"])  # the group itself
    assert out.exit_code == 0
    out = CliRunner().invoke(_device_group(), args,
                             env={"HWTOKEN_STATE_DIR": str(tmp_path)})
    assert out.exit_code == 2
    assert out.stderr.startswith("error: ") and "missing" in out.stderr


def test_a_bad_device_in_the_environment_is_refused(tmp_path):
    out = CliRunner().invoke(_device_group(), ["which"],
                             env={"HWTOKEN_DEVICE": "emu:missing",
                                  "HWTOKEN_STATE_DIR": str(tmp_path)})
    assert out.exit_code == 2 and "missing" in out.stderr


# -- output, questions, signals ---------------------------------------------------------------
def test_emit_json_is_indented_in_order_and_strings_the_rest(capsys):
    common.emit_json({"b": 1, "a": {"when": paths.Path("/x")}})
    assert capsys.readouterr().out == '{\n  "b": 1,\n  "a": {\n    "when": "/x"\n  }\n}\n'


class _Stdin:
    def __init__(self, tty: bool | Exception) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        if isinstance(self.tty, Exception):
            raise self.tty
        return self.tty


@pytest.mark.parametrize(("stdin", "interactive"), [
    (_Stdin(True), True), (_Stdin(False), False), (None, False),
    (_Stdin(ValueError("closed")), False), (_Stdin(OSError("gone")), False),
])
def test_is_interactive(monkeypatch, stdin, interactive):
    monkeypatch.setattr(sys, "stdin", stdin)
    assert common.is_interactive() is interactive


def test_confirm_or_force(monkeypatch):
    monkeypatch.setattr(sys, "stdin", _Stdin(False))
    common.confirm_or_force("Erase?", True, "would erase")  # --force: no question
    with pytest.raises(InvalidInput) as refused:
        common.confirm_or_force("Erase?", False, "would erase the key")
    assert str(refused.value) == "would erase the key; pass --force to confirm"
    asked: list[tuple] = []
    monkeypatch.setattr(sys, "stdin", _Stdin(True))
    monkeypatch.setattr(click, "confirm", lambda *a, **k: asked.append((a, k)))
    common.confirm_or_force("Erase?", False, "would erase")
    assert asked == [(("Erase?",), {"abort": True, "err": True})]


def test_confirm_or_force_declined_on_a_terminal_aborts():
    @click.command(cls=common.HwtokenCommand)
    def cmd() -> None:
        common.confirm_or_force("Erase the key?", False, "would erase")
        click.echo("erased")

    runner = CliRunner()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(common, "is_interactive", lambda: True)
        out = runner.invoke(cmd, [], input="n\n")
        assert out.exit_code == 1 and "erased" not in out.stdout
        assert "Erase the key? [y/N]" in out.stderr
        out = runner.invoke(cmd, [], input="y\n")
        assert (out.exit_code, out.stdout) == (0, "erased\n")


def _assert_handled_by(signals: common.StopSignals) -> None:
    assert signal.getsignal(signal.SIGINT) == signals._on_signal
    assert signal.getsignal(signal.SIGTERM) == signals._on_signal


def test_stop_signals_turn_sigint_and_sigterm_into_a_stop(capsys):
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with common.StopSignals() as signals:
        _assert_handled_by(signals)  # else the signal would end the test run itself
        os.kill(os.getpid(), signal.SIGTERM)
        assert signals.stop.wait(5)
        assert signals.received == [signal.SIGTERM]
        signals.exit_if_interrupted()  # SIGTERM: a clean stop, no exit here
    assert {s: signal.getsignal(s) for s in before} == before
    with common.StopSignals() as signals:
        _assert_handled_by(signals)
        os.kill(os.getpid(), signal.SIGINT)
        assert signals.stop.wait(5)
        os.kill(os.getpid(), signal.SIGTERM)
        with pytest.raises(SystemExit) as ended:
            signals.exit_if_interrupted()
    assert ended.value.code == 130
    assert capsys.readouterr().err == "interrupted\n"
    assert {s: signal.getsignal(s) for s in before} == before


def test_stop_signals_outside_the_main_thread_change_nothing():
    before = signal.getsignal(signal.SIGINT)
    seen: list = []

    def run() -> None:
        with common.StopSignals() as signals:
            seen.append(signal.getsignal(signal.SIGINT))
            seen.append(signals._previous)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(5)
    assert seen == [before, {}]
    assert signal.getsignal(signal.SIGINT) == before


def test_the_state_dir_is_set_before_a_virtual_key_is_looked_up(tmp_path, monkeypatch):
    from hwtoken.emulator import VirtualKey

    monkeypatch.setattr(paths, "_override", None)
    VirtualKey.create(tmp_path / "keys" / "mine.key").close()
    out = CliRunner().invoke(_device_group(),
                             ["which", "-d", "emu:mine", "--state-dir", str(tmp_path)],
                             env={"HWTOKEN_STATE_DIR": str(tmp_path / "elsewhere")})
    assert (out.exit_code, out.stdout) == (0, "'emu:mine'\n"), out.output


def test_the_state_dir_is_not_a_file(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "_override", None)
    (tmp_path / "file").write_text("")
    out = CliRunner().invoke(_state_command(), ["--state-dir", str(tmp_path / "file")])
    assert out.exit_code == 2 and "is a file" in out.stderr


def test_the_standard_options_in_help():
    group = _device_group()
    text = CliRunner().invoke(group, ["which", "--help"]).stdout
    assert "-d, --device SPEC" in text and "--state-dir DIRECTORY" in text
    assert " ".join(common.DEVICE_HELP.split()) in " ".join(text.split())
    assert "Directory for hwtoken's files (default $HWTOKEN_STATE_DIR or the XDG data dir)." \
        in " ".join(text.split())
    text = CliRunner().invoke(group, ["--help"]).stdout
    assert "-d, --device SPEC" in text
    assert " ".join(common.DEVICE_HELP.split()) in " ".join(text.split())
    assert common.DEVICE_HELP.startswith("Key to use: a serial number, a device path or PC/SC")


# -- what a direct caller of the types, callbacks and main gets -------------------------------
def _ctx_and_param(command: click.Command, name: str) -> tuple[click.Context, click.Parameter]:
    return click.Context(command), next(p for p in command.params if p.name == name)


def test_type_refusals_name_the_parameter_and_context_they_were_given():
    ctx, param = _ctx_and_param(_secret_command(), "secret")
    cases = [(common.SECRET, b"bytes", "must be text"),
             (common.SECRET, BAD, "is not valid UTF-8 text"),
             (common.FiniteFloat(0, 10), "ten", "'ten' is not a number"),
             (common.FiniteFloat(0, 10), "11", "'11' is not a number from 0 to 10")]
    for kind, value, message in cases:
        with pytest.raises(click.BadParameter) as refused:
            kind.convert(value, param, ctx)
        assert refused.value.message == message
        assert refused.value.param is param and refused.value.ctx is ctx


def test_a_secret_not_from_the_command_line_gives_no_warning(capsys):
    ctx, param = _ctx_and_param(_secret_command("MY_SECRET"), "secret")
    assert common.SecretText("MY_SECRET").convert("hunter2", param, ctx) == "hunter2"
    assert capsys.readouterr().err == ""  # no source recorded: not typed on the command line
    assert common.SECRET.convert("hunter2", param, None) == "hunter2"
    assert common.SECRET.convert("hunter2", None, ctx) == "hunter2"
    assert capsys.readouterr().err == ""


def test_a_state_dir_without_a_parent_names_its_option(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "_override", None)
    ctx, param = _ctx_and_param(_state_command(), "state_dir")
    missing = tmp_path / "no" / "such"
    with pytest.raises(click.BadParameter) as refused:
        common._set_state_dir(ctx, param, str(missing))
    assert refused.value.message == f"neither {str(missing)!r} nor its parent directory exists"
    assert refused.value.param is param and refused.value.ctx is ctx
    for nothing in (None, ""):
        common._set_state_dir(ctx, param, nothing)
    assert paths._override is None
    common._set_state_dir(ctx, param, str(tmp_path / "new"))
    assert paths._override == tmp_path / "new"


def test_the_state_dir_may_start_with_a_tilde(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "_override", None)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    monkeypatch.chdir(tmp_path)  # no directory named "~" here
    out = CliRunner().invoke(_state_command(), ["--state-dir", "~/hw"])
    assert (out.exit_code, out.stdout) == (0, f"{tmp_path / 'home' / 'hw'}\n"), out.output


def test_main_hands_click_the_program_name_and_its_other_arguments(capsys):
    group = _group()

    @group.command()
    @click.pass_obj
    def who(obj) -> None:
        click.echo(f"obj={obj}")

    assert group.main(["who"], standalone_mode=False, obj="me") is None
    assert capsys.readouterr().out == "obj=me\n"
    assert group.main(["show", "--name", BAD], prog_name="mine", standalone_mode=False) == 2
    assert capsys.readouterr().err == (
        "error: Invalid value for '--name': is not valid UTF-8 text (see 'mine show --help')\n")


def test_main_answers_shell_completion_under_the_variable_it_is_given(monkeypatch, capsys):
    monkeypatch.setenv("_MINE_COMPLETE", "zsh_source")
    monkeypatch.delenv("_ROOT_COMPLETE", raising=False)
    with pytest.raises(SystemExit) as done:
        _group().main(["show"], prog_name="root", complete_var="_MINE_COMPLETE",
                      standalone_mode=False)
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "_MINE_COMPLETE=zsh_complete" in out and "#compdef root" in out


def test_log_records_without_an_exception_stay_one_line_when_debugging(monkeypatch):
    monkeypatch.setenv(contract.DEBUG_ENV, "1")
    assert common._OneLineFormatter().format(_record(logging.WARNING, "slow\nkey")) == \
        "warning: slow; key"


def test_a_logged_exception_that_was_never_raised_is_named(monkeypatch):
    monkeypatch.delenv(contract.DEBUG_ENV, raising=False)
    never_raised = OSError("busy")  # logger.warning(..., exc_info=exc): no traceback
    assert never_raised.__traceback__ is None
    assert common._OneLineFormatter().format(_record(logging.WARNING, "retry", never_raised)) \
        == "warning: retry (OSError: busy)"


def test_whole_number_bounds_are_named_without_a_fraction():
    with pytest.raises(click.BadParameter) as refused:
        common.FiniteFloat(1.0, 2.0).convert("3", None, None)
    assert refused.value.message == "'3' is not a number from 1 to 2"


def test_every_unix_time_type_runs_from_0_to_the_end_of_year_9999():
    fresh = common.UnixTime()  # UNIX_TIME was made at import
    assert (fresh.min, fresh.max) == (0, common.MAX_UNIX_TIME)
    assert fresh.convert("0", None, None) == 0.0
    assert fresh.convert(str(common.MAX_UNIX_TIME), None, None) == float(common.MAX_UNIX_TIME)


def test_a_renamed_warning_level_still_prints_as_warning(monkeypatch):
    monkeypatch.delenv(contract.DEBUG_ENV, raising=False)
    record = _record(logging.WARNING, "low battery")
    record.levelname = "WARN"  # logging.addLevelName(logging.WARNING, "WARN") in a program
    assert common._OneLineFormatter().format(record) == "warning: low battery"


def test_the_state_dir_option_as_documentation_tools_see_it():
    (param,) = _state_command().params
    info = param.to_info_dict()
    assert (info["opts"], info["is_flag"], info["default"], info["envvar"]) == \
        (["--state-dir"], False, None, None)
    assert info["help"] == \
        "Directory for hwtoken's files (default $HWTOKEN_STATE_DIR or the XDG data dir)."
    assert info["type"] == {"param_type": "Path", "name": "directory", "exists": False,
                            "file_okay": False, "dir_okay": True, "writable": False,
                            "readable": True, "allow_dash": False}


def test_text_after_a_path_or_an_unexposed_option_is_still_checked():
    @click.command(cls=common.HwtokenCommand)
    @click.option("--out", type=click.Path())
    @common.state_dir_option  # expose_value=False: never in ctx.params
    @click.option("--name")
    def cmd(out, name) -> None:
        click.echo("ran")

    assert [p.name for p in cmd.params] == ["out", "state_dir", "name"]
    for args in (["--name", BAD], ["--out", BAD, "--name", BAD]):
        out = CliRunner().invoke(cmd, args)
        assert (out.exit_code, out.stdout) == (2, "")
        assert "Invalid value for '--name': is not valid UTF-8 text" in out.stderr
