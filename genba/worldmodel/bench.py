"""`genba bench worldmodel`: training samples/s and rollout frames/s of a preset's world model.

    genba bench worldmodel preset=tiny device=cpu threads=2
    genba bench worldmodel preset=small device=cuda backend=triton        # then backend=flex, same run settings
    genba bench worldmodel preset=small device=cuda compile=inductor      # the loss through torch.compile

Batches are random frames, states and actions of the preset's shapes (two cameras, 6-D state and action, like
genba's arm): the cost of a step does not depend on the pixel values. Reported (medians over `repeats` timed
steps, after `warmup`): step_ms (loss + backward + AdamW, bf16 autocast on CUDA as in training), samples_per_s
(clips), tokens_per_s (dynamics tokens: clip_frames x tokens_per_frame per clip), and on CUDA the model FLOPs
utilization: FLOPs of one step counted by torch's FlopCounterMode over the step time, against `peak_tflops`
(default: 989, the dense bf16 peak of an H100/H200 SXM). The count always goes through the Triton op, whose
formula counts attention's unmasked pairs only, so every backend is divided into the same model FLOPs (dense sdpa
with a mask and FlexAttention would otherwise be credited with masked or no attention FLOPs). Rollout: frames
predicted per second by `rollout` (context_frames real frames, then `horizon` frames autoregressively with the KV
cache), batch `rollout_batch`.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import dataclass, field

from genba.errors import GenbaError

H100_BF16_TFLOPS = 989.0


@dataclass
class BenchWorldModelConfig:
    preset: str = field(default="tiny", metadata={"help": "tiny, small or base"})
    batch_size: int = field(default=0, metadata={"help": "clips per training step (0 = the preset's)"})
    device: str = field(default="auto", metadata={"help": "auto, cpu or cuda"})
    backend: str = field(default="auto", metadata={"help": "attention backend: auto, sdpa, flex, triton, reference"})
    threads: int = field(default=0, metadata={"help": "torch CPU threads (0 = torch's default)"})
    compile: str = field(
        default="",
        metadata={"help": "torch.compile the loss with this backend (inductor, aot_eager, ...); empty = eager"},
    )
    warmup: int = field(default=2, metadata={"help": "untimed steps first"})
    repeats: int = field(default=5, metadata={"help": "timed training steps (median reported)"})
    horizon: int = field(default=16, metadata={"help": "frames per timed rollout"})
    rollout_batch: int = field(default=8, metadata={"help": "rollouts run together"})
    peak_tflops: float = field(default=H100_BF16_TFLOPS, metadata={"help": "device peak for MFU (CUDA only)"})
    out: str | None = field(default=None, metadata={"help": "summary path (.json) or directory"})

    def __post_init__(self) -> None:
        from genba.worldmodel.train_command import PRESETS

        if self.preset not in PRESETS:
            raise GenbaError(f"preset={self.preset!r} (valid: {', '.join(PRESETS)})")
        if self.device not in ("auto", "cpu", "cuda"):
            raise GenbaError(f"device={self.device!r}: one of auto, cpu, cuda")
        if self.compile:
            import torch._dynamo

            backends = torch._dynamo.list_backends(exclude_tags=())
            if self.compile not in backends:
                raise GenbaError(
                    f"compile={self.compile!r}: not a torch.compile backend (inductor, aot_eager, eager, ...)"
                )
        if min(self.repeats, self.horizon, self.rollout_batch) < 1 or self.warmup < 0 or self.batch_size < 0:
            raise GenbaError("repeats, horizon and rollout_batch must be >= 1; warmup and batch_size >= 0")


def random_batch(cfg, batch_size: int, device) -> dict:
    """Random clips of the model's shapes: frames (B, 1|T-1, 3, H, W) uint8, state, action, task."""
    import torch

    from genba import keys

    t, s, h = cfg.clip_frames, cfg.image_size, cfg.image_size
    out: dict = {}
    for cam in cfg.cameras:
        frames = torch.randint(0, 256, (batch_size, t, 3, s, h), dtype=torch.uint8, device=device)
        out[keys.image_key(cam)], out[keys.future_image_key(cam)] = frames[:, :1], frames[:, 1:]
    state = torch.randn(batch_size, t, cfg.state_dim, device=device)
    out[cfg.state_key], out[keys.FUTURE_STATE] = state[:, :1], state[:, 1:]
    out[cfg.action_key] = torch.randn(batch_size, t, cfg.action_dim, device=device)
    out[keys.TASK] = ["put the red cube in the blue bin", "赤いキューブを青い箱に入れて"] * (batch_size // 2 + 1)
    out[keys.TASK] = out[keys.TASK][:batch_size]
    return out


def bench_device(name: str, threads: int = 0):  # -> torch.device
    """The device a benchmark runs on (auto: cuda when there is one), with `threads` torch CPU threads (0: as is)."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    if name == "cuda" and not torch.cuda.is_available():
        raise GenbaError("device=cuda but no CUDA device is available")
    return torch.device("cuda" if name == "auto" and torch.cuda.is_available() else name.replace("auto", "cpu"))


def timed(fn, cuda: bool) -> float:
    """Seconds `fn()` takes, the device synchronized before and after on CUDA."""
    import torch

    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def training_step(model, batch: dict, cuda: bool, compile_backend: str = ""):  # -> Callable[[], None]
    """One training step of `model` on a fixed batch (loss, backward, AdamW; bf16 autocast on CUDA), as a closure;
    with `compile_backend`, the loss (forward and backward) through torch.compile (its first calls compile)."""
    import contextlib

    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext()
    loss_of = torch.compile(model.loss, backend=compile_backend) if compile_backend else model.loss

    def step() -> None:
        with autocast:
            loss, _ = loss_of(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def median_seconds(fn, cuda: bool, warmup: int, repeats: int) -> float:
    """`fn` run `warmup` times untimed, then the median of `repeats` timed runs, in seconds."""
    for _ in range(warmup):
        fn()
    return statistics.median(timed(fn, cuda) for _ in range(repeats))


def machine(device) -> dict:
    """What a benchmark ran on: device name, torch threads, CPUs, torch version."""
    import torch

    cuda = device.type == "cuda"
    return {
        "device": torch.cuda.get_device_name(device) if cuda else (platform.processor() or platform.machine()),
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
    }


def run_bench_worldmodel(cfg: BenchWorldModelConfig) -> dict:
    import contextlib

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from genba import keys
    from genba.worldmodel.model import WorldModel, WorldModelConfig, count_params
    from genba.worldmodel.train_command import load_preset

    device = bench_device(cfg.device, cfg.threads)
    preset = load_preset(cfg.preset)
    torch.manual_seed(0)
    model_cfg = WorldModelConfig(**{**preset["model"], "backend": cfg.backend})
    model = WorldModel(model_cfg).to(device)
    batch_size = cfg.batch_size or preset["train"]["batch_size"]
    batch = random_batch(model_cfg, batch_size, device)
    cuda = device.type == "cuda"
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext()
    step = training_step(model, batch, cuda, cfg.compile)
    model.train()
    step_s = median_seconds(step, cuda, cfg.warmup, cfg.repeats)
    flops = None
    if cuda:  # the model's FLOPs, the same whatever the backend or compile: one eager step through our op
        model.config.backend = "triton"
        with FlopCounterMode(display=False) as counter:
            training_step(model, batch, cuda)()
        model.config.backend = cfg.backend
        flops = counter.get_total_flops()

    model.eval()
    c, k = model_cfg.context_frames, cfg.horizon
    rb = random_batch(model_cfg, cfg.rollout_batch, device)
    images = {cam: rb[keys.image_key(cam)].expand(-1, c, -1, -1, -1).contiguous() for cam in model_cfg.cameras}
    state = rb[model_cfg.state_key].expand(-1, c, -1).contiguous()
    actions = torch.randn(cfg.rollout_batch, c + k - 1, model_cfg.action_dim, device=device)

    def roll() -> None:
        with autocast:
            model.rollout(images, state, actions, rb["task"], k)

    roll()
    roll_s = statistics.median(timed(roll, cuda) for _ in range(max(1, cfg.repeats // 2)))
    tokens = batch_size * model_cfg.clip_frames * model_cfg.tokens_per_frame
    return {
        "preset": cfg.preset,
        "params": count_params(model),
        "batch_size": batch_size,
        "backend": cfg.backend,
        "compile": cfg.compile or None,
        "step_ms": round(step_s * 1e3, 2),
        "samples_per_s": round(batch_size / step_s, 2),
        "tokens_per_s": round(tokens / step_s, 1),
        "step_tflop": None if flops is None else round(flops / 1e12, 4),
        "mfu": None if flops is None else round(flops / step_s / (cfg.peak_tflops * 1e12), 4),
        "rollout_frames_per_s": round(cfg.rollout_batch * k / roll_s, 2),
        "rollout_ms": round(roll_s * 1e3, 1),
        **machine(device),
    }
