"""The `genba` command's contract: overrides, one-line errors, --help, the JSON summary and its path on the last line.

The command under test is registered here (a config dataclass and a run function in this module) so that these tests
exercise the real Hydra composition and dispatch without depending on any simulation or dataset code.
"""

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field

import pytest

from genba import cli
from genba.errors import GenbaError


@dataclass
class EchoConfig:
    name: str = field(default="arm", metadata={"help": "what to echo"})
    repeats: int = field(default=2, metadata={"help": "how many times"})
    tags: list[str] = field(default_factory=lambda: ["a", "b"], metadata={"help": "labels"})
    out: str | None = field(default=None, metadata={"help": "summary path or directory"})
    fail: bool = False
    api_key: str = ""

    def __post_init__(self) -> None:
        if self.repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {self.repeats}")


def run_echo(cfg: EchoConfig) -> dict:
    if cfg.fail:
        raise GenbaError("the run failed on purpose")
    return {"echo": [cfg.name] * cfg.repeats, "tags": cfg.tags}


@pytest.fixture(autouse=True)
def echo_command(monkeypatch):
    command = cli.Command("echo", "echo for tests", f"{__name__}:EchoConfig", f"{__name__}:run_echo")
    monkeypatch.setitem(cli.COMMANDS, "echo", command)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_overrides_reach_the_run_and_the_summary_path_is_the_last_line(capsys, tmp_path):
    out = tmp_path / "run"
    code, stdout, stderr = run(capsys, "echo", "name=腕", "repeats=3", "tags=[x,y,z]", f"out={out}")
    assert code == 0, stderr
    summary_path = stdout.strip().splitlines()[-1]
    assert summary_path == str(out / "summary.json")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["echo"] == ["腕"] * 3
    assert summary["tags"] == ["x", "y", "z"]
    assert summary["command"].startswith("genba echo ")
    assert summary["seconds"] >= 0


@pytest.mark.parametrize(
    "value", ["赤いキューブを青い箱に入れて", "it's 赤い", "a\\b 箱", "箱\\", "x\\'箱", "'quoted 箱'"]
)
def test_japanese_values_need_no_quoting(capsys, tmp_path, value):
    code, _, stderr = run(capsys, "echo", f"name={value}", f"out={tmp_path / 's.json'}")
    assert code == 0, stderr
    expected = value.strip("'") if value.startswith("'") else value
    assert json.loads((tmp_path / "s.json").read_text())["echo"][0] == expected


@pytest.mark.parametrize(
    ("out", "expected"),
    [("result.json", "result.json"), ("episode.rrd", "episode.rrd.json"), ("folder", "folder/summary.json")],
)
def test_summary_location_follows_out(capsys, tmp_path, out, expected):
    code, stdout, _ = run(capsys, "echo", f"out={tmp_path / out}")
    assert code == 0
    assert stdout.strip().splitlines()[-1] == str(tmp_path / expected)
    assert (tmp_path / expected).is_file()


def test_secrets_on_the_command_line_stay_out_of_the_summary(capsys, tmp_path):
    code, _, _ = run(capsys, "echo", "api_key=hunter2", f"out={tmp_path / 's.json'}")
    assert code == 0
    text = (tmp_path / "s.json").read_text()
    assert "hunter2" not in text
    assert "api_key=***" in text


