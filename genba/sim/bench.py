"""`genba bench sim`: how fast the simulation runs, and how much the env adds on top of raw MuJoCo.

Three loops on the same task, model and actions (an expert episode's joint targets, replayed), interleaved and
repeated, medians reported:
    physics_steps_per_s   env.step() without cameras
    render_steps_per_s    env.step() with the front and wrist cameras at image_size
    raw_mj_steps_per_s    mujoco.mj_step(model, data, nstep=substeps) with the same ctrl: the floor, per env step
    physics_overhead      env-physics time / raw time for the same steps, median over paired episodes
                          (target <= 1.3; the ratio of the two medians above is noisier on a loaded machine)
Resets are not timed (their median is reported as reset_s).
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field

from genba.sim.tasks import TASKS


@dataclass
class BenchSimConfig:
    task: str = field(default="pick_place", metadata={"help": f"task to time: {', '.join(TASKS)}"})
    steps: int = field(default=600, metadata={"help": "env steps per timed loop"})
    repeats: int = field(default=5, metadata={"help": "timed repeats of each loop; medians are reported"})
    image_size: int = field(default=128, metadata={"help": "camera image side for the rendering loop"})
    out: str | None = field(default=None, metadata={"help": "summary path (.json) or directory"})

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r} (valid: {', '.join(TASKS)})")
        if self.steps < 1 or self.repeats < 1:
            raise ValueError(f"steps={self.steps} and repeats={self.repeats} must be >= 1")


def _device() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import mujoco

    return {"cpu": cpu, "cpus": os.cpu_count(), "mujoco_gl": os.environ.get("MUJOCO_GL", ""),
            "mujoco": mujoco.__version__}  # fmt: skip


def run_bench_sim(cfg: BenchSimConfig) -> dict:
    import copy
    import statistics
    import time

    import mujoco
    import numpy as np
    from tqdm import tqdm

    import genba.sim
    from genba.sim.experts import make_expert

    # the actions: one expert episode, replayed cyclically (contacts and grasps included)
    env = genba.sim.make(cfg.task, cameras=[])
    expert = make_expert(cfg.task)
    obs, _ = env.reset(seed=0)
    actions = []
    for _ in range(env.unwrapped.max_episode_steps):
        actions.append(expert.act(obs))
        obs, _, terminated, truncated, _ = env.step(actions[-1])
        if terminated or truncated:
            break
    actions = np.stack(actions)  # (T, 6)
    episode = len(actions)

    phys_env = env
    render_env = genba.sim.make(cfg.task, cameras=["front", "wrist"], image_size=cfg.image_size)
    phys_env.reset(seed=0)
    model, data0 = phys_env.unwrapped.model, copy.copy(phys_env.unwrapped.data)
    nsub = phys_env.unwrapped.n_substeps

    def time_env(e, chunk: np.ndarray) -> tuple[float, float]:
        t0 = time.perf_counter()
        e.reset(seed=0)
        t1 = time.perf_counter()
        for a in chunk:
            e.step(a)
        return time.perf_counter() - t1, t1 - t0

    def time_raw(chunk: np.ndarray) -> float:
        d = copy.copy(data0)
        t0 = time.perf_counter()
        for a in chunk:
            d.ctrl[:] = a
            mujoco.mj_step(model, d, nstep=nsub)
        return time.perf_counter() - t0

    # episode by episode, the loops back to back (alternating which goes first), so that each pair shares the
    # machine's load of the moment; the overhead is the median of these paired ratios
    phys, render, raw, resets, ratios = [], [], [], [], []
    for _ in tqdm(range(cfg.repeats), desc="bench sim", unit="repeat"):
        t_phys = t_render = t_raw = 0.0
        for k, start in enumerate(range(0, cfg.steps, episode)):
            chunk = actions[: min(episode, cfg.steps - start)]
            if k % 2:
                dt_raw, dt_phys = time_raw(chunk), time_env(phys_env, chunk)[0]
            else:
                dt_phys, dt_raw = time_env(phys_env, chunk)[0], time_raw(chunk)
            ratios.append(dt_phys / dt_raw)
            t_phys, t_raw = t_phys + dt_phys, t_raw + dt_raw
            elapsed, reset_s = time_env(render_env, chunk)
            t_render += elapsed
            resets.append(reset_s)
        phys.append(cfg.steps / t_phys)
        render.append(cfg.steps / t_render)
        raw.append(cfg.steps / t_raw)
    phys_env.close()
    render_env.close()
    med = statistics.median
    return {
        "task": cfg.task,
        "steps": cfg.steps,
        "repeats": cfg.repeats,
        "substeps_per_env_step": nsub,
        "image_size": cfg.image_size,
        "physics_steps_per_s": round(med(phys), 1),
        "render_steps_per_s": round(med(render), 1),
        "raw_mj_steps_per_s": round(med(raw), 1),
        "physics_overhead": round(med(ratios), 3),
        "reset_s": round(med(resets), 4),
        "device": _device(),
    }
