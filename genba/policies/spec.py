"""What a policy reads and what it emits, as data: the server, the evaluator and the robot client all read these.

    InputSpec({"observation.state": Feature("float32", (6,)), "task": Feature("str", required=False)})
    ActionSpec(horizon=16, dim=6, fps=10)

`InputSpec.validate(obs)` is the one check every observation passes before a policy sees it (over the network or
in simulation): unknown and missing keys, shapes, dtypes, non-finite floats, overlong text.

Spoken instructions: `audio_feature()` declares `observation.audio`, a float32 waveform (T,) of any length (shape
(-1,)) at the feature's `sample_rate`. A client sends it with its rate under `observation.audio_sample_rate` (an
int): a waveform that is empty, longer than MAX_AUDIO_SECONDS, at another rate or with NaNs is a SpecError. Features
that share a `one_of` group are each optional but at least one must come: `task`, `observation.audio` or both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from genba import keys

MAX_TEXT_CHARS = 2000
MAX_AUDIO_SECONDS = 30.0
ANY = -1  # a dimension of any (non-zero) length
INSTRUCTION = "instruction"  # the one_of group of the instruction features (task, observation.audio)
_FLOAT_KIND = "f"


class SpecError(ValueError):
    """An observation that does not match the policy's input spec; its text is one short line."""


@dataclass(frozen=True)
class Feature:
    """One observation entry: `dtype` is a numpy dtype name or "str"; `shape` () for text."""

    dtype: str
    shape: tuple[int, ...] = ()  # ANY (-1) for a dimension of any length
    required: bool = True
    description: str = ""
    sample_rate: int = 0  # Hz, for an audio waveform; 0 otherwise
    one_of: str = ""  # a group of optional features of which at least one must be sent

    def to_json(self) -> dict:
        out = {"dtype": self.dtype, "shape": list(self.shape), "required": self.required}
        extra = {"description": self.description, "sample_rate": self.sample_rate, "one_of": self.one_of}
        return out | {k: v for k, v in extra.items() if v}

    @classmethod
    def from_json(cls, d: dict) -> Feature:
        return cls(str(d["dtype"]), tuple(int(n) for n in d.get("shape", ())), bool(d.get("required", True)),
                   str(d.get("description", "")), int(d.get("sample_rate", 0)), str(d.get("one_of", "")))  # fmt: skip


def audio_feature(sample_rate: int = keys.AUDIO_SAMPLE_RATE, one_of: str = INSTRUCTION) -> Feature:
    """`observation.audio`: the spoken instruction, float32 (T,) mono at `sample_rate`, beside or instead of `task`
    (give `task` the same one_of group)."""
    return Feature("float32", (ANY,), required=False, description=f"spoken instruction, mono {sample_rate} Hz",
                   sample_rate=sample_rate, one_of=one_of)  # fmt: skip