def test_default_summary_goes_to_outputs(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, stdout, _ = run(capsys, "echo")
    assert code == 0
    path = stdout.strip().splitlines()[-1]
    assert path.startswith("outputs/echo-") and path.endswith(".json")
    assert json.loads((tmp_path / path).read_text())["echo"] == ["arm", "arm"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["echo", "nmae=x"], "valid keys: name, repeats, tags, out, fail, api_key"),
        (["echo", "+nmae=x"], "unknown key 'nmae' (valid keys: name, repeats, tags, out, fail, api_key)"),
        (["echo", "repeats=many"], "repeats"),
        (["echo", "repeats=0"], "repeats must be >= 1, got 0"),
        (["echo", "repeats"], "bad override"),
        (["echo", "fail=true"], "the run failed on purpose"),
        (["nope"], "unknown command 'nope'"),
        (["bench", "nope"], "unknown target 'nope'"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(capsys, tmp_path, argv, message):
    code, _, stderr = run(capsys, *argv, f"out={tmp_path / 'x.json'}")
    assert code == 2
    assert message in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "x.json").exists()


def test_unwritable_summary_fails_before_the_run(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, _, stderr = run(capsys, "echo", f"out={blocker / 'sub' / 'x.json'}")
    assert code == 2
    assert "is a file" in stderr
    assert blocker.read_text() == "not a folder"


def test_a_summary_the_filesystem_refuses_is_one_line(capsys):
    code, _, stderr = run(capsys, "echo", "out=/proc/genba-test/summary.json")  # refused even for root
    assert code == 2
    assert stderr.startswith("genba echo: error: cannot write") and len(stderr.strip().splitlines()) == 1


def genba_subprocess(cwd, *argv: bytes) -> tuple[int, list[str]]:
    """`python -m genba` with raw bytes arguments (a shell can pass any byte but NUL); (status, stderr lines)."""
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    result = subprocess.run(
        [sys.executable, "-m", "genba", *argv], cwd=cwd, env=env, capture_output=True, timeout=120, check=False
    )
    return result.returncode, result.stderr.decode("utf-8", "replace").strip().splitlines()


@pytest.mark.parametrize(
    ("out", "message"),
    [(b"data-\xff\xfe", "is not valid UTF-8"), (b"x" * 5000, "bytes (at most 255)")],
    ids=["non-utf8-byte", "5000-char-name"],
)
def test_a_path_the_os_cannot_take_fails_before_any_work_and_creates_nothing(tmp_path, out, message):
    # collect would otherwise simulate and encode for seconds, then die inside lerobot's writer with a traceback
    code, stderr = genba_subprocess(tmp_path, b"collect", b"episodes=1", b"out=" + out)
    assert code == 2, stderr
    assert len(stderr) == 1 and stderr[0].startswith("genba collect: error: out") and message in stderr[0], stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["echo", "out='a\x00b.json'"],  # Hydra's lexer refuses an unquoted NUL, a quoted one reaches the config
        ["echo", "out=箱\x00.json"],  # quoted by the CLI (non-ASCII)
        ["echo", "out=ok-\udcff.json"],  # what Python makes of a non-UTF-8 byte in argv
        ["echo", "out=" + "deep/" * 1000 + "x.json"],  # each name short, the whole path over PATH_MAX
        ["bench", "data", "data=" + "d" * 300],  # an input path, not only the output
    ],
    ids=["nul-quoted", "nul-non-ascii", "surrogate", "path-max", "data-name-max"],
)
def test_every_path_field_is_checked_before_the_run(capsys, tmp_path, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)
    code, _, stderr = run(capsys, *argv)
    assert code == 2
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr, stderr
    assert list(tmp_path.iterdir()) == []


def test_help_lists_commands_and_keys(capsys):
    code, stdout, _ = run(capsys, "--help")
    assert code == 0
    for name in ("collect", "viz", "tasks", "demo", "bench sim", "echo"):
        assert name in stdout
    code, stdout, _ = run(capsys, "echo", "--help")
    assert code == 0
    assert "repeats=2" in stdout and "how many times" in stdout and "tags=[a,b]" in stdout
    code, stdout, _ = run(capsys, "bench", "--help")
    assert code == 0 and "sim" in stdout


def test_every_registered_command_has_a_config_and_a_run_function():
    for command in cli.COMMANDS.values():
        if command.name == "echo":
            continue
        assert callable(command.load("run")), command.name
        assert hasattr(command.load("config"), "__dataclass_fields__"), command.name


@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
def test_every_command_answers_help(capsys, name):
    """Even one with a required key (baseline's data=): --help lists the keys and exits 0."""
    assert cli.main([*name.split(), "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: genba {name} ") and "keys (default):" in out


def test_python_dash_m_genba_is_the_same_command():
    result = subprocess.run([sys.executable, "-m", "genba", "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0
    assert "usage: genba <command>" in result.stdout
