"""The `genba` command: subcommands with Hydra-style `key=value` overrides, one JSON summary per run.

Each command is a typed config dataclass (next to the code it configures; Hydra composes it from its ConfigStore
schema, defaults < command-line overrides) and a `run(cfg) -> dict` function. This module only parses, validates,
dispatches and writes the summary; the work and its heavy imports live in the command's own module.

Paths are checked before any work: every config field named `out`, `data` or `root`, or ending in `_dir`, `_file`
or `_path`, holds a path, and a value the OS cannot take (not UTF-8, a NUL, a name over 255 bytes, a path over
4095) is a one-line error, as is a summary path that cannot be written. Name a new config's path fields that way.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genba.errors import GenbaError
from genba.io import check_path, check_writable, one_line, write_json

PATH_FIELDS = ("out", "data", "root")
PATH_SUFFIXES = ("_dir", "_file", "_path")


@dataclass(frozen=True)
class Command:
    name: str  # as typed: "collect", "bench sim"
    help: str
    config: str  # "module:ConfigClass"
    run: str  # "module:function", called as run(cfg) -> summary dict

    def load(self, attr: str) -> Any:
        module, name = getattr(self, attr).split(":")
        return getattr(importlib.import_module(module), name)


COMMANDS: dict[str, Command] = {
    c.name: c
    for c in [
        Command(
            "tasks",
            "list the simulated tasks",
            "genba.sim.tasks_command:TasksConfig",
            "genba.sim.tasks_command:run_tasks",
        ),
        Command(
            "collect",
            "run a scripted expert in MuJoCo and write a LeRobotDataset v3",
            "genba.datasets.collect:CollectConfig",
            "genba.datasets.collect:run_collect",
        ),
        Command(
            "merge",
            "merge LeRobotDatasets v3 into one with LeRobot's own merge, keeping genba's per-episode records",
            "genba.datasets.merge:MergeConfig",
            "genba.datasets.merge:run_merge",
        ),
        Command(
            "viz",
            "log one episode of a LeRobotDataset v3 to Rerun (.rrd file or live viewer)",
            "genba.viz.episode:VizConfig",
            "genba.viz.episode:run_viz",
        ),
        Command(
            "serve",
            "serve a policy to robot arms over openpi's websocket protocol (hardened)",
            "genba.serving.server:ServeConfig",
            "genba.serving.server:run_serve",
        ),
        Command(
            "eval",
            "a policy's success rate on a simulated task, with a 95% interval, on recorded seeds",
            "genba.policies.evaluate:EvalConfig",
            "genba.policies.evaluate:run_eval",
        ),
        Command(
            "eval-ranking",
            "rank policies in MuJoCo and in a world model on the same seeds: Pearson, Spearman, MMRV, wall clock",
            "genba.policies.ranking:RankingConfig",
            "genba.policies.ranking:run_ranking",
        ),
        Command(
            "baseline",
            "train LeRobot's ACT or Diffusion Policy with lerobot-train on a dataset (offline, CPU or GPU)",
            "genba.policies.baseline:BaselineConfig",
            "genba.policies.baseline:run_baseline",
        ),
        Command(
            "train-worldmodel",
            "train the world model (frames + joint state, action-conditioned) on any LeRobotDataset v3",
            "genba.worldmodel.train_command:TrainWorldModelConfig",
            "genba.worldmodel.train_command:run_train_worldmodel",
        ),
        Command(
            "eval-worldmodel",
            "a world model's open-loop rollouts on held-out episodes: PSNR, SSIM, state error vs baselines",
            "genba.worldmodel.evaluate:EvalWorldModelConfig",
            "genba.worldmodel.evaluate:run_eval_worldmodel",
        ),
        Command(
            "train-policy",
            "train the VLA (flow-matching action chunks on the shared backbone) on any LeRobotDataset v3",
            "genba.policies.train_command:TrainPolicyConfig",
            "genba.policies.train_command:run_train_policy",
        ),
        Command(
            "bench data",
            "clip loading samples/s: genba's pipeline vs lerobot's LeRobotDataset on the same clips",
            "genba.datasets.bench:BenchDataConfig",
            "genba.datasets.bench:run_bench_data",
        ),
        Command(
            "bench collect",
            "collection frames/s: local workers and Ray, per render and codec option, and the per-frame costs",
            "genba.datasets.bench_collect:BenchCollectConfig",
            "genba.datasets.bench_collect:run_bench_collect",
        ),
        Command(
            "bench sim",
            "simulation speed: env steps/s physics-only and with cameras, vs raw mj_step",
            "genba.sim.bench:BenchSimConfig",
            "genba.sim.bench:run_bench_sim",
        ),
        Command(
            "bench attention",
            "spatiotemporal attention kernel: ms and useful TFLOP/s per backend (triton needs CUDA)",
            "genba.kernels.bench:BenchAttentionConfig",
            "genba.kernels.bench:run_bench_attention",
        ),
        Command(
            "bench policy",
            "VLA training step time and latency per action chunk of a preset",
            "genba.policies.bench:BenchPolicyConfig",
            "genba.policies.bench:run_bench_policy",
        ),
        Command(
            "bench worldmodel",
            "world-model training samples/s (and MFU on CUDA) and rollout frames/s of a preset",
            "genba.worldmodel.bench:BenchWorldModelConfig",
            "genba.worldmodel.bench:run_bench_worldmodel",
        ),
        Command(
            "bench serve",
            "policy server round-trip latency p50/p99 on loopback and its overhead over the policy",
            "genba.serving.bench:BenchServeConfig",
            "genba.serving.bench:run_bench_serve",
        ),
        Command(
            "demo",
            "the whole pipeline on the embedded default (what `make demo` runs)",
            "genba.demo:DemoConfig",
            "genba.demo:run_demo",
        ),
    ]
}
GROUPS = sorted({name.split()[0] for name in COMMANDS if " " in name})


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    if argv[0] == "--version":
        from genba import __version__

        print(f"genba {__version__}")
        return 0

    name, rest = _split_command(argv)
    if name is None:
        return rest  # the exit status: 0 after a group's --help, 2 after an unknown command
    argv, command = rest, COMMANDS[name]
    if any(a in ("-h", "--help") for a in argv):
        print(_command_help(command))
        return 0
    try:
        cfg = _compose(command, argv)
        _check_paths(cfg)
        summary_path = check_writable(_summary_path(cfg, name), "summary")
        started = time.perf_counter()
        summary = command.load("run")(cfg)
        summary.setdefault("seconds", round(time.perf_counter() - started, 3))
        summary["command"] = f"genba {name} " + " ".join(_mask_secrets(argv))
        if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 alone writes and prints the summary
            return 0
        write_json(summary_path, summary, indent=2)
    except GenbaError as e:
        print(f"genba {name}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"genba {name}: interrupted", file=sys.stderr)
        return 130
    print(summary_path)
    return 0


def _split_command(argv: list[str]) -> tuple[str, list[str]] | tuple[None, int]:
    """("bench", "sim", "k=v") -> ("bench sim", ["k=v"]); (None, exit status) when there is nothing to run."""
    head = argv[0]
    if head in GROUPS:
        subs = sorted(n.split()[1] for n in COMMANDS if n.startswith(head + " "))
        if len(argv) < 2 or argv[1] in ("-h", "--help"):
            asked = len(argv) >= 2
            stream = sys.stdout if asked else sys.stderr
            print(f"usage: genba {head} {{{','.join(subs)}}} [key=value ...]", file=stream)
            for sub in subs:
                print(f"  {sub:<10} {COMMANDS[f'{head} {sub}'].help}", file=stream)
            return None, 0 if asked else 2
        if f"{head} {argv[1]}" not in COMMANDS:
            print(f"genba {head}: error: unknown target {argv[1]!r} (valid: {', '.join(subs)})", file=sys.stderr)
            return None, 2
        return f"{head} {argv[1]}", argv[2:]
    if head not in COMMANDS:
        valid = ", ".join(sorted({n.split()[0] for n in COMMANDS}))
        print(f"genba: error: unknown command {head!r} (valid: {valid}); see `genba --help`", file=sys.stderr)
        return None, 2
    return head, argv[1:]


def _usage() -> str:
    lines = [
        "usage: genba <command> [key=value ...]      (also: python -m genba)",
        "",
        "commands:",
    ]
    for name, command in COMMANDS.items():
        lines.append(f"  {name:<12} {command.help}")
    lines += [
        "",
        "Every command takes Hydra-style overrides (key=value, lists as key=[a,b]), writes a JSON summary,",
        "and prints that summary's path as its last line. `genba <command> --help` lists its keys.",
    ]
    return "\n".join(lines)


def _command_help(command: Command) -> str:
    cls = command.load("config")
    try:
        defaults = vars(_compose(command, []))  # as validation completes them (a derived out=, ...)
    except GenbaError:  # a required key (data=...): the declared defaults
        defaults = {f.name: f.default_factory() if callable(f.default_factory) else f.default
                    for f in dataclasses.fields(cls)}  # fmt: skip
    lines = [f"usage: genba {command.name} [key=value ...]", "", command.help, "", "keys (default):"]
    for f in dataclasses.fields(cls):
        value = defaults[f.name]
        lines.append(f"  {f.name}={_format_value(value)}")
        if f.metadata.get("help"):
            lines.append(f"      {f.metadata['help']}")
    return "\n".join(lines)


def _format_value(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ",".join(str(v) for v in value) + "]"
    return "null" if value is None else str(value)


def _compose(command: Command, overrides: list[str]) -> Any:
    """Build the typed config: dataclass defaults < command-line overrides; validated."""
    from hydra import compose, initialize
    from hydra.core.config_store import ConfigStore
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import ConfigAttributeError, OmegaConfBaseException

    cls = command.load("config")
    overrides = [_quote_non_ascii(o) for o in overrides]
    schema = command.name.replace(" ", "_")
    ConfigStore.instance().store(name=f"{schema}_schema", node=cls)
    try:
        with initialize(version_base="1.3", config_path=None):
            cfg = compose(config_name=f"{schema}_schema", overrides=overrides)
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in cfg if k not in valid]  # `+key=value` adds keys that the dataclass would drop silently
        if unknown:
            raise GenbaError(f"unknown key {unknown[0]!r} (valid keys: {', '.join(valid)})")
        return OmegaConf.to_object(cfg)
    except HydraException as e:
        cause = e.__cause__
        if isinstance(cause, ConfigAttributeError):
            valid = ", ".join(f.name for f in dataclasses.fields(cls))
            raise GenbaError(f"{one_line(cause)} (valid keys: {valid})") from None
        if cause:
            raise GenbaError(f"{one_line(e)}: {one_line(cause)}") from None
        # a grammar error: "Error parsing override '...'", what is wrong, a link to the grammar's documentation
        lines = [line for line in str(e).splitlines() if line.strip()]
        detail = lines[-2] if len(lines) > 1 else one_line(e)
        raise GenbaError(f"bad override: {one_line(e)} ({detail})") from None
    except OmegaConfBaseException as e:
        raise GenbaError(one_line(e)) from None
    except ValueError as e:  # __post_init__ validation
        raise GenbaError(one_line(e)) from None


def _check_paths(cfg: Any) -> None:
    """Every path-valued field (see the module docstring) must be one the OS can take, before any work starts."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, str) and value and (f.name in PATH_FIELDS or f.name.endswith(PATH_SUFFIXES)):
            check_path(value, f.name)


