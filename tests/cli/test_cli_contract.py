"""The command-line contract, checked on EVERY command of the click tree.

The commands are found by walking the tree, so a command added later is covered without
touching this file. Two kinds of checks:

* structure: every command keeps the contract machinery (its class), takes ``--json``,
  bounds its numbers, and spells shared options (``-f/--force``, ``-d/--device``) the same;
* behaviour: hypothesis generates bad arguments for each command (wrong types, huge
  numbers, NaN, undecodable bytes, missing and unreadable files, directories for files,
  unknown options) and each invocation runs as a real process (forked from a zygote that
  imported hwtoken once, see ``cli_zygote.py``). Every one must exit 1 or 2 with exactly
  one ``error:`` line, no traceback, no "internal error", nothing on stdout -- or with
  ``--json``, one JSON object holding ``error`` and ``code``.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwtoken.cli.common import FiniteFloat, HwtokenCommand, HwtokenGroup, SecretText
from hwtoken.cli.root import cli

ZYGOTE = Path(__file__).with_name("cli_zygote.py")
EXAMPLES = 30  # per command and group (about 75): each invocation a process, ~30 s in all


def walk(cmd: click.Command = cli, path: tuple[str, ...] = (),
         ctx: click.Context | None = None) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    ctx = ctx or click.Context(cli, info_name="hwtoken")
    yield path, cmd
    if isinstance(cmd, click.Group):
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            assert sub is not None, name
            yield from walk(sub, (*path, name), click.Context(sub, parent=ctx, info_name=name))


TREE = dict(walk())
COMMANDS = {p: c for p, c in TREE.items() if not isinstance(c, click.Group)}


def _ids(paths):
    return [" ".join(p) or "(root)" for p in paths]


# -- structure ----------------------------------------------------------------------------
def test_every_command_keeps_the_contract_machinery():
    for path, cmd in TREE.items():
        cls = HwtokenGroup if isinstance(cmd, click.Group) else HwtokenCommand
        assert isinstance(cmd, cls), f"hwtoken {' '.join(path)} is a {type(cmd).__name__}"


def test_every_command_takes_json():
    missing = [" ".join(p) for p, c in COMMANDS.items()
               if not any(o.name == "as_json" for o in c.params)]
    assert not missing, f"no --json: {missing}"


def test_numbers_are_bounded():
    """Huge numbers are bad input everywhere: every numeric option has both bounds."""
    for path, cmd in TREE.items():
        for p in cmd.params:
            t = p.type
            if isinstance(t, click.types._NumberRangeBase):
                assert t.min is not None and t.max is not None, (path, p.name)
            elif isinstance(t, (click.types.IntParamType, click.types.FloatParamType)):
                raise AssertionError(f"{' '.join(path)} {p.name}: unbounded {t.name}")
            elif isinstance(t, FiniteFloat):
                assert t.min is not None and t.max is not None


def test_short_options_mean_the_same_everywhere():
    meaning: dict[str, set[str]] = {}
    for cmd in TREE.values():
        for p in cmd.params:
            if not isinstance(p, click.Option):
                continue
            longs = [o for o in p.opts if o.startswith("--")]
            for short in (o for o in (*p.opts, *p.secondary_opts) if not o.startswith("--")):
                meaning.setdefault(short, set()).update(longs)
    clashes = {s: sorted(m) for s, m in meaning.items() if len(m) > 1}
    assert not clashes, clashes
    assert meaning["-f"] == {"--force"} and meaning["-d"] == {"--device"}
    forces = [(p, o.opts) for p, c in TREE.items() for o in c.params if o.name == "force"]
    assert forces and all("-f" in opts for _, opts in forces), forces


def test_device_is_accepted_at_every_level_above_a_command_that_takes_it():
    for path, cmd in COMMANDS.items():
        if not any(p.name == "device" for p in cmd.params):
            continue
        for n in range(len(path)):
            group = TREE[path[:n]]
            assert any("--device" in p.opts and "-d" in p.opts for p in group.params), \
                f"`hwtoken {' '.join(path[:n])}` lacks --device/-d above {' '.join(path)}"


# -- behaviour: generated bad arguments -----------------------------------------------------
class Zygote:
    """The long-lived process that forks one child per invocation."""

    def __init__(self, tmp: Path) -> None:
        cmd = [sys.executable, str(ZYGOTE)]
        if os.geteuid() == 0:  # root reads any file: drop that, so mode 000 means unreadable
            cmd = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *cmd]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, cwd=tmp)
        assert self.proc.stdout is not None and self.proc.stdout.readline() == "ready\n"

    def run(self, argv: list[bytes], env: dict[str, str], cwd: Path, stdin: bytes = b"",
            timeout: float = 30) -> tuple[int | None, bytes, bytes]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"argv": [a.hex() for a in argv], "env": env,
                                          "cwd": str(cwd), "stdin": stdin.hex(),
                                          "timeout": timeout}) + "\n")
        self.proc.stdin.flush()
        doc = json.loads(self.proc.stdout.readline())
        return doc["rc"], bytes.fromhex(doc["stdout"]), bytes.fromhex(doc["stderr"])

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("contract")
    (d / "state").mkdir()
    (d / "home").mkdir()
    (d / "adir").mkdir()
    (d / "empty.txt").write_bytes(b"")
    (d / "afile").write_bytes(b"not a directory\n")
    secret = d / "unreadable.txt"
    secret.write_text("otpauth://totp/a?secret=JBSWY3DPEHPK3PXP\n")
    secret.chmod(0)
    # virtual keys that cannot be used: unreadable, damaged, of the wrong shape
    keys = d / "state" / "keys"
    keys.mkdir()
    from hwtoken.emulator import VirtualKey

    VirtualKey.create(keys / "unreadable.key").close()
    (keys / "unreadable.key").chmod(0)
    (keys / "damaged.key").write_bytes(b"{not json\xff")
    (keys / "wrongshape.key").write_text('{"format": 1, "identity": [], "fido": 7}')
    # the zygote may run without root's powers: let it in
    for p in (d, d / "state", d / "home", d / "adir", keys):
        p.chmod(stat.S_IRWXU | stat.S_IRWXG | stat.S_IRWXO)
    for parent in d.parents:
        if parent == Path("/"):
            break
        parent.chmod(parent.stat().st_mode | stat.S_IXOTH)
    return d


@pytest.fixture(scope="module")
def zygote(sandbox) -> Iterator[Zygote]:
    z = Zygote(sandbox)
    try:
        yield z
    finally:
        z.close()


def env_for(sandbox: Path) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items()
            if k in ("PATH", "LANG", "LC_ALL", "PYTHONPATH", "VIRTUAL_ENV", "TMPDIR")}
    return {**keep, "HOME": str(sandbox / "home"), "HWTOKEN_STATE_DIR": str(sandbox / "state"),
            "PCSCLITE_CSOCK_NAME": str(sandbox / "no-pcscd.comm"), "COLUMNS": "200",
            "HWTOKEN_FOB_PORT": str(sandbox / "no-such-port")}


UNDECODABLE = st.builds(lambda a, b: a.encode() + b + b"\xff",
                        st.text("abc:/-", max_size=4), st.sampled_from([b"\xff", b"\xc3(",
                                                                          b"\xed\xa0\x80"]))


def neutral(param: click.Parameter, sandbox: Path) -> bytes:
    """A value of the right shape for a parameter that is not the one under test."""
    t = param.type
    if isinstance(t, click.Choice):
        return str(t.choices[0]).encode()
    if isinstance(t, click.types._NumberRangeBase):
        return str(t.min).encode()
    if isinstance(t, FiniteFloat):
        return str(t.min).encode()
    if isinstance(t, click.Path):
        return str(sandbox / ("adir" if not t.file_okay else "empty.txt")).encode()
    if isinstance(t, click.File):
        return str(sandbox / "empty.txt").encode()
    if isinstance(t, SecretText):
        return b"-"
    return b"x"


def bad_values(param: click.Parameter, sandbox: Path) -> st.SearchStrategy[bytes]:
    """Values that must make the command fail, whatever the others are."""
    t = param.type
    options: list[st.SearchStrategy[bytes]] = [UNDECODABLE] if not isinstance(
        t, (click.Path, click.File)) else []
    if isinstance(t, click.Choice):
        options.append(st.sampled_from([b"bogus", b"", b"NaN"]).filter(
            lambda v: v.decode() not in t.choices))
    elif isinstance(t, click.types._NumberRangeBase) and isinstance(t, click.types.IntParamType):
        options.append(st.sampled_from([b"abc", b"1.5", b"", b"nan", b"0x10"]))
        options.append(st.integers(t.max + 1, 10**40).map(lambda n: str(n).encode()))
        options.append(st.integers(-(10**40), t.min - 1).map(lambda n: str(n).encode()))
    elif isinstance(t, (FiniteFloat, click.types._NumberRangeBase)):
        options.append(st.sampled_from([b"nan", b"NaN", b"inf", b"-inf", b"1e309", b"abc", b""]))
        options.append(st.floats(t.max, 1e300, exclude_min=True).map(lambda f: repr(f).encode()))
        options.append(st.floats(-1e300, t.min, exclude_max=True).map(lambda f: repr(f).encode()))
    elif isinstance(t, click.Path):
        cases = [sandbox / "no-such-dir" / "f.txt", sandbox / "afile" / "f.txt"]
        if not t.dir_okay:
            cases.append(sandbox / "adir")
        if not t.file_okay:
            cases.append(sandbox / "empty.txt")
        if t.exists:
            cases += [sandbox / "missing.txt", sandbox / "unreadable.txt"]
        options.append(st.sampled_from([str(c).encode() for c in cases]))
    elif isinstance(t, click.File):
        options.append(st.sampled_from([str(sandbox / c).encode() for c in
                                        ("missing.txt", "unreadable.txt", "adir")]))
    if param.name == "device":
        options.append(st.sampled_from([b"emu:unreadable", b"emu:damaged", b"emu:wrongshape",
                                        b"emu:no-such-key", b"emu:", b"emu:../x", b"emu:a b"]))
    if param.name == "oled_addr":  # an I2C address: 0x08-0x77, hex or decimal
        options.append(st.sampled_from([b"0x78", b"7", b"-1", b"nan", b"1e3", b"0x3C0", b"",
                                        b"99999999999999999999"]))
    if param.name == "assignments":  # hwtoken fob config KEY=VALUE
        options.append(st.sampled_from([b"oled_addr=nan", b"brightness=256", b"sda=1.5",
                                        b"nosuch=1", b"brightness", b"wifi_password=hunter22",
                                        b"utc_offset=+99:00", b"show_clock=maybe",
                                        b"dim_after=99999999999999999999"]))
    if param.name == "name" and "virtual fob" in str(getattr(param, "help", "")):
        options.append(st.sampled_from([b"../x", b"a b", b"", b"x" * 65]))
    return st.one_of(options)


def _arg(param: click.Parameter, value: bytes) -> list[bytes]:
    if isinstance(param, click.Option):
        return [param.opts[0].encode(), value]
    return [value]


def _target_params(cmd: click.Command) -> list[click.Parameter]:
    return [p for p in cmd.params if p.name not in ("help",)
            and not (isinstance(p, click.Option) and (p.is_flag or p.count))
            and p.type is not click.UNPROCESSED]


@st.composite
def bad_invocation(draw, path: tuple[str, ...], cmd: click.Command,
                   sandbox: Path) -> tuple[list[bytes], bool]:
    """(argv, with --json) for ``hwtoken PATH ...`` that must fail."""
    targets = _target_params(cmd)
    as_json = draw(st.booleans())
    kind = draw(st.sampled_from(["value"] * 3 + ["junk"]) if targets else st.just("junk"))
    args: list[bytes] = []
    bad = draw(st.sampled_from(targets)) if kind == "value" else None
    for p in cmd.params:
        if p is bad:
            args += _arg(p, draw(bad_values(p, sandbox)))
        elif p.required:
            args += _arg(p, neutral(p, sandbox))
    if kind == "junk":
        args.insert(draw(st.integers(0, len(args))), draw(st.sampled_from(
            [b"--no-such-option", b"--no-such-option=1", b"-Z"])))
    if isinstance(cmd, click.Group):  # an option of a group: then a cheap subcommand
        names = cmd.list_commands(click.Context(cmd))
        sub = "list" if "list" in names else next(n for n in names if n != "demo")
        args.append(sub.encode() if kind == "value" else b"no-such-cmd")
    if as_json and not isinstance(cmd, click.Group):
        args.append(b"--json")
    return [s.encode() for s in path] + args, as_json and not isinstance(cmd, click.Group)


def check_contract(argv: list[bytes], as_json: bool, rc: int | None, out: bytes,
                   err: bytes) -> None:
    shown = " ".join(os.fsdecode(a) for a in argv).encode("utf-8", "backslashreplace").decode()
    where = f"\n$ hwtoken {shown}\nrc={rc}\nstdout={out!r}\nstderr={err!r}"
    assert rc is not None, "it did not finish in time" + where
    assert rc in (1, 2), where
    text = err.decode("utf-8", "replace")
    assert "Traceback" not in text and "internal error" not in text, where
    errors = [ln for ln in text.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, where
    if as_json:
        doc = json.loads(out)
        assert isinstance(doc, dict) and doc.get("error") and doc.get("code") == rc, where
        assert errors[0] == f"error: {doc['error']}", where
    else:
        assert out == b"", where


@pytest.mark.parametrize("path", list(TREE), ids=_ids(TREE))
@settings(max_examples=EXAMPLES,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(data=st.data())
def test_bad_arguments_fail_by_the_contract(path, zygote, sandbox, data):
    argv, as_json = data.draw(bad_invocation(path, TREE[path], sandbox))
    stdin = data.draw(st.sampled_from([b"", b"\xff\xfe\n", b"not base32!\n"]))
    rc, out, err = zygote.run(argv, env_for(sandbox), sandbox, stdin=stdin)
    check_contract(argv, as_json, rc, out, err)


def test_the_zygote_reports_what_a_real_process_does(zygote, sandbox):
    """The forked children behave like the console script (exit code, streams)."""
    hwtoken = str(Path(sys.executable).with_name("hwtoken"))
    for argv in ([b"otp", b"code", b"--at", b"nan", b"JBSWY3DPEHPK3PXP"],
                 [b"emulate", b"show", b"n\xffo", b"--json"],
                 [b"otp", b"uri", b"-"]):
        rc, out, err = zygote.run(argv, env_for(sandbox), sandbox, stdin=b"\xff\xfe\n")
        real = subprocess.run([hwtoken, *argv], capture_output=True, cwd=sandbox,
                              env=env_for(sandbox), input=b"\xff\xfe\n", timeout=60)
        assert (rc, out, err) == (real.returncode, real.stdout, real.stderr)
        check_contract(argv, b"--json" in argv, rc, out, err)
