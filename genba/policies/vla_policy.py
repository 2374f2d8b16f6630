"""A trained VLA run as a genba policy: `genba eval policy=<run>`, `genba serve policy=<run>`, the robot client.

    from genba.policies.vla_policy import VLAPolicy

    policy = VLAPolicy("runs/vla-pick_place")            # the run folder (its last/ checkpoint) or a checkpoint
    policy.reset()
    chunk = policy.infer(obs)["actions"]                  # (n_action_steps, A) float32, raw joint units

The input spec is read from the checkpoint: each camera as `observation.images.<cam>` uint8 (S, S, 3) at the size the
training data had, `observation.state` float32 (S,), and `task` (the instruction; required: the VLA is grounded in
it). A policy trained with `instruction_modality=audio` reads `observation.audio` (the spoken instruction, float32
16 kHz mono, with its `observation.audio_sample_rate`) instead of `task`; with `both`, `task` and `observation.audio`
form a `one_of` group (genba.policies.spec.audio_feature): either or both. With `ema="auto"` (the default) a
checkpoint trained with `ema > 0` acts with its EMA weights (the exponential moving average the loop keeps beside
the raw ones), as diffusion and flow policies usually do. The action spec hands
out the first `n_action_steps` rows of each predicted chunk of H, at the data's fps.

The flow sampler's noise comes from a generator reseeded at every `reset()`: in the episode loop (genba eval, one
policy per worker) an episode's actions depend only on its observations, never on the episodes before it. A server
shares one instance between its clients (the VLA batches), and a client's reset does not reach it; serve with
`per_connection=true` for that.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from genba import keys
from genba.errors import GenbaError
from genba.policies.spec import INSTRUCTION, ActionSpec, Feature, InputSpec, audio_feature
from genba.policies.vla import KIND
from genba.train.loop import LAST

SAMPLER_SEED = 0


def checkpoint_folder(path: str | Path) -> Path:
    """A run folder -> its last/ checkpoint; a checkpoint folder as it is; otherwise one line."""
    path = Path(path).expanduser()
    if (path / "config.json").is_file():
        return path
    if (path / LAST / "config.json").is_file():
        return path / LAST
    raise GenbaError(f"{path} is neither a training run (with {LAST}/config.json) nor a checkpoint folder")


def is_vla_run(path: str) -> bool:
    """Whether `path` names a VLA run or checkpoint (a folder whose config.json says kind "vla")."""
    import json

    try:
        folder = checkpoint_folder(path)
        return json.loads((folder / "config.json").read_text(encoding="utf-8")).get("kind") == KIND
    except (GenbaError, OSError, ValueError):
        return False


def has_ema(folder: Path) -> bool:
    """Whether a checkpoint keeps EMA weights (trained with ema > 0; kept in trainer.safetensors for resume)."""
    from safetensors import safe_open

    from genba.train.checkpoint import TRAINER_TENSORS

    file = folder / TRAINER_TENSORS
    if not file.is_file():
        return False
    with safe_open(str(file), framework="pt") as f:
        return any(k.startswith("ema.") for k in f.keys())  # noqa: SIM118 (safe_open has keys(), no __iter__)


class VLAPolicy:
    def __init__(
        self, run: str, n_action_steps: int | None = None, device: str = "cpu", threads: int = 0, ema: str = "auto"
    ) -> None:
        import genba.policies.vla  # noqa: F401  (registers the kind)
        from genba.train.checkpoint import load_model

        if threads:
            torch.set_num_threads(threads)
        self.device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                                   "cpu" if device == "auto" else device)  # fmt: skip
        folder = checkpoint_folder(run)
        if ema not in ("auto", "yes", "no"):
            raise GenbaError(f"ema={ema!r} (valid: auto, yes, no)")
        self.ema = ema == "yes" or (ema == "auto" and has_ema(folder))
        self.model, cfg = load_model(folder, kind=KIND, device=self.device, ema=self.ema)
        self.config = cfg
        steps = n_action_steps or cfg.n_action_steps
        if not 1 <= steps <= cfg.horizon:
            raise GenbaError(f"n_action_steps={steps}: the policy predicts {cfg.horizon} actions per chunk")
        self.name = f"vla:{Path(run).name}"
        s = cfg.image_size
        feats = {keys.image_key(c): Feature("uint8", (s, s, 3)) for c in cfg.cameras}
        feats[cfg.state_key] = Feature("float32", (cfg.state_dim,))
        if cfg.instruction_modality == "text":
            feats[keys.TASK] = Feature("str", description="the instruction, any language")
        elif cfg.instruction_modality == "both":
            feats[keys.TASK] = Feature("str", required=False, description="the instruction, any language",
                                       one_of=INSTRUCTION)  # fmt: skip
        if cfg.spoken:
            feats[keys.OBS_AUDIO] = audio_feature()
        self.instruction_modality = cfg.instruction_modality
        self.input_spec = InputSpec(feats)
        self.action_spec = ActionSpec(horizon=steps, dim=cfg.action_dim, fps=cfg.fps)
        self.generator = torch.Generator()
        self.reset()

    def reset(self) -> None:
        self.generator.manual_seed(SAMPLER_SEED)

    def infer(self, obs: dict[str, Any]) -> dict[str, np.ndarray]:
        return self.infer_batch([obs])[0]

    def infer_batch(self, batch: list[dict[str, Any]]) -> list[dict[str, np.ndarray]]:
        cfg = self.config
        images = {
            c: torch.from_numpy(np.stack([o[keys.image_key(c)] for o in batch])).permute(0, 3, 1, 2).to(self.device)
            for c in cfg.cameras
        }  # each (B, 3, H, W) uint8
        state = torch.from_numpy(np.stack([o[cfg.state_key] for o in batch])).float().to(self.device)  # (B, S)
        tasks = [str(o.get(keys.TASK, "")) for o in batch]
        audio = use_text = None
        if cfg.spoken:  # waves (B, T) zero-padded, lengths (B,): 0 where a sample sent no speech
            from genba.worldmodel.spoken import pad

            waves = [np.array(o.get(keys.OBS_AUDIO, np.zeros(0, np.float32)), np.float32) for o in batch]  # copies
            padded, lengths = pad(waves)
            audio = (padded.to(self.device), lengths.to(self.device))
            use_text = torch.tensor([keys.TASK in o for o in batch])
        chunk = self.model.sample(images, state, tasks, generator=self.generator, audio=audio, use_text=use_text)
        rows = chunk[:, : self.action_spec.horizon].float().cpu().numpy()
        return [{keys.ACTIONS: r.astype(np.float32)} for r in rows]
