"""Any LeRobot policy checkpoint as a genba policy: `policy=lerobot:<checkpoint folder>` in `genba eval` and `serve`.

    from genba.policies.lerobot import LeRobotPolicy

    policy = LeRobotPolicy("runs/act-reach")  # a run folder, or its checkpoints/last/pretrained_model
    policy.input_spec.describe()  # observation.images.front uint8[64x64x3], ..., observation.state float32[6], task
    policy.infer(obs)["actions"].shape  # (H, 6)

The checkpoint is loaded through LeRobot's own API (PreTrainedConfig.from_pretrained, get_policy_class(...)
.from_pretrained, make_pre_post_processors(pretrained_path=...)), with its saved pre- and post-processors. `infer`
builds exactly the tensors `lerobot-eval` builds (lerobot.envs.utils.preprocess_observation: HWC uint8 -> BCHW float32
in [0, 1]; plus "task"), runs the preprocessor, the policy and the postprocessor, and returns numpy.

Two ways to ask, chosen from the checkpoint:
- chunk (ACT, pi0, SmolVLA, ...: one observation in, a chunk out): `predict_action_chunk` once per `infer`, the first
  `horizon` rows (default the policy's own n_action_steps, which is what lerobot-eval executes); genba's loop executes
  the chunk (eval/serve's n_action_steps and blend apply). Stateless, so it has `infer_batch` and the server shares it.
- step (Diffusion Policy, VQ-BeT, TD-MPC, ACT with temporal ensembling: a history of observations): these read the
  last n_obs_steps observations, one per control step, from queues that `select_action` fills. genba's loop only
  calls `infer` when it needs a new chunk, so a chunk-per-call adapter would feed them observations n_action_steps
  apart (or one copied twice) where they were trained on consecutive ones. Here horizon is 1 and every `infer` is
  `select_action`: the policy keeps its own history and action queue, exactly as in lerobot-eval. One per client.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from genba import keys
from genba.errors import GenbaError
from genba.io import one_line
from genba.policies.spec import ActionSpec, Feature, InputSpec

PREFIX = "lerobot:"  # policy=lerobot:<path> (genba.policies.registry)
CHECKPOINT_FILES = ("config.json", "model.safetensors", "policy_preprocessor.json", "policy_postprocessor.json")
RUN_CHECKPOINT = "checkpoints/last/pretrained_model"  # where lerobot-train (and `genba baseline`) put the last one
DEFAULT_FPS = 10.0  # when the training dataset's meta/info.json cannot be read (genba's env runs at 10 Hz)


def find_checkpoint(path: str | Path) -> Path:
    """The pretrained_model folder at `path` (itself, <path>/pretrained_model or a run's last checkpoint); a one-line
    GenbaError naming the files it lacks otherwise."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise GenbaError(f"policy={PREFIX}{path}: no such folder (expected a LeRobot checkpoint: a pretrained_model "
                         "folder or a lerobot-train run)")  # fmt: skip
    for candidate in (root, root / "pretrained_model", root / RUN_CHECKPOINT):
        if (candidate / "config.json").is_file():
            root = candidate
            break
    missing = [name for name in CHECKPOINT_FILES if not (root / name).is_file()]
    if missing:
        old = "config.json" not in missing and "model.safetensors" not in missing  # weights but no processors
        hint = " (saved before LeRobot's processors: lerobot.processor.migrate_policy_normalization converts it)"
        raise GenbaError(f"policy={PREFIX}{path} is not a LeRobot policy checkpoint: no {', '.join(missing)} in "
                         f"{root}{hint if old else ''}")  # fmt: skip
    return root


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise GenbaError(f"device={device}: torch sees no CUDA device (use device=cpu or auto)")
    if device != "cpu" and not device.startswith("cuda"):
        raise GenbaError(f"device={device!r} is not one of cpu, cuda, cuda:<n>, auto")
    return device


class LeRobotPolicy:
    """A LeRobot checkpoint behind genba's policy contract (genba.policies.contract).

    path: a pretrained_model folder or a lerobot-train run folder. device: cpu, cuda or auto (cuda when there is one).
    horizon: rows of each chunk returned (chunk policies; default the policy's n_action_steps, at most the chunk it
    predicts). fps: the action spec's rate (default: the training dataset's, read from train_config.json).
    """

    def __init__(
        self, path: str | Path, device: str = "auto", horizon: int | None = None, fps: float | None = None
    ) -> None:
        import torch
        from lerobot.configs.policies import PreTrainedConfig
        from lerobot.policies.factory import get_policy_class, make_pre_post_processors

        self.path = find_checkpoint(path)
        self.device = resolve_device(device)
        try:
            cfg = PreTrainedConfig.from_pretrained(self.path)
            cfg.pretrained_path = self.path
            cfg.device = self.device
            # LeRobot print()s "Loading weights from local directory": not on genba's stdout (the summary path comes
            # last there) nor its stderr (one-line errors)
            with contextlib.redirect_stdout(io.StringIO()):
                self.policy = get_policy_class(cfg.type).from_pretrained(self.path, config=cfg)
            self.policy.eval()
            overrides = {"device_processor": {"device": self.device}}
            self.preprocessor, self.postprocessor = make_pre_post_processors(
                cfg,
                pretrained_path=str(self.path),
                preprocessor_overrides=_present(self.path / CHECKPOINT_FILES[2], overrides),
                postprocessor_overrides=_present(self.path / CHECKPOINT_FILES[3], overrides),
            )
        except GenbaError:
            raise
        except Exception as e:  # a corrupt or incompatible checkpoint: say so in one line, not a traceback
            why = f"{type(e).__name__}: {one_line(e)}"
            raise GenbaError(f"policy={PREFIX}{path}: LeRobot cannot load it: {why}") from None
        self.config = cfg
        self.name = f"lerobot-{cfg.type}"
        self._torch = torch
        self.policy.reset()  # creates the queues _needs_every_step looks at
        self.stepwise = _needs_every_step(self.policy, cfg)
        chunk = _chunk_length(cfg)
        if self.stepwise:
            rows = 1
        else:
            rows = horizon or int(cfg.n_action_steps)
            if not 1 <= rows <= chunk:
                raise GenbaError(f"horizon={rows}: {self.name} predicts chunks of {chunk} actions (1..{chunk})")
            self.infer_batch = self._infer_batch  # stateless: the server may share one instance and batch clients
        self.horizon = rows
        self.input_spec = _input_spec(cfg, language=_reads_language(self.path / CHECKPOINT_FILES[2]))
        action = cfg.output_features.get(keys.ACTION)
        if action is None or len(action.shape) != 1:
            raise GenbaError(f"policy={PREFIX}{path}: {self.name} has no 1-D output feature {keys.ACTION!r}")
        dim = int(action.shape[0])
        genba_arm = dim == len(keys.JOINTS)  # LeRobot configs name no joints or units: assume the genba arm's
        self.action_spec = ActionSpec(
            horizon=rows,
            dim=dim,
            names=keys.JOINTS if genba_arm else tuple(f"action_{i}" for i in range(dim)),
            fps=float(fps or _dataset_fps(self.path)),
            units=ActionSpec.units if genba_arm else "as in the training dataset",
        )

    def reset(self) -> None:  # a new episode: clears the policy's observation history and action queue
        self.policy.reset()

    def infer(self, obs: dict[str, Any]) -> dict[str, np.ndarray]:  # {"actions": (H, A) float32}
        return self._infer_batch([obs])[0]

    def _infer_batch(self, batch: list[dict[str, Any]]) -> list[dict[str, np.ndarray]]:
        torch = self._torch
        inputs = self.preprocessor(self.to_lerobot(batch))
        with torch.inference_mode():
            if self.stepwise:
                chunk = self.policy.select_action(inputs)[:, None]  # (B, 1, A)
            else:
                chunk = self.policy.predict_action_chunk(inputs)[:, : self.horizon]  # (B, H, A)
            # one row at a time, as lerobot-eval and LeRobot's policy server do: postprocessor steps take (B, A)
            rows = [self.postprocessor(chunk[:, i]) for i in range(chunk.shape[1])]
        actions = torch.stack(rows, dim=1).to("cpu", torch.float32).numpy()  # (B, H, A)
        return [{keys.ACTIONS: a} for a in actions]

    def to_lerobot(self, batch: list[dict[str, Any]]) -> dict[str, Any]:
        """genba observations (LeRobot keys, numpy, no batch dim) -> what lerobot-eval gives the preprocessor:
        preprocess_observation's tensors (images (B, C, H, W) float32 in [0, 1], state (B, S)) plus "task" (B,)."""
        from lerobot.envs.utils import preprocess_observation

        env_obs: dict[str, Any] = {}  # the vectorized gym observation lerobot-eval would have received
        prefix = keys.OBS_IMAGES + "."
        for key in self.input_spec.features:
            if key == keys.TASK or key not in batch[0]:
                continue
            stacked = np.stack([o[key] for o in batch])  # (B, ...)
            if key.startswith(prefix):
                env_obs.setdefault(keys.PIXELS, {})[key[len(prefix) :]] = stacked
            elif key == "observation.image":  # single-camera checkpoints (e.g. pusht)
                env_obs[keys.PIXELS] = stacked
            elif key == keys.OBS_STATE:
                env_obs[keys.AGENT_POS] = stacked
            elif key == keys.OBS_ENV_STATE:
                env_obs[keys.ENV_STATE] = stacked
            else:  # preprocess_observation passes other arrays through as observation.<rest>
                env_obs[key.removeprefix(keys.OBSERVATION + ".")] = stacked
        out = preprocess_observation(env_obs)
        out[keys.TASK] = [str(o.get(keys.TASK, "")) for o in batch]  # lerobot-eval's fallback is "" too
        return out


def _present(processor_json: Path, overrides: dict[str, dict]) -> dict[str, dict]:
    """The overrides whose step the saved pipeline has (LeRobot rejects overrides of absent steps)."""
    steps = {s.get("registry_name") for s in json.loads(processor_json.read_text()).get("steps", [])}
    return {k: v for k, v in overrides.items() if k in steps}


def _reads_language(preprocessor_json: Path) -> bool:
    """Whether the preprocessor tokenizes or rewrites the instruction (pi0, pi05, SmolVLA, X-VLA, ...)."""
    steps = json.loads(preprocessor_json.read_text()).get("steps", [])
    return any("tokenizer" in str(s.get("registry_name")) or "task" in str(s.get("registry_name")) for s in steps)


def _needs_every_step(policy: Any, cfg: Any) -> bool:
    """True for policies that must see every control step's observation (see the module docstring)."""
    from lerobot.policies.pretrained import PreTrainedPolicy

    history = [k for k in (getattr(policy, "_queues", None) or {}) if k != keys.ACTION]  # observation queues
    own_chunk = type(policy).predict_action_chunk is not PreTrainedPolicy.predict_action_chunk
    return bool(
        history
        or getattr(cfg, "n_obs_steps", 1) > 1
        or getattr(cfg, "temporal_ensemble_coeff", None) is not None
        or getattr(cfg, "n_action_steps", None) is None  # single-action policies (e.g. the SAC actor)
        or not own_chunk
    )


def _chunk_length(cfg: Any) -> int:
    """Rows predict_action_chunk returns: chunk_size where the config has one, else n_action_steps."""
    return int(getattr(cfg, "chunk_size", None) or getattr(cfg, "n_action_steps", None) or 1)


def _input_spec(cfg: Any, language: bool) -> InputSpec:
    """LeRobot's input features as genba observation features: VISUAL (C, H, W) -> uint8 (H, W, C) (what a camera
    gives; preprocess_observation makes the float), everything else float32 of its shape."""
    from lerobot.configs.types import FeatureType

    features: dict[str, Feature] = {}
    for key, feat in cfg.input_features.items():
        if feat.type is FeatureType.LANGUAGE:
            continue  # the instruction arrives as "task"
        if feat.type is FeatureType.VISUAL:
            c, h, w = feat.shape
            features[key] = Feature("uint8", (int(h), int(w), int(c)))
        else:
            features[key] = Feature("float32", tuple(int(n) for n in feat.shape))
    features[keys.TASK] = Feature("str", required=language, description="the instruction")
    return InputSpec(features)


def _dataset_fps(checkpoint: Path) -> float:
    """The training dataset's fps (train_config.json -> dataset root -> meta/info.json), else DEFAULT_FPS."""
    try:
        train = json.loads((checkpoint / "train_config.json").read_text())
        info = Path(train["dataset"]["root"]) / "meta" / "info.json"
        return float(json.loads(info.read_text())["fps"])
    except Exception:  # no train config, a dataset on another machine, or from the Hub: the control rate is unknown
        return DEFAULT_FPS
