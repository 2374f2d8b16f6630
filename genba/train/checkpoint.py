"""The one checkpoint format: a folder, written atomically, loaded by kind; never pickle.

    <ckpt>/config.json          the model's typed config (a dataclass) as JSON, plus "kind", "format" and "module"
                                (the class's module: a genba model's module is imported on load to register it)
    <ckpt>/model.safetensors    the weights (state_dict, shared tensors stored once)
    <ckpt>/stats.json           optional: normalization stats
    <ckpt>/split.json           optional: the data split
    <ckpt>/trainer.safetensors  for resume: optimizer state tensors, EMA weights (ema.*), RNG states (rng.*)
    <ckpt>/trainer.json         for resume: step, epoch, metrics, and the optimizer state's non-tensor structure

A model class is registered once with `register_model(kind, model_cls, config_cls)`; it is built as
`model_cls(config)` and its config is read back as `config_cls(**fields)`. `load_model(path)` returns
`(model, config)` and refuses, with one line (GenbaError), a folder that is not a checkpoint, one of an unknown kind,
or one of another kind than asked for.

Why not huggingface_hub's PyTorchModelHubMixin (it also writes config.json + model.safetensors): it loads with
strict=False by default (missing weights pass silently), falls back to pytorch_model.bin (pickle) for hub ids,
treats a missing local folder as a hub repo id (network), writes a README model card, prints on load, and needs
every model to inherit it and take its config as init kwargs. safetensors' own save_model/load_model (strict) in a
folder we write ourselves is the same file layout, so a hub upload of the folder still works.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import os
import shutil
import types
import typing
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import nn

from genba.errors import GenbaError
from genba.io import dumps, one_line

FORMAT = 1
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
STATS = "stats.json"
SPLIT = "split.json"
TRAINER_TENSORS = "trainer.safetensors"
TRAINER_META = "trainer.json"
RESERVED = ("kind", "format", "module")  # config.json keys that are not config fields

# kind -> (model class, config dataclass)
_REGISTRY: dict[str, tuple[type[nn.Module], type]] = {}


def register_model(kind: str, model_cls: type[nn.Module], config_cls: type) -> None:
    """Name a model class (built as `model_cls(config)`) and its config dataclass for checkpoints."""
    if not dataclasses.is_dataclass(config_cls):
        raise TypeError(f"register_model({kind!r}): the config class {config_cls.__name__} is not a dataclass")
    clash = [f.name for f in dataclasses.fields(config_cls) if f.name in RESERVED]
    if clash:
        raise TypeError(f"register_model({kind!r}): config field {clash[0]!r} is reserved in config.json")
    old = _REGISTRY.get(kind)
    if old is not None and old != (model_cls, config_cls):
        raise ValueError(f"kind {kind!r} is already registered to {old[0].__name__}")
    _REGISTRY[kind] = (model_cls, config_cls)


def kinds() -> list[str]:
    return sorted(_REGISTRY)


def kind_of(model: nn.Module) -> str:
    """The registered kind of a model instance (its exact class)."""
    for kind, (cls, _) in _REGISTRY.items():
        if type(model) is cls:
            return kind
    raise GenbaError(f"{type(model).__name__} is not a registered model; call register_model(kind, cls, config_cls)")


# ---- writing ---------------------------------------------------------------------------------------------------


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    config: Any = None,
    *,
    stats: dict | None = None,
    split: dict | None = None,
    trainer_tensors: dict[str, torch.Tensor] | None = None,
    trainer_meta: dict | None = None,
) -> Path:
    """Write the checkpoint folder `path` atomically: a reader (or a resume after a kill) sees the previous folder or
    the new one, never a mix. `config` defaults to `model.config`."""
    path = Path(path)
    config = getattr(model, "config", None) if config is None else config
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise GenbaError(f"cannot checkpoint {type(model).__name__}: give its config dataclass (or set model.config)")
    kind = kind_of(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    recover(path)
    tmp, old = _sibling(path, "tmp"), _sibling(path, "old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        head = {"kind": kind, "format": FORMAT, "module": type(model).__module__}
        _write(tmp / CONFIG, lambda p: p.write_text(dumps({**head, **_to_json(config)})))
        # save_model (not save_file) drops tied duplicates, which save_file refuses
        _write(tmp / WEIGHTS, lambda p: safetensors.torch.save_model(model, str(p), metadata={"kind": kind}))
        if stats is not None:
            _write(tmp / STATS, lambda p: p.write_text(dumps(stats)))
        if split is not None:
            _write(tmp / SPLIT, lambda p: p.write_text(dumps(split)))
        if trainer_tensors is not None:
            _write(tmp / TRAINER_TENSORS, lambda p: safetensors.torch.save_file(trainer_tensors, str(p)))
        if trainer_meta is not None:
            _write(tmp / TRAINER_META, lambda p: p.write_text(dumps(trainer_meta)))
        _fsync_dir(tmp)
        # Two renames (Linux has no portable atomic folder swap): a kill between them leaves only `old`, which
        # recover() (called by every writer and reader) renames back.
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return path


def recover(path: str | Path) -> None:
    """Finish what a writer killed between its two renames left: the previous checkpoint is back at `path`."""
    path = Path(path)
    old = _sibling(path, "old")
    if old.is_dir():
        if path.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(old, path)


def _sibling(path: Path, what: str) -> Path:
    return path.with_name(f".{path.name}.{what}")


def _write(path: Path, write: typing.Callable[[Path], Any]) -> None:
    write(path)
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _to_json(config: Any) -> dict:
    return json.loads(dumps(dataclasses.asdict(config)))  # numpy values and paths as plain JSON


# ---- reading ---------------------------------------------------------------------------------------------------


def read_config(path: str | Path, kind: str | None = None) -> tuple[str, Any]:
    """(kind, typed config) of the checkpoint at `path`; one-line GenbaError for anything else."""
    path = Path(path)
    recover(path)
    if not path.is_dir():
        raise GenbaError(f"no checkpoint at {path}")
    try:
        meta = json.loads((path / CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise GenbaError(f"{path} is not a genba checkpoint (no readable {CONFIG}: {one_line(e)})") from None
    if not isinstance(meta, dict) or "kind" not in meta or not (path / WEIGHTS).is_file():
        raise GenbaError(f"{path} is not a genba checkpoint (needs {CONFIG} with a 'kind' and {WEIGHTS})")
    found = meta["kind"]
    if kind is not None and found != kind:
        raise GenbaError(f"{path} is a {found!r} checkpoint, not {kind!r}")
    module = meta.get("module", "")
    if found not in _REGISTRY and isinstance(module, str) and module.startswith("genba."):
        with contextlib.suppress(ImportError):  # genba's own model modules register their kind on import
            importlib.import_module(module)
    if found not in _REGISTRY:
        raise GenbaError(f"{path} holds a model of kind {found!r}, which is not registered (known: {kinds()})")
    if meta.get("format", FORMAT) > FORMAT:
        raise GenbaError(f"{path} is checkpoint format {meta['format']}; this genba reads up to {FORMAT}")
    fields = {k: v for k, v in meta.items() if k not in RESERVED}
    return found, _build(_REGISTRY[found][1], fields, f"{path / CONFIG}")


def load_model(
    path: str | Path, *, kind: str | None = None, device: str | torch.device = "cpu", ema: bool = False
) -> tuple[nn.Module, Any]:
    """(model in eval mode, its config) from a checkpoint folder. `kind` refuses another kind; `ema=True` loads the
    EMA weights kept for resume (trainer.safetensors) instead of the raw ones."""
    path = Path(path)
    kind, config = read_config(path, kind)
    model = _REGISTRY[kind][0](config)
    try:
        if ema:
            tensors = load_trainer(path)[0]
            state = {k.removeprefix("ema."): v for k, v in tensors.items() if k.startswith("ema.")}
            if not state:
                raise GenbaError(f"{path} holds no EMA weights (trained with ema=0)")
            model.load_state_dict(state, strict=True)
        else:
            missing, unexpected = safetensors.torch.load_model(model, str(path / WEIGHTS), strict=False)
            if missing or unexpected:
                raise GenbaError(
                    f"{path / WEIGHTS} does not fit {type(model).__name__}: "
                    f"missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}"
                )
    except GenbaError:
        raise
    except Exception as e:  # a truncated file, a shape mismatch
        raise GenbaError(f"cannot load the weights in {path}: {one_line(e)}") from None
    return model.to(device).eval(), config


def load_trainer(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, meta) saved for resume; one-line GenbaError when the checkpoint has none."""
    path = Path(path)
    recover(path)
    try:
        tensors = safetensors.torch.load_file(str(path / TRAINER_TENSORS))
        meta = json.loads((path / TRAINER_META).read_text(encoding="utf-8"))
    except (OSError, ValueError, safetensors.SafetensorError) as e:
        raise GenbaError(f"{path} has no trainer state to resume from ({one_line(e)})") from None
    return tensors, meta


def load_json(path: str | Path, name: str) -> Any:
    """stats.json or split.json of a checkpoint, or None when it was saved without one."""
    file = Path(path) / name
    if not file.is_file():
        return None
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise GenbaError(f"cannot read {file}: {one_line(e)}") from None


def _build(cls: type, data: Any, where: str) -> Any:
    """`cls(**data)` with nested dataclasses and tuples rebuilt from their annotations (JSON has only lists)."""
    if not isinstance(data, dict):
        raise GenbaError(f"{where}: expected an object for {cls.__name__}, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise GenbaError(f"{where}: unknown field {unknown[0]!r} for {cls.__name__}")
    kwargs = {k: _convert(hints.get(k), v, f"{where}:{k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise GenbaError(f"{where}: {one_line(e)}") from None


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            if arg is not type(None):
                with contextlib.suppress(GenbaError):
                    return _convert(arg, value, where)
        return value
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return _build(hint, value, where)
    if (hint is tuple or origin is tuple) and isinstance(value, list):
        return tuple(value)
    return value
