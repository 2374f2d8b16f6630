"""Controllability checked against MuJoCo: does the world model's future follow actions that were not taken?

`controllability_dpsnr@8` (genba.worldmodel.evaluate, Genie's ΔPSNR) only says how much the predicted frames change
when another episode's actions replace the true ones, scored against the future of the actions that were taken: a
frame that changes in any direction earns it. In scripted demonstrations the next action is nearly a function of
what the frames show, so a model can predict the expert's future from the scene and the instruction without
learning what the actions do. For datasets that `genba collect` wrote from MuJoCo, the simulator can say what the
other actions really do:

    source = sim_source("data/pick_place")              # None (and why) for any other dataset
    sim = Branches(source)
    run = sim.branch(episode=5, before=actions_0_to_t, after=other_actions)   # run.frames[cam] (K, H, W, 3)

`branch` resets the env with the episode's recorded seed (the same scene, randomization and physics), replays the
recorded actions up to the branch point, then runs `after`. The replay reproduces the dataset's joints and its
frames up to video coding (about 30 dB on pick_place; `replay_psnr` in the summary says how well);
datasets whose recorded actions were not the executed ones (`clean_labels=true`), merged or imagined datasets, and
datasets other tools changed, cannot be replayed and are skipped with the reason.

Summary (`counterfactual@H` of `genba eval-worldmodel`, H the controllability horizon), each a mean over windows
and cameras, with `per_camera` beside:
- `psnr`: the model's frames under the other actions against MuJoCo's under the other actions (higher: it follows
  them); `copy_last_psnr`: the last context frame against the same;
- `dpsnr`: `psnr` minus `psnr_as_taken`, the model's frames under the TAKEN actions against the same MuJoCo
  frames: how much closer to what the other actions really do the frames get when the model is given them. Zero for
  a model that ignores the actions, however sharp or blurry its frames (Genie's ΔPSNR, `controllability_dpsnr`,
  scores both rollouts against the taken future instead, so a blurrier model can lose it while following the
  actions better); `dstate` the same for the joints (the error's fall, raw units);
- `psnr_to_taken`: the model's frames under the other actions against the real future of the taken actions. A
  model that ignores the actions scores this above `psnr`;
- `state_mae`, `copy_last_state_mae`: the same for the joints;
- `truth_psnr`: the real future of the taken actions against MuJoCo's under the other actions: how much the truth
  itself changes (a high value means the other actions barely change the scene, and the check says little);
- `replay_psnr`, `replay_state_mae`: MuJoCo's frame and joints where the branch starts (the window's last context
  frame, reached by the recorded actions) against the dataset's: the replay's fidelity.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from genba import keys
from genba.errors import GenbaError
from genba.worldmodel.metrics import psnr_of_mse


def sim_source(root: str | Path) -> tuple[dict | None, str]:
    """(source, why not): source = {"task", "env": genba.sim.make options, "samples", "seeds": {episode: seed}} for
    a dataset that `genba collect` wrote from MuJoCo with the executed actions recorded; else None and the reason."""
    from genba.datasets.commit import read_all_episode_meta, read_commit

    commit = read_commit(root)
    if commit is None:
        return None, "not written by genba collect (no meta/genba/commit.json): no simulator to replay it in"
    ident = commit["identity"]
    if "task" not in ident:
        return None, "a merged dataset: its episodes come from several collections"
    if ident.get("backend", "mujoco") != "mujoco":
        return None, f"imagined episodes (backend={ident['backend']}): MuJoCo did not produce them"
    if ident.get("clean_labels"):
        return None, "clean_labels=true: the recorded actions are not the executed ones"
    records = read_all_episode_meta(root)
    if not records:
        return None, "genba's per-episode metadata is missing or stale"
    env = {"image_size": ident["image_size"], "cameras": list(ident["cameras"]), "lang": ident["lang"],
           "fps": commit["fps"]}  # fmt: skip
    if ident.get("after_success"):
        env["after_success"] = ident["after_success"]
    samples = None if ident.get("multisampling", True) else 0
    seeds = {int(r["episode_index"]): int(r["seed"]) for r in records}
    return {"task": ident["task"], "env": env, "samples": samples, "seeds": seeds}, ""


class Branch(NamedTuple):
    """Where a branch starts (the frame reached by the recorded actions) and the K frames after it."""

    start_frames: dict[str, np.ndarray]  # camera -> (H, W, 3) uint8
    start_state: np.ndarray  # (S,) float32
    frames: dict[str, np.ndarray]  # camera -> (K, H, W, 3) uint8
    state: np.ndarray  # (K, S) float32


class Branches:
    """One MuJoCo env of a `sim_source`, run from recorded episodes down other branches."""

    def __init__(self, source: dict) -> None:
        self.source = source
        self._env: Any = None

    def branch(self, episode: int, before: np.ndarray, after: np.ndarray) -> Branch:
        """Episode `episode` from its reset, the recorded actions `before` (n, A) (frame n is reached: the branch's
        start), then `after` (K, A): the K frames that follow."""
        from genba.sim import make
        from genba.sim.render import offscreen_samples

        if self._env is None:
            with offscreen_samples(self.source["samples"]):
                self._env = make(self.source["task"], **self.source["env"])
                self._env.reset(seed=0)  # the renderer is made at the first reset, inside offscreen_samples
        env, cams = self._env, self.source["env"]["cameras"]
        obs, _ = env.reset(seed=self.source["seeds"][episode])
        for a in before:  # terminated or truncated on the way does not stop MuJoCo: the branch goes on
            obs, *_ = env.step(np.asarray(a, dtype=np.float32))
        start = {cam: obs[keys.PIXELS][cam] for cam in cams}, np.asarray(obs[keys.AGENT_POS], dtype=np.float32)
        frames: dict[str, list[np.ndarray]] = {cam: [] for cam in cams}
        states = []
        for a in after:
            obs, *_ = env.step(np.asarray(a, dtype=np.float32))
            for cam in cams:
                frames[cam].append(obs[keys.PIXELS][cam])
            states.append(obs[keys.AGENT_POS])
        stacked = {cam: np.stack(v) for cam, v in frames.items()}
        return Branch(*start, stacked, np.stack(states).astype(np.float32))

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None


def open_branches(mode: str, data: str, mcfg: Any, single_window: bool) -> tuple[Branches | None, str | None]:
    """MuJoCo branches of dataset `data` for a world model of config `mcfg`, or None and why the check is skipped
    (None when mode is "off"); mode "on" makes a dataset that cannot be replayed an error."""
    from genba.datasets import frames as fr

    if mode == "off":
        return None, None
    source, why = sim_source(fr.resolve_root(data))
    if source is not None and single_window:
        source, why = None, "a single window: there are no other actions"
    if source is not None and (mcfg.state_key, mcfg.action_key) != (keys.OBS_STATE, keys.ACTION):
        source, why = None, f"the model reads {mcfg.state_key} and {mcfg.action_key}, not the env's joints"
    if source is not None and source["env"]["image_size"] != mcfg.image_size:
        source, why = None, f"the model sees {mcfg.image_size}px frames, the data {source['env']['image_size']}px"
    if source is None and mode == "on":
        raise GenbaError(f"counterfactual=on, but {data} cannot be replayed in MuJoCo: {why}")
    return (Branches(source), None) if source is not None else (None, why)


def replay_batch(branches: Branches, windows: list[tuple[int, int]], first_rows: list[int], table: Any,
                 other: Any, context: int, hc: int, device: Any) -> dict:  # fmt: skip
    """score_batch's `sim`: for each window, MuJoCo's frame and joints at its last context frame (reached by replaying
    the episode's recorded actions, `table` rows from first_rows[b]) and hc steps later under the other actions
    (B, T-1, A): {"start" | "other": {"images": {cam: (B, H, W, 3) uint8}, "state": (B, S)}}."""
    import torch

    runs = []
    for b, ((episode, start), first) in enumerate(zip(windows, first_rows, strict=True)):
        before = table[first : first + start + context - 1]  # (start + C - 1, A): up to the last context frame
        runs.append(branches.branch(episode, before, other[b, context - 1 : context - 1 + hc]))

    def batch(frames: list[dict[str, np.ndarray]], states: list[np.ndarray]) -> dict:
        images = {cam: torch.from_numpy(np.stack([f[cam] for f in frames])).to(device) for cam in frames[0]}
        return {"images": images, "state": torch.from_numpy(np.stack(states)).to(device)}

    return {
        "start": batch([r.start_frames for r in runs], [r.start_state for r in runs]),
        "other": batch(
            [{cam: v[hc - 1] for cam, v in r.frames.items()} for r in runs], [r.state[hc - 1] for r in runs]
        ),
    }


def summarize_counterfactual(mean: dict[str, float], cameras: list[str]) -> dict[str, Any] | None:
    """The `counterfactual@H` block from the window means of score_batch's `counterfactual/` metrics and the
    `replay/` ones; None when they were not measured."""
    if "counterfactual/state_mae" not in mean:
        return None
    names = {"psnr": "counterfactual/{}/mse", "copy_last_psnr": "counterfactual/copy_last/{}/mse",
             "psnr_as_taken": "counterfactual/as_taken/{}/mse", "psnr_to_taken": "control/{}/mse",
             "truth_psnr": "counterfactual/truth/{}/mse", "replay_psnr": "replay/{}/mse"}  # fmt: skip
    per_camera = {cam: {key: psnr_of_mse(mean[name.format(cam)]) for key, name in names.items()} for cam in cameras}
    for figures in per_camera.values():
        figures["dpsnr"] = figures["psnr"] - figures["psnr_as_taken"]
    out: dict[str, Any] = {key: float(np.mean([per_camera[c][key] for c in cameras])) for key in [*names, "dpsnr"]}
    out["dstate"] = mean["counterfactual/as_taken/state_mae"] - mean["counterfactual/state_mae"]
    out["state_mae"] = mean["counterfactual/state_mae"]
    out["copy_last_state_mae"] = mean["counterfactual/copy_last/state_mae"]
    out["replay_state_mae"] = mean["replay/state_mae"]
    out["per_camera"] = per_camera
    return out
