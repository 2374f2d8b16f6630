"""`genba bench policy`: the VLA preset's training step time and its latency per action chunk.

    genba bench policy preset=tiny device=cpu threads=2
    genba bench policy preset=small device=cuda

Batches are random frames (two 64x64 or 128x128 cameras, as the preset's backbone), 6-D states and action chunks
of the preset's horizon, and instructions in English and Japanese: a step's cost does not depend on the values.
Reported (medians over `repeats`, after `warmup`): step_ms (loss + backward + AdamW; bf16 autocast on CUDA as in
training), samples_per_s, minutes_per_run (the preset's steps at that rate), and chunk_ms / chunk_ms_p99: one
observation to one chunk as `genba eval` and the server ask for it (the prefix once, then `flow_steps` expert passes,
or one for the L1 head), measured over `chunks` calls.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from genba.errors import GenbaError


@dataclass
class BenchPolicyConfig:
    preset: str = field(default="tiny", metadata={"help": "tiny or small"})
    batch_size: int = field(default=0, metadata={"help": "samples per training step (0 = the preset's)"})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda"})
    threads: int = field(default=0, metadata={"help": "torch CPU threads (0 = torch's default)"})
    warmup: int = field(default=2, metadata={"help": "untimed steps (and chunks) first"})
    repeats: int = field(default=6, metadata={"help": "timed training steps (median reported)"})
    chunks: int = field(default=30, metadata={"help": "timed single-observation chunks"})
    out: str | None = field(default=None, metadata={"help": "summary path (.json) or directory"})

    def __post_init__(self) -> None:
        from genba.policies.train_command import PRESETS

        if self.preset not in PRESETS:
            raise GenbaError(f"preset={self.preset!r} (valid: {', '.join(PRESETS)})")
        if self.device not in ("auto", "cpu", "cuda"):
            raise GenbaError(f"device={self.device!r}: one of auto, cpu, cuda")
        if min(self.repeats, self.chunks) < 1 or self.warmup < 0 or self.batch_size < 0:
            raise GenbaError("repeats and chunks must be >= 1; warmup and batch_size >= 0")


def run_bench_policy(cfg: BenchPolicyConfig) -> dict:

    import torch

    from genba import keys
    from genba.policies.train_command import PRESET_DIR
    from genba.policies.vla import VLA, VLAConfig
    from genba.worldmodel.backbone import BackboneConfig
    from genba.worldmodel.bench import bench_device, machine, median_seconds, timed, training_step
    from genba.worldmodel.model import count_params
    from genba.worldmodel.train_command import load_preset

    device = bench_device(cfg.device, cfg.threads)
    preset = load_preset(cfg.preset, PRESET_DIR)
    fields = dict(preset["model"])
    size = fields["backbone"]["image_size"]
    from genba.sim.scene import ENV_STATE_DIM

    locate = bool(fields.get("w_locate"))  # the environment state's size comes from the data: genba's, here
    fields.update(backbone=BackboneConfig(**fields["backbone"]), image_size=size,
                  **({"env_state_dim": ENV_STATE_DIM} if locate or fields.get("w_env_state") else {}))  # fmt: skip
    model_cfg = VLAConfig(**fields)
    torch.manual_seed(0)
    model = VLA(model_cfg).to(device)
    b = cfg.batch_size or preset["train"]["batch_size"]
    batch = {keys.image_key(c): torch.randint(0, 256, (b, 1, 3, size, size), dtype=torch.uint8, device=device)
             for c in model_cfg.cameras}  # fmt: skip
    batch[model_cfg.state_key] = torch.randn(b, 1, model_cfg.state_dim, device=device)
    batch[model_cfg.action_key] = torch.randn(b, model_cfg.horizon, model_cfg.action_dim, device=device)
    batch[keys.TASK] = (["put the red cube in the blue bin", "赤いキューブを青い箱に入れて"] * b)[:b]
    if model_cfg.env_state_dim:
        batch[model_cfg.env_state_key] = torch.randn(b, 1, model_cfg.env_state_dim, device=device)
    if locate:  # the relabelled queries of genba.policies.relabel, one per sample
        batch[keys.LOCATE_TASK] = (["put the green ball in the blue bin", "緑のボールを青い箱に入れて"] * b)[:b]
        batch[keys.LOCATE_SLOT] = torch.arange(b, device=device) % 2 * 2  # slots 0 and 2
    cuda = device.type == "cuda"
    model.train()
    step_s = median_seconds(training_step(model, batch, cuda), cuda, cfg.warmup, cfg.repeats)

    model.eval()
    one = {c: batch[keys.image_key(c)][:1, 0] for c in model_cfg.cameras}
    state, task = batch[model_cfg.state_key][:1, 0], batch[keys.TASK][:1]

    def chunk() -> None:
        model.sample(one, state, task, generator=torch.Generator().manual_seed(0))

    for _ in range(cfg.warmup):
        chunk()
    times = sorted(timed(chunk, cuda) for _ in range(cfg.chunks))
    steps = preset["train"]["steps"]
    return {
        "preset": cfg.preset,
        "params": count_params(model),
        "batch_size": b,
        "head": model_cfg.head,
        "flow_steps": model_cfg.flow_steps,
        "step_ms": round(step_s * 1e3, 2),
        "samples_per_s": round(b / step_s, 2),
        "minutes_per_run": round(steps * step_s / 60, 1),
        "chunk_ms": round(statistics.median(times) * 1e3, 2),
        "chunk_ms_p99": round(times[min(len(times) - 1, int(0.99 * len(times)))] * 1e3, 2),
        **machine(device),
    }
