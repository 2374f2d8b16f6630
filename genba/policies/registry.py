"""Policies by name: the built-in ones, or any class of yours as `module.path:ClassName`.

    from genba.policies.registry import policy_factory

    make = policy_factory("scripted", task="stack")  # a zero-argument constructor
    policy = make()
    # a class of yours: policy_factory("my_lab.policies:Grasper", task="stack", image_size=128)

`genba serve policy=...` and the evaluation commands take the same names. A class of yours must meet the policy
contract (genba.policies.contract: `input_spec`, `action_spec`, `reset()`, `infer(obs)`); it is constructed with
the options that were given and that its `__init__` names (task, cameras, image_size, horizon, seed, fps). The
module must be importable (installed, or on PYTHONPATH).

A built-in takes options of its own after a colon, `name:key=value[,key=value]`, which override the ones the caller
gives: `scripted:noise=0.3` is the scripted expert with N(0, 0.3^2) rad of action noise on its arm joints (a weaker
policy of known quality: `genba eval-ranking` spans success rates with a few noise levels), `linear:seed=3` another
linear map. Each key must be one its factory names (`builtin_option_names`); values are read as numbers when they are.

A genba VLA is named by its run folder (`genba train-policy`'s out=, or one of its checkpoint folders): any
existing folder is read as one, with the option device.

A LeRobot policy checkpoint is `lerobot:<folder>` (a pretrained_model folder, or a lerobot-train / `genba baseline`
run folder: its last checkpoint), loaded with its processors by genba.policies.lerobot; options horizon, fps and
device (cpu, cuda, auto) reach it. The `lerobot:` prefix is read before `module.path:ClassName`: it always names a
checkpoint, never the `lerobot` package (whose classes are not genba policies).
"""

from __future__ import annotations

import importlib
import inspect
import math
import os
from collections.abc import Callable
from typing import Any

from genba.errors import GenbaError
from genba.io import one_line
from genba.policies.contract import Policy, check_policy

LEROBOT_PREFIX = "lerobot:"  # policy=lerobot:<checkpoint folder>; = genba.policies.lerobot.PREFIX


def _scripted(
    task: str | None = None, fps: float = 10.0, seed: int | None = None, noise: float = 0.0, **_: Any
) -> Callable[[], Policy]:
    from genba.policies.scripted import ScriptedPolicy
    from genba.sim.tasks import TASKS

    if task not in TASKS:
        raise GenbaError(f"policy=scripted needs task=<name>, got {task!r} (valid: {', '.join(TASKS)})")
    if not isinstance(noise, int | float) or not math.isfinite(noise) or noise < 0:
        raise GenbaError(f"policy=scripted:noise={noise!r}: noise must be a finite number >= 0 (radians)")
    # with noise, no fixed seed: each reset() draws the noise generator from NumPy's (seeded per episode by eval)
    return lambda: ScriptedPolicy(task, noise=float(noise), seed=None if noise else seed, fps=int(fps))


def _linear(cameras=(), image_size: int = 224, horizon: int = 10, seed: int = 0, fps: float = 10.0, **_: Any):
    from genba.policies.simple import LinearPolicy

    cams = list(cameras or [])
    return lambda: LinearPolicy(cameras=cams, image_size=image_size, horizon=horizon, seed=seed, fps=fps)


def _hold(cameras=(), image_size: int = 224, horizon: int = 10, fps: float = 10.0, **_: Any):
    from genba.policies.simple import HoldPolicy

    cams = list(cameras or [])
    return lambda: HoldPolicy(cameras=cams, image_size=image_size, horizon=horizon, fps=fps)


def _random(horizon: int = 1, fps: float = 10.0, **_: Any):
    from genba.policies.simple import RandomPolicy
    from genba.sim.model import JOINT_LIMITS

    # no fixed seed: each reset() draws its generator from NumPy's (seeded per episode by eval and collect)
    return lambda: RandomPolicy(JOINT_LIMITS[:, 0], JOINT_LIMITS[:, 1], horizon=horizon, fps=fps)


# name -> (factory of factories, one line of help). The only list of built-in policies.
BUILTIN: dict[str, tuple[Callable[..., Callable[[], Policy]], str]] = {
    "scripted": (_scripted, "the scripted expert of task= (reads joint state and object poses)"),
    "linear": (_linear, "a fixed seeded linear map of the state and image brightness (tests, benchmarks)"),
    "hold": (_hold, "holds the measured position (bringing up a new arm)"),
    "random": (_random, "uniform joint targets within the arm's limits"),
}


def builtin_option_names(name: str) -> tuple[str, ...]:
    """The options built-in `name` takes (`scripted:noise=0.3`): its factory's named parameters."""
    params = inspect.signature(BUILTIN[name][0]).parameters.values()
    return tuple(p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD)


