"""`genba baseline`: LeRobot's ACT or Diffusion Policy trained by `lerobot-train` itself on a LeRobotDataset v3.

    genba baseline algo=act data=outputs/reach out=runs/act-reach steps=2000
    genba eval task=reach policy=lerobot:runs/act-reach                       # genba's evaluation
    lerobot-eval --env.type=genba --env.task=reach --policy.path=runs/act-reach/checkpoints/last/pretrained_model

The run is LeRobot's own (`python -m lerobot.scripts.lerobot_train`, offline, wandb off): its output folder, its log
(`<out>/train.log`), its checkpoint format (`<out>/checkpoints/last/pretrained_model`, with the policy's saved pre-
and post-processors). Nothing is downloaded: vision backbones start from random weights. Each algo's model is sized
for a CPU (ALGOS below: a smaller transformer for ACT, a smaller U-Net and 16-step horizon for Diffusion Policy);
`args="['--policy.dim_model=512','--lr=1e-4']"` (quoted: Hydra's grammar) passes any other lerobot-train option
through; the last of a repeated option wins.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from genba.errors import GenbaError

# lerobot-train options of each algo, sized for a 2-core CPU; random backbones (no downloads).
ALGOS: dict[str, list[str]] = {
    "act": [
        "--policy.type=act",
        "--policy.pretrained_backbone_weights=null",
        "--policy.dim_model=256",
        "--policy.dim_feedforward=1024",
        "--policy.chunk_size=20",
        "--policy.n_action_steps=10",
    ],
    "diffusion": [
        "--policy.type=diffusion",
        "--policy.pretrained_backbone_weights=null",
        "--policy.down_dims=[128,256,512]",
        "--policy.horizon=16",
        "--policy.n_action_steps=8",
        "--policy.drop_n_last_frames=7",  # horizon - n_action_steps - n_obs_steps + 1
        "--policy.num_inference_steps=10",
    ],
}
CHECKPOINT = "checkpoints/last/pretrained_model"


@dataclass
class BaselineConfig:
    algo: str = field(default="act", metadata={"help": f"LeRobot policy to train: {', '.join(ALGOS)}"})
    data: str = field(default="", metadata={"help": "LeRobotDataset v3 folder (genba collect's, or any)"})
    out: str = field(default="", metadata={"help": "run folder (must not exist yet); default outputs/<algo>-<name>"})
    steps: int = field(default=2000, metadata={"help": "training steps"})
    batch_size: int = field(default=8, metadata={"help": "batch size"})
    device: str = field(default="auto", metadata={"help": "cpu, cuda, or auto (cuda when there is one)"})
    seed: int = field(default=1000, metadata={"help": "training seed"})
    threads: int = field(
        default=0, metadata={"help": "CPU threads of torch (OMP_NUM_THREADS); 0: torch's default (all cores)"}
    )
    args: list[str] = field(default_factory=list, metadata={"help": "more lerobot-train options: \"['--lr=1e-4']\""})
    timeout_s: int = field(
        default=0, metadata={"help": "stop lerobot-train after this many seconds with a one-line error; 0: no limit"}
    )

    def __post_init__(self) -> None:
        if self.algo not in ALGOS:
            raise ValueError(f"unknown algo {self.algo!r} (valid: {', '.join(ALGOS)})")
        if not self.data:
            raise ValueError("data=<dataset folder> is required")
        for name in ("threads", "timeout_s"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)!r} must be an integer >= 0")
        for name in ("steps", "batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r} must be an integer >= 1")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device={self.device!r} is not one of auto, cpu, cuda")
        bad = [a for a in self.args if not str(a).startswith("--")]
        if bad:
            raise ValueError(f"args: {bad[0]!r} is not a lerobot-train option (--key=value)")
        if not self.out:
            self.out = f"outputs/{self.algo}-{Path(self.data).name}"

    def summary_path(self) -> str:
        return str(Path(self.out) / "summary.json")


def train_command(cfg: BaselineConfig, device: str) -> list[str]:
    """The lerobot-train command line of a run."""
    from genba.datasets.writer import repo_id_for

    return [
        sys.executable, "-m", "lerobot.scripts.lerobot_train",
        f"--dataset.repo_id={repo_id_for(cfg.data)}", f"--dataset.root={Path(cfg.data).resolve()}",
        *ALGOS[cfg.algo],
        f"--policy.device={device}", "--policy.push_to_hub=false",
        f"--output_dir={Path(cfg.out).resolve()}", f"--steps={cfg.steps}", f"--batch_size={cfg.batch_size}",
        f"--save_freq={cfg.steps}", f"--log_freq={max(1, min(100, cfg.steps // 20))}", f"--seed={cfg.seed}",
        "--num_workers=0", "--wandb.enable=false", "--env_eval_freq=0",
        *cfg.args,
    ]  # fmt: skip


def run_baseline(cfg: BaselineConfig) -> dict:
    data, out = Path(cfg.data), Path(cfg.out)
    if not (data / "meta" / "info.json").is_file():
        raise GenbaError(f"data={data} is not a LeRobotDataset v3 folder (no meta/info.json)")
    if out.exists() and any(p.name != "summary.json" for p in out.iterdir()):
        raise GenbaError(f"out={out} already holds a run; choose a new folder (lerobot-train never overwrites)")
    device = cfg.device if cfg.device != "auto" else _auto_device()
    cmd = train_command(cfg, device)
    # lerobot-train creates output_dir itself and refuses an existing one: the log sits beside it until it is done.
    if out.is_dir():
        for leftover in out.iterdir():  # at most a summary.json of a failed run
            leftover.unlink()
        out.rmdir()
    out.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "WANDB_MODE": "disabled"}
    if cfg.threads:  # on a busy 2-core machine one thread per run measured 10x faster than torch's two (0.43 vs ~5 s)
        env["OMP_NUM_THREADS"] = str(cfg.threads)
    log_path = out.with_name(out.name + ".train.log")
    print(f"genba baseline: {cfg.algo} on {data} for {cfg.steps} steps on {device}; log {log_path}", file=sys.stderr)
    started = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        try:
            proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, check=False,
                                  timeout=cfg.timeout_s or None)  # fmt: skip
        except subprocess.TimeoutExpired:  # run() has killed it; its log and any checkpoint it saved stay
            raise GenbaError(
                f"lerobot-train ran past timeout_s={cfg.timeout_s} and was stopped (log so far: {log_path})"
            ) from None
    seconds = time.perf_counter() - started
    text = log_path.read_text(encoding="utf-8", errors="replace")
    if proc.returncode != 0:
        last = [line for line in text.splitlines() if line.strip()][-1:] or ["(no output)"]
        raise GenbaError(f"lerobot-train failed (exit {proc.returncode}): {last[0][:300]} (full log: {log_path})")
    out.mkdir(parents=True, exist_ok=True)
    log_path.replace(out / "train.log")
    losses = re.findall(r"step:(\d+)\S* .*? loss:([0-9.]+)", text)
    return {
        "algo": cfg.algo,
        "checkpoint": str(out / CHECKPOINT),
        "device": device,
        "steps": cfg.steps,
        "train_seconds": round(seconds, 1),
        "threads": cfg.threads or None,
        "final_loss": float(losses[-1][1]) if losses else None,
        "lerobot_train": " ".join(cmd[1:]),
        "config": asdict(cfg),
    }


def _auto_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