def _mask_secrets(overrides: list[str]) -> list[str]:
    """The command line is stored in the summary; a key given as `api_key=...` must not be."""
    return [re.sub(r"^(\+{0,2}\w*(?:api_key|token|secret|password)\w*)=.*", r"\1=***", o) for o in overrides]


def _quote_non_ascii(override: str) -> str:
    """`lang_hint=日本語` -> `lang_hint='日本語'`: Hydra's grammar only takes ASCII in unquoted values, and Japanese
    instructions are ordinary input here. Quoted values, lists and dicts are left as typed."""
    key, sep, value = override.partition("=")
    if not sep or value.isascii() or value[:1] in ("'", '"', "[", "{"):
        return override
    # Hydra reads a backslash as an escape only before a quote or at the end of the quoted value.
    value = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", value)
    value = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, value)
    return f"{key}='{value}'"


def _summary_path(cfg: Any, name: str) -> Path:
    """Where the JSON summary goes: the config's own `summary_path()`, else derived from `out`."""
    if hasattr(cfg, "summary_path"):
        return Path(cfg.summary_path())
    out = getattr(cfg, "out", None)
    if not out:
        return Path("outputs") / f"{name.replace(' ', '-')}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out = Path(out)
    if out.suffix == ".json":
        return out
    if out.suffix:  # a file artefact (episode.rrd): its summary sits beside it
        return out.with_suffix(out.suffix + ".json")
    return out / "summary.json"