def builtin_options(policy: str) -> tuple[str, dict[str, Any]] | None:
    """("scripted", {"noise": 0.3}) for "scripted:noise=0.3", ("hold", {}) for "hold"; None when `policy` is not a
    built-in name; a one-line GenbaError for a key the built-in does not take or a malformed option."""
    name, sep, rest = policy.partition(":")
    if name not in BUILTIN or (sep and "=" not in rest):  # "scripted:Foo" would be module scripted's class Foo
        return None
    options: dict[str, Any] = {}
    for item in rest.split(",") if sep else []:
        key, eq, value = (part.strip() for part in item.partition("="))
        if not eq or not key or not value:
            raise GenbaError(f"policy={policy}: options are key=value separated by commas, got {item!r}")
        if key not in builtin_option_names(name):
            valid = ", ".join(builtin_option_names(name))
            raise GenbaError(f"policy={policy}: {name} takes no option {key!r} (valid: {valid})")
        options[key] = _number(value)
    return name, options


def _number(value: str) -> Any:
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def policy_factory(policy: str, **options: Any) -> Callable[[], Policy]:
    """A zero-argument constructor for `policy` (a built-in name, with its own options as `name:key=value,...`, or
    `module.path:ClassName`, ...). Options that are None are not passed: the policy's own defaults hold."""
    options = {k: v for k, v in options.items() if v is not None}
    if policy.startswith(LEROBOT_PREFIX):
        return _lerobot(policy[len(LEROBOT_PREFIX) :], options)
    builtin = builtin_options(policy)
    if builtin:  # before folders: a folder named "random" in the working directory changes nothing
        return BUILTIN[builtin[0]][0](**{**options, **builtin[1]})
    if os.path.isdir(os.path.expanduser(policy)):
        return _vla(policy, options)
    if ":" in policy:
        return _user_class(policy, options)
    raise GenbaError(
        f"unknown policy {policy!r} (valid: {', '.join(BUILTIN)}, or module.path:ClassName for a class of yours, "
        f"a VLA run folder, or {LEROBOT_PREFIX}<folder> for a LeRobot checkpoint)"
    )


def _lerobot(path: str, options: dict[str, Any]) -> Callable[[], Policy]:
    """A LeRobot checkpoint (genba.policies.lerobot); lerobot itself is imported only here, when one is named."""
    if not path.strip():
        raise GenbaError(f"policy={LEROBOT_PREFIX} needs a checkpoint folder: policy={LEROBOT_PREFIX}<path>")
    from genba.policies.lerobot import LeRobotPolicy

    kwargs = {k: options[k] for k in ("device", "horizon", "fps") if k in options}

    def make() -> Policy:
        return check_policy(LeRobotPolicy(path, **kwargs))

    first = [make()]  # load (and fail) now, before any client or episode; later calls load another instance

    def factory() -> Policy:
        return first.pop() if first else make()

    return factory


def _vla(path: str, options: dict[str, Any]) -> Callable[[], Policy]:
    """A genba VLA run or checkpoint folder (genba.policies.vla_policy); torch is imported only here."""
    from genba.policies.vla_policy import VLAPolicy, is_vla_run

    if not is_vla_run(path):
        raise GenbaError(f"policy={path} is a folder but not a VLA run (no last/config.json of kind 'vla'); "
                         f"a LeRobot checkpoint is policy={LEROBOT_PREFIX}{path}")  # fmt: skip
    kwargs = {k: options[k] for k in ("device", "threads") if k in options}

    def make() -> Policy:
        return check_policy(VLAPolicy(path, **kwargs))

    first = [make()]  # load (and fail) now, before any client or episode

    def factory() -> Policy:
        return first.pop() if first else make()

    return factory


def _user_class(path: str, options: dict[str, Any]) -> Callable[[], Policy]:
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # not found, or the module itself fails on import
        raise GenbaError(f"policy={path}: cannot import {module_name!r}: {type(e).__name__}: {one_line(e)}") from None
    cls = getattr(module, attr, None)
    if not callable(cls):
        raise GenbaError(f"policy={path}: module {module_name!r} has no class {attr!r}")
    params = inspect.signature(cls).parameters
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    kwargs = {k: v for k, v in options.items() if takes_all or k in params}

    def make() -> Policy:
        try:
            policy = cls(**kwargs)
        except Exception as e:
            raise GenbaError(f"policy={path}: {attr}({', '.join(kwargs)}) failed: {type(e).__name__}: "
                             f"{one_line(e)}") from None  # fmt: skip
        return check_policy(policy)

    first = [make()]  # fail now, with one line, rather than at the first client or episode; then hand it out

    def factory() -> Policy:
        return first.pop() if first else make()

    return factory