@dataclass(frozen=True)
class InputSpec:
    """What a policy reads. `features` maps LeRobot keys to their Feature; the server rejects anything else."""

    features: dict[str, Feature] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {k: f.to_json() for k, f in self.features.items()}

    @classmethod
    def from_json(cls, d: dict) -> InputSpec:
        return cls({str(k): Feature.from_json(f) for k, f in d.items()})

    def describe(self) -> str:
        """One line for logs: observation.state float32[6], task str, ..."""
        parts = []
        for k, f in self.features.items():
            dims = "x".join(str(n) for n in f.shape)
            parts.append(f"{k} {f.dtype}" + (f"[{dims}]" if f.shape else "") + ("" if f.required else "?"))
        return ", ".join(parts)

    def validate(self, obs: Any) -> dict:
        """Check one decoded observation; return it with `prompt` renamed to `task` and floats cast to the
        declared width. Raises SpecError naming the first bad key and what was expected."""
        if not isinstance(obs, dict):
            raise SpecError(f"observation must be a map, got {type(obs).__name__}")
        obs = dict(obs)
        if keys.PROMPT in obs:
            if keys.TASK in obs:
                raise SpecError(f"send the instruction as {keys.TASK!r} or {keys.PROMPT!r}, not both")
            obs[keys.TASK] = obs.pop(keys.PROMPT)
        reset = obs.pop(keys.RESET, False)
        if not isinstance(reset, bool | np.bool_):
            raise SpecError(f"{keys.RESET!r} must be a bool, got {type(reset).__name__}")
        rate = obs.pop(keys.OBS_AUDIO_RATE, None) if any(f.sample_rate for f in self.features.values()) else None
        unknown = [k for k in obs if k not in self.features]
        if unknown:
            raise SpecError(f"unknown key {str(unknown[0])[:60]!r} (expected: {', '.join(self.features)})")
        out: dict[str, Any] = {}
        for name, feat in self.features.items():
            if name not in obs:
                if feat.required:
                    raise SpecError(f"missing key {name!r} (expected {self._expect(feat)})")
                continue
            out[name] = self._check(name, feat, obs[name])
            if feat.sample_rate:
                self._check_rate(name, feat, rate)
        groups = {f.one_of for f in self.features.values() if f.one_of}
        for group in sorted(groups):
            members = [k for k, f in self.features.items() if f.one_of == group]
            if not any(k in out for k in members):
                raise SpecError(f"missing the {group}: send {' or '.join(repr(k) for k in members)} (or both)")
        if reset:
            out[keys.RESET] = True
        return out

    @staticmethod
    def _check_rate(name: str, feat: Feature, rate: Any) -> None:
        if rate is None:
            raise SpecError(f"{name!r} needs its sample rate in Hz as {keys.OBS_AUDIO_RATE!r} ({feat.sample_rate})")
        if isinstance(rate, np.ndarray) and rate.ndim == 0:
            rate = rate.item()
        if isinstance(rate, bool) or not isinstance(rate, int | np.integer):
            raise SpecError(f"{keys.OBS_AUDIO_RATE!r} must be an integer (Hz), got {type(rate).__name__}")
        if int(rate) != feat.sample_rate:
            raise SpecError(f"{name!r} is at {int(rate)} Hz; this policy takes {feat.sample_rate} Hz (resample first)")

    @staticmethod
    def _expect(feat: Feature) -> str:
        return "str" if feat.dtype == "str" else f"{feat.dtype} array of shape {list(feat.shape)}"

    def _check(self, name: str, feat: Feature, value: Any) -> Any:
        if feat.dtype == "str":
            if not isinstance(value, str):
                raise SpecError(f"{name!r} must be a string, got {type(value).__name__}")
            if len(value) > MAX_TEXT_CHARS:
                raise SpecError(f"{name!r} is {len(value)} characters long (at most {MAX_TEXT_CHARS})")
            return value
        if not isinstance(value, np.ndarray):
            raise SpecError(f"{name!r} must be a {self._expect(feat)}, got {type(value).__name__}")
        if value.ndim != len(feat.shape) or any(
            d != n for d, n in zip(feat.shape, value.shape, strict=True) if d != ANY
        ):
            raise SpecError(f"{name!r} has shape {list(value.shape)}, expected {list(feat.shape)}")
        if ANY in feat.shape and value.size == 0:
            raise SpecError(f"{name!r} is empty")
        if feat.sample_rate and value.shape[0] > MAX_AUDIO_SECONDS * feat.sample_rate:
            raise SpecError(
                f"{name!r} is {value.shape[0] / feat.sample_rate:.1f} s long (at most {MAX_AUDIO_SECONDS} s)"
            )
        want = np.dtype(feat.dtype)
        if value.dtype != want:
            # Any float width is accepted for a float feature (numpy builds float64 by default); ints are not.
            if not (want.kind == _FLOAT_KIND and value.dtype.kind == _FLOAT_KIND):
                raise SpecError(f"{name!r} has dtype {value.dtype}, expected {want}")
            with np.errstate(over="ignore"):
                value = value.astype(want)
        if want.kind == _FLOAT_KIND and not np.isfinite(value).all():
            raise SpecError(f"{name!r} has non-finite values (NaN or inf)")
        return value


@dataclass(frozen=True)
class ActionSpec:
    """What a policy returns: `actions` (horizon, dim) float32, one row per control step at `fps`."""

    horizon: int
    dim: int
    names: tuple[str, ...] = keys.JOINTS
    fps: float = 10.0
    units: str = "rad (gripper: m)"  # the genba arm's; the server's action limits must be in the same

    def to_json(self) -> dict:
        return {
            "key": keys.ACTIONS,
            "dtype": "float32",
            "shape": [self.horizon, self.dim],
            "names": list(self.names),
            "fps": self.fps,
            "units": self.units,
        }

    @classmethod
    def from_json(cls, d: dict) -> ActionSpec:
        horizon, dim = (int(n) for n in d["shape"])
        names = tuple(d.get("names", keys.JOINTS))
        return cls(horizon, dim, names, float(d.get("fps", 10.0)), str(d.get("units", cls.units)))
