"""Trainer state as tensors + JSON, never pickle: optimizer state dicts flattened, RNG states as tensors.

`flatten(obj, prefix, tensors)` turns a nested structure (torch.optim's `state_dict()`: int keys, tuples, tensors)
into JSON-able data with each tensor replaced by `{"__tensor__": key}` and stored in `tensors` under that key;
`unflatten` undoes it exactly (int keys and tuples come back as they were). `rng_state()` / `set_rng_state()` cover
torch (CPU and CUDA), numpy's and Python's global generators.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from genba.errors import GenbaError

TENSOR = "__tensor__"
ITEMS = "__items__"  # a dict whose keys are not all plain strings (torch.optim's state is keyed by int)
TUPLE = "__tuple__"


def flatten(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """JSON-able `obj`, its tensors moved (detached, on CPU, contiguous) into `tensors` under `prefix.<path>`."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().cpu().contiguous().clone()  # clone: safetensors refuses shared storage
        return {TENSOR: prefix}
    if isinstance(obj, dict):
        plain = all(isinstance(k, str) and not k.startswith("__") for k in obj)
        if plain:
            return {k: flatten(v, f"{prefix}.{k}", tensors) for k, v in obj.items()}
        return {ITEMS: [[k, flatten(v, f"{prefix}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {TUPLE: [flatten(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [flatten(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} in trainer state at {prefix}")


def unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """The structure `flatten` was given, tensors taken from `tensors`."""
    if isinstance(obj, dict):
        if TENSOR in obj:
            key = obj[TENSOR]
            if key not in tensors:
                raise GenbaError(f"trainer state names a tensor {key!r} that trainer.safetensors does not hold")
            return tensors[key]
        if ITEMS in obj:
            return {_key(k): unflatten(v, tensors) for k, v in obj[ITEMS]}
        if TUPLE in obj:
            return tuple(unflatten(v, tensors) for v in obj[TUPLE])
        return {k: unflatten(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [unflatten(v, tensors) for v in obj]
    return obj


def _key(k: Any) -> Any:
    return tuple(k) if isinstance(k, list) else k  # JSON has no tuples; an int key stays an int


def rng_state() -> dict[str, torch.Tensor]:
    """Every global RNG the loop or a user's data code may draw from, as tensors (`rng.*`)."""
    out = {"rng.torch": torch.get_rng_state()}  # (n,) uint8
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            out[f"rng.cuda.{i}"] = s
    name, keys, pos, has_gauss, cached = np.random.get_state()
    assert name == "MT19937"
    out["rng.numpy"] = torch.from_numpy(np.ascontiguousarray(keys, dtype=np.uint32).view(np.uint8).copy())
    out["rng.numpy_extra"] = torch.tensor([pos, has_gauss, cached], dtype=torch.float64)
    version, internal, gauss = random.getstate()
    out["rng.python"] = torch.tensor([version, *internal], dtype=torch.int64)  # MT words < 2**32 fit int64
    out["rng.python_gauss"] = torch.tensor([0.0 if gauss is None else 1.0, gauss or 0.0], dtype=torch.float64)
    return out


def set_rng_state(tensors: dict[str, torch.Tensor]) -> None:
    """Restore what `rng_state()` saved (CUDA states only when this process has as many devices)."""
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available() and torch.cuda.device_count() == len(cuda):
        torch.cuda.set_rng_state_all(cuda)
    keys = tensors["rng.numpy"].numpy().view(np.uint32)
    pos, has_gauss, cached = tensors["rng.numpy_extra"].tolist()
    np.random.set_state(("MT19937", keys, int(pos), int(has_gauss), float(cached)))
    words = tensors["rng.python"].tolist()
    has, gauss = tensors["rng.python_gauss"].tolist()
    random.setstate((words[0], tuple(words[1:]), gauss if has else None))
