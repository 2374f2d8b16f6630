"""openpi's wire format, decoded defensively, and the input specification every observation is checked against.

The format is what the `openpi-client` package (0.1.2) speaks: msgpack maps whose numpy arrays are encoded as
`{b"__ndarray__": True, b"data": raw bytes, b"dtype": numpy dtype str, b"shape": [...]}` and numpy scalars as
`{b"__npgeneric__": True, b"data": item, b"dtype": str}`. openpi's own decoder hands any dtype string to numpy,
object arrays included; this one admits only plain numeric dtypes and checks that the byte count matches the shape
before numpy sees the buffer. Nothing here ever unpickles.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

from genba import keys

PROMPT, RESET, SERVER_TIMING = keys.PROMPT, keys.RESET, keys.SERVER_TIMING
MAX_TEXT_CHARS = 2000
# Plain numeric dtypes only: numpy's object, void, datetime and complex kinds have no place on this wire.
_DTYPES = {"|b1", "|u1", "|i1", "<u2", "<i2", "<u4", "<i4", "<u8", "<i8", "<f2", "<f4", "<f8"}
_DTYPES |= {">" + d[1:] for d in _DTYPES if d[0] == "<"}
_FLOAT_KIND = "f"


class ProtocolError(ValueError):
    """A message the server refuses; its text (one short line) is sent back to the client."""


# ---------------------------------------------------------------------------------------------------------------
# Encoding (what the openpi client's Packer produces) and strict decoding


def _pack_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind in ("V", "O", "c"):
            raise ValueError(f"unsupported dtype: {obj.dtype}")
        obj = np.ascontiguousarray(obj)
        return {b"__ndarray__": True, b"data": obj.tobytes(), b"dtype": obj.dtype.str, b"shape": obj.shape}
    if isinstance(obj, np.generic):
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    raise TypeError(f"cannot encode {type(obj).__name__}")


def packb(obj: Any) -> bytes:
    """Encode a dict of arrays / scalars / strings exactly as openpi_client.msgpack_numpy.packb does."""
    return msgpack.packb(obj, default=_pack_default)


def _unpack_hook(obj: dict) -> Any:
    if b"__ndarray__" in obj:
        dtype, shape, data = obj.get(b"dtype"), obj.get(b"shape"), obj.get(b"data")
        if not isinstance(dtype, str) or dtype not in _DTYPES:
            raise ProtocolError(f"array dtype {str(dtype)[:20]!r} not allowed (numeric dtypes only)")
        if not isinstance(shape, list | tuple) or len(shape) > 8:
            raise ProtocolError("array shape must be a list of at most 8 non-negative ints")
        if not all(isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 2**31 for n in shape):
            raise ProtocolError("array shape must be a list of at most 8 non-negative ints")
        if not isinstance(data, bytes):
            raise ProtocolError("array data must be bytes")
        dt = np.dtype(dtype)
        if math.prod(shape) * dt.itemsize != len(data):
            raise ProtocolError(
                f"array of shape {list(shape)} and dtype {dtype} needs "
                f"{math.prod(shape) * dt.itemsize} bytes, got {len(data)}"
            )
        return np.frombuffer(data, dtype=dt).reshape(shape)  # read-only view, no copy
    if b"__npgeneric__" in obj:
        dtype, data = obj.get(b"dtype"), obj.get(b"data")
        if not isinstance(dtype, str) or dtype not in _DTYPES or not isinstance(data, bool | int | float):
            raise ProtocolError("numpy scalar with a non-numeric dtype or value")
        try:
            return np.dtype(dtype).type(data)
        except (OverflowError, ValueError):
            raise ProtocolError(f"numpy scalar {data!r} does not fit {dtype}") from None
    return obj


def unpackb(data: bytes) -> Any:
    """Decode one message; any malformation -> ProtocolError with a short reason."""
    try:
        return msgpack.unpackb(data, object_hook=_unpack_hook, raw=False, strict_map_key=True)
    except ProtocolError:
        raise
    except Exception as e:  # msgpack raises a zoo of types (ExtraData, FormatError, ValueError, ...)
        raise ProtocolError(f"not a msgpack message ({type(e).__name__})") from None


# ---------------------------------------------------------------------------------------------------------------
# Input specification


@dataclass(frozen=True)
class Feature:
    """One observation entry: `dtype` is a numpy dtype name or "str"; `shape` () for text."""

    dtype: str
    shape: tuple[int, ...] = ()
    required: bool = True
    description: str = ""

    def to_json(self) -> dict:
        out = {"dtype": self.dtype, "shape": list(self.shape), "required": self.required}
        return out | ({"description": self.description} if self.description else {})


@dataclass(frozen=True)
class InputSpec:
    """What a policy reads. `features` maps LeRobot keys to their Feature; the server rejects anything else."""

    features: dict[str, Feature] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {k: f.to_json() for k, f in self.features.items()}

    def describe(self) -> str:
        """One line for logs: observation.state float32[6], task str, ..."""
        parts = []
        for k, f in self.features.items():
            dims = "x".join(str(n) for n in f.shape)
            parts.append(f"{k} {f.dtype}" + (f"[{dims}]" if f.shape else "") + ("" if f.required else "?"))
        return ", ".join(parts)

    def validate(self, obs: Any) -> dict:
        """Check one decoded observation; return it with `prompt` renamed to `task` and floats cast to the
        declared width. Raises ProtocolError naming the first bad key and what was expected."""
        if not isinstance(obs, dict):
            raise ProtocolError(f"observation must be a map, got {type(obs).__name__}")
        obs = dict(obs)
        if PROMPT in obs:
            if keys.TASK in obs:
                raise ProtocolError(f"send the instruction as {keys.TASK!r} or {PROMPT!r}, not both")
            obs[keys.TASK] = obs.pop(PROMPT)
        reset = obs.pop(RESET, False)
        if not isinstance(reset, bool | np.bool_):
            raise ProtocolError(f"{RESET!r} must be a bool, got {type(reset).__name__}")
        unknown = [k for k in obs if k not in self.features]
        if unknown:
            raise ProtocolError(f"unknown key {str(unknown[0])[:60]!r} (expected: {', '.join(self.features)})")
        out: dict[str, Any] = {}
        for name, feat in self.features.items():
            if name not in obs:
                if feat.required:
                    raise ProtocolError(f"missing key {name!r} (expected {self._expect(feat)})")
                continue
            out[name] = self._check(name, feat, obs[name])
        if reset:
            out[RESET] = True
        return out

    @staticmethod
    def _expect(feat: Feature) -> str:
        return "str" if feat.dtype == "str" else f"{feat.dtype} array of shape {list(feat.shape)}"

    def _check(self, name: str, feat: Feature, value: Any) -> Any:
        if feat.dtype == "str":
            if not isinstance(value, str):
                raise ProtocolError(f"{name!r} must be a string, got {type(value).__name__}")
            if len(value) > MAX_TEXT_CHARS:
                raise ProtocolError(f"{name!r} is {len(value)} characters long (at most {MAX_TEXT_CHARS})")
            return value
        if not isinstance(value, np.ndarray):
            raise ProtocolError(f"{name!r} must be a {self._expect(feat)}, got {type(value).__name__}")
        if tuple(value.shape) != feat.shape:
            raise ProtocolError(f"{name!r} has shape {list(value.shape)}, expected {list(feat.shape)}")
        want = np.dtype(feat.dtype)
        if value.dtype != want:
            # Any float width is accepted for a float feature (numpy builds float64 by default); ints are not.
            if not (want.kind == _FLOAT_KIND and value.dtype.kind == _FLOAT_KIND):
                raise ProtocolError(f"{name!r} has dtype {value.dtype}, expected {want}")
            with np.errstate(over="ignore"):
                value = value.astype(want)
        if want.kind == _FLOAT_KIND and not np.isfinite(value).all():
            raise ProtocolError(f"{name!r} has non-finite values (NaN or inf)")
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
