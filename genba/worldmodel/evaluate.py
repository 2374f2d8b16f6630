"""`genba eval-worldmodel`: how well a trained world model predicts held-out episodes, against simple baselines.

    genba eval-worldmodel run=runs/wm-tiny out=outputs/wm-eval.json
    genba eval-worldmodel run=runs/wm-tiny/last data=data/pick_place horizons=[1,4,8,16] windows_per_episode=8

Windows of `context_frames` real frames + max(horizons) more are taken on the validation episodes of the checkpoint's
split.json, spread evenly over each episode where the whole window fits (no padding). The model rolls out open loop
from the context with the true actions; at each horizon H its H-th predicted frame is compared with the real one:

- `psnr@H`, `ssim@H` per camera (`per_camera`) and averaged over cameras, on frames scaled to [0, 1]. `psnr@H` is
  the PSNR of the mean squared error over all windows; `psnr_frames@H` beside it is the mean of each frame's PSNR,
  which frames identical to the truth (a still arm at an episode's end, copied by copy-last) drive to the 100 dB
  cap, so that mean says more about the cap than about the predictions. SSIM is the standard one (Gaussian window
  11, sigma 1.5, K1 0.01, K2 0.03, valid filtering) per RGB channel, averaged.
  `state_mae@H`: mean absolute error over joints, raw units.
- baselines on the same windows: `copy_last` (last context frame and state held) and `const_velocity` (state only:
  last + k * (last - previous); zero velocity with one context frame).
- controllability (Genie's delta-PSNR): the rollout again with the actions of another episode's window (context
  actions kept; with one validation episode, another window of it): `controllability_dpsnr@H` is the PSNR with the
  true actions minus that with the others, `controllability_state@H` the state MAE with the others minus that with
  the true ones; positive = the actions matter. H = 8 when 8 is a horizon, else the largest (the key says which);
  null when there is a single window. `per_camera` has each camera's `controllability_dpsnr@H` (their mean is the
  top-level one): a wrist camera that moves with the arm and a fixed one that sees it can differ.
- `counterfactual@H` (genba.worldmodel.counterfactual): on datasets `genba collect` wrote from MuJoCo, the
  controllability rollout scored against MuJoCo's replay of the episode under the other actions, with copy-last and
  the replay's fidelity beside it; null, with `counterfactual_skipped` saying why, on any other dataset.
- `per_window`: each window's episode, first frame and errors (per camera `mse@H`, `state_mae@H`, the baselines' and
  the controllability rollout's), so that two runs on the same held-out episodes can be compared as pairs.
- `retrieval_r1`: image-to-instruction R@1 per language ("ja" = has kana or CJK ideographs): every frame of the
  held-out episodes (all cameras) against the distinct instructions of that language's episodes; chance = 1 /
  distinct instructions; `n_en`, `n_ja` count the frames, `episodes_en`, `episodes_ja` the episodes, and
  `ci95_en`, `ci95_ja` are 95% intervals from resampling whole episodes; null for a language without episodes.
  (Before 2026-12-01 the queries were the windows' first frames: 4 per episode, with no interval.)

The Rerun recording (`rrd`) shows `rrd_windows` windows on the `frame_index` timeline (frames of the episode):
`worldmodel/<window>/<camera>/{real,predicted}`, `worldmodel/<window>/state/<joint>/{real,predicted}` and
`worldmodel/<window>/instruction`, window = `ep<episode>_t<first frame>`.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genba import keys
from genba.errors import GenbaError
from genba.worldmodel.counterfactual import open_branches, replay_batch, summarize_counterfactual
from genba.worldmodel.metrics import (
    const_velocity,
    copy_last,
    mse,
    psnr,
    psnr_of_mse,
    retrieval_r1,
    ssim,
    state_mae,
    to_unit,
)

if TYPE_CHECKING:
    from torch import Tensor

ROOT = "worldmodel"  # top entity of the recording
CONTROL_HORIZON = 8


@dataclass
class EvalWorldModelConfig:
    run: str = field(default="", metadata={"help": "training run folder (its best/, else last/) or a checkpoint"})
    data: str = field(
        default="", metadata={"help": "LeRobotDataset v3 folder (default: the dataset in the checkpoint's split.json)"}
    )
    out: str = field(default="", metadata={"help": "summary JSON path (default outputs/eval-worldmodel-<time>.json)"})
    context_frames: int = field(default=0, metadata={"help": "real frames given as context (0 = the model's own)"})
    horizons: list[int] = field(default_factory=lambda: [1, 4, 8, 16], metadata={"help": "prediction horizons"})
    windows_per_episode: int = field(default=4, metadata={"help": "windows per validation episode, spread evenly"})
    batch_size: int = field(default=16, metadata={"help": "windows per rollout batch"})
    device: str = field(default="auto", metadata={"help": "cpu, cuda, or auto (cuda when there is one)"})
    seed: int = field(default=0, metadata={"help": "torch seed (for models that sample)"})
    threads: int = field(default=0, metadata={"help": "CPU threads of torch; 0: torch's default"})
    rrd: str = field(default="", metadata={"help": "Rerun recording path (default: out with .rrd for .json)"})
    rrd_windows: int = field(default=2, metadata={"help": "windows shown in the recording (0: no recording)"})
    counterfactual: str = field(
        default="auto",
        metadata={"help": "score the controllability rollout against MuJoCo's replay of the other actions: auto (when "
                  "genba collect wrote the data from MuJoCo), on (an error otherwise) or off"},
    )  # fmt: skip

    def __post_init__(self) -> None:
        if not self.run:
            raise ValueError("run=<training run or checkpoint folder> is required")
        self.horizons = [int(h) for h in self.horizons]
        if not self.horizons or min(self.horizons) < 1:
            raise ValueError(f"horizons={self.horizons} must be a non-empty list of integers >= 1")
        self.horizons = sorted(set(self.horizons))
        for name, low in (("windows_per_episode", 1), ("batch_size", 1), ("context_frames", 0), ("threads", 0),
                          ("rrd_windows", 0), ("seed", 0)):  # fmt: skip
            if not isinstance(getattr(self, name), int) or getattr(self, name) < low:
                raise ValueError(f"{name}={getattr(self, name)!r} must be an integer >= {low}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device={self.device!r} is not one of auto, cpu, cuda")
        if self.counterfactual not in ("auto", "on", "off"):
            raise ValueError(f"counterfactual={self.counterfactual!r} is not one of auto, on, off")
        if not self.out:
            self.out = f"outputs/eval-worldmodel-{time.strftime('%Y%m%d-%H%M%S')}.json"
        if not self.out.endswith(".json"):
            raise ValueError(f"out={self.out!r} must be a .json file path")
        if self.rrd and not self.rrd.endswith(".rrd"):
            raise ValueError(f"rrd={self.rrd!r} must be a .rrd file path")
        self.rrd = (self.rrd or self.out.removesuffix(".json") + ".rrd") if self.rrd_windows else ""


# ---- windows ---------------------------------------------------------------------------------------------------


def eval_windows(lengths: dict[int, int], span: int, per_episode: int) -> list[tuple[int, int]]:
    """(episode, first frame) of up to `per_episode` windows of `span` frames per episode, spread evenly from the
    first frame to the last start that fits, in episode order; an episode shorter than `span` gives none."""
    out = []
    for ep, n in lengths.items():
        if n >= span:
            last = n - span
            starts = sorted({round(i * last / max(per_episode - 1, 1)) for i in range(per_episode)})
            out += [(ep, t) for t in starts]
    return out


def other_episode(windows: list[tuple[int, int]]) -> list[int] | None:
    """For each window, the index of a window of the next episode (cyclically; its k-th window for our k-th,
    wrapping), whose actions stand in for the true ones in the controllability rollout. With a single episode, the
    next window of it (another time); None with a single window."""
    episodes = list(dict.fromkeys(e for e, _ in windows))
    if len(episodes) < 2:
        return [(i + 1) % len(windows) for i in range(len(windows))] if len(windows) > 1 else None
    of = {e: [i for i, (f, _) in enumerate(windows) if f == e] for e in episodes}
    out = []
    for i, (e, _) in enumerate(windows):
        mine, theirs = of[e], of[episodes[(episodes.index(e) + 1) % len(episodes)]]
        out.append(theirs[mine.index(i) % len(theirs)])
    return out


# ---- one batch of windows --------------------------------------------------------------------------------------


def score_batch(model: Any, images: dict[str, Tensor], state: Tensor, actions: Tensor, task: list[str], *,
                context: int, horizons: list[int], other_actions: Tensor | None = None,
                control_horizon: int = CONTROL_HORIZON, sim: dict | None = None) -> dict[str, Tensor]:  # fmt: skip
    """Metrics of each window of one batch, {name: (B,) float}.

    images: camera -> (B, T, 3, H, W) uint8, state (B, T, S), actions (B, T-1, A) (actions[:, i] leads from frame i
    to i+1), T = context + max(horizons); other_actions (B, T-1, A) from other episodes, for controllability.
    Names: `<cam>/psnr@H`, `<cam>/ssim@H`, `state_mae@H`, the same under `copy_last/`, `const_velocity/state_mae@H`,
    and with other_actions `control/<cam>/psnr` and `control/state_mae` at control_horizon.
    sim (genba.worldmodel.counterfactual.replay_batch): MuJoCo's frame and state at the last context frame and at
    control_horizon under the other actions, {"start" | "other": {"images": {cam: (B, H, W, 3) uint8}, "state":
    (B, S)}}, for the `counterfactual/` and `replay/` metrics.
    """
    import torch

    c, k = context, max(horizons)
    ctx_images, ctx_state = {cam: v[:, :c] for cam, v in images.items()}, state[:, :c]
    rollout = model.rollout(ctx_images, ctx_state, actions[:, : c + k - 1], task, horizon=k)
    real_state = state[:, c : c + k]  # (B, K, S)
    guesses = {
        "": rollout["state"],
        "copy_last/": copy_last(ctx_state, k),
        "const_velocity/": const_velocity(ctx_state, k),
    }
    m: dict[str, Tensor] = {}
    for h in horizons:
        for prefix, guess in guesses.items():
            m[f"{prefix}state_mae@{h}"] = state_mae(guess[:, h - 1].float(), real_state[:, h - 1])
    real = {cam: to_unit(v[:, c : c + k]) for cam, v in images.items()}  # (B, K, 3, H, W) float
    for cam in images:
        pred, last = to_unit(rollout["images"][cam]), to_unit(images[cam][:, c - 1])
        for h in horizons:
            for prefix, guess in (("", pred[:, h - 1]), ("copy_last/", last)):
                m[f"{prefix}{cam}/psnr@{h}"] = psnr(guess, real[cam][:, h - 1])
                m[f"{prefix}{cam}/mse@{h}"] = mse(guess, real[cam][:, h - 1])
                m[f"{prefix}{cam}/ssim@{h}"] = ssim(guess, real[cam][:, h - 1])
    if other_actions is not None:
        hc = control_horizon
        mixed = torch.cat([actions[:, : c - 1], other_actions[:, c - 1 : c + hc - 1]], 1)  # (B, C + hc - 1, A)
        alt = model.rollout(ctx_images, ctx_state, mixed, task, horizon=hc)
        for cam in images:
            m[f"control/{cam}/mse"] = mse(to_unit(alt["images"][cam][:, hc - 1]), real[cam][:, hc - 1])
        m["control/state_mae"] = state_mae(alt["state"][:, hc - 1].float(), real_state[:, hc - 1])
        if sim is not None:  # the same rollout against what MuJoCo does with the other actions
            start, other = ({cam: to_unit(v.permute(0, 3, 1, 2)) for cam, v in sim[b]["images"].items()}
                            for b in ("start", "other"))  # fmt: skip
            for cam in images:
                last = to_unit(images[cam][:, c - 1])  # the last context frame, where the branch starts
                m[f"counterfactual/{cam}/mse"] = mse(to_unit(alt["images"][cam][:, hc - 1]), other[cam])
                m[f"counterfactual/as_taken/{cam}/mse"] = mse(to_unit(rollout["images"][cam][:, hc - 1]), other[cam])
                m[f"counterfactual/copy_last/{cam}/mse"] = mse(last, other[cam])
                m[f"counterfactual/truth/{cam}/mse"] = mse(real[cam][:, hc - 1], other[cam])
                m[f"replay/{cam}/mse"] = mse(start[cam], last)
            joints = sim["other"]["state"]  # (B, S): where the other actions take the arm
            m["counterfactual/state_mae"] = state_mae(alt["state"][:, hc - 1].float(), joints)
            m["counterfactual/as_taken/state_mae"] = state_mae(rollout["state"][:, hc - 1].float(), joints)
            m["counterfactual/copy_last/state_mae"] = state_mae(ctx_state[:, -1].float(), joints)
            m["replay/state_mae"] = state_mae(sim["start"]["state"], ctx_state[:, -1].float())
    return m


def summarize(metrics: dict[str, list[float]], cameras: list[str], horizons: list[int], hc: int) -> dict[str, Any]:
    """Window means of score_batch's metrics (name -> one value per window) in the summary's layout."""
    import numpy as np

    mean = {name: float(np.mean(v)) for name, v in metrics.items()}

    for name in [n for n in mean if "/mse@" in n]:  # PSNR of the windows' mean squared error
        mean[name.replace("/mse@", "/psnr@")] = psnr_of_mse(mean[name])
    for name in [n for n in metrics if "/psnr@" in n]:  # and the mean of the frames' PSNRs beside it
        mean[name.replace("/psnr@", "/psnr_frames@")] = float(np.mean(metrics[name]))
    kinds = ("psnr", "psnr_frames", "ssim")

    def images_and_state(prefix: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for h in horizons:
            for what in kinds:
                out[f"{what}@{h}"] = float(np.mean([mean[f"{prefix}{cam}/{what}@{h}"] for cam in cameras]))
            out[f"state_mae@{h}"] = mean[f"{prefix}state_mae@{h}"]
        out["per_camera"] = {
            cam: {f"{what}@{h}": mean[f"{prefix}{cam}/{what}@{h}"] for h in horizons for what in kinds}
            for cam in cameras
        }
        return out

    summary = images_and_state("")
    summary["copy_last"] = images_and_state("copy_last/")
    summary["const_velocity"] = {f"state_mae@{h}": mean[f"const_velocity/state_mae@{h}"] for h in horizons}
    control = "control/state_mae" in mean
    other_psnr = float(np.mean([psnr_of_mse(mean[f"control/{cam}/mse"]) for cam in cameras])) if control else 0.0
    summary[f"controllability_dpsnr@{hc}"] = summary[f"psnr@{hc}"] - other_psnr if control else None
    summary[f"controllability_state@{hc}"] = mean["control/state_mae"] - summary[f"state_mae@{hc}"] if control else None
    summary[f"counterfactual@{hc}"] = summarize_counterfactual(mean, cameras)
    for cam in cameras if control else []:  # which camera's frames follow the actions
        other = psnr_of_mse(mean[f"control/{cam}/mse"])
        summary["per_camera"][cam][f"controllability_dpsnr@{hc}"] = summary["per_camera"][cam][f"psnr@{hc}"] - other
    return summary


def per_window(windows: list[tuple[int, int]], metrics: dict[str, list[float]]) -> dict[str, Any]:
    """Each window's episode, first frame and errors (the `mse` and `state_mae` metrics, `control/` ones included),
    in window order: two runs evaluated on the same windows can be compared window by window, or episode by episode."""
    errors = {name: values for name, values in metrics.items() if "/mse" in name or "state_mae" in name}
    return {"episode": [e for e, _ in windows], "start": [t for _, t in windows], "metrics": errors}


# ---- the recording ---------------------------------------------------------------------------------------------


def write_rrd(path: Path, names: list[str], starts: list[int], tasks: list[str], images: dict[str, Tensor],
              state: Tensor, rollout: dict[str, Any], joints: list[str]) -> None:  # fmt: skip
    """Log windows to the .rrd `path`, complete on return (written beside it, renamed in). Window b is `names[b]`,
    starts at frame starts[b]: real images {cam: (B, T, 3, H, W) uint8} and state (B, T, S); the rollout's
    {"images": {cam: (B, K, 3, H, W)}, "state": (B, K, S)} are frames T-K .. T-1."""
    import uuid

    import numpy as np
    import rerun as rr

    from genba.io import atomic_path
    from genba.viz.log import FRAME_TIMELINE, entity

    def jpeg(frame: Tensor) -> rr.EncodedImage:  # (3, H, W) uint8
        return rr.Image(frame.permute(1, 2, 0).contiguous().cpu().numpy()).compress(jpeg_quality=95)

    t, k = state.shape[1], rollout["state"].shape[1]
    rec = rr.RecordingStream("genba", recording_id=uuid.uuid4())
    with atomic_path(path) as tmp:
        try:
            rec.save(tmp, default_blueprint=_blueprint(names, list(images), joints))
            for b, (name, t0) in enumerate(zip(names, starts, strict=True)):
                rec.log(entity(ROOT, name, "instruction"), rr.TextDocument(tasks[b]), static=True)
                for i in range(t):
                    rec.set_time(FRAME_TIMELINE, sequence=t0 + i)
                    for cam, frames in images.items():
                        rec.log(entity(ROOT, name, cam, "real"), jpeg(frames[b, i]))
                        if i >= t - k:
                            rec.log(entity(ROOT, name, cam, "predicted"), jpeg(rollout["images"][cam][b, i - t + k]))
                rec.reset_time()
                frames = t0 + np.arange(t)  # (T,) frame_index
                real, pred = state[b].double().cpu().numpy(), rollout["state"][b].double().cpu().numpy()
                for j, joint in enumerate(joints):
                    for kind, values, at in (("real", real[:, j], frames), ("predicted", pred[:, j], frames[t - k :])):
                        where = entity(ROOT, name, "state", joint, kind)
                        rec.log(where, rr.SeriesLines(names=f"{joint} ({kind})"), static=True)
                        index = [rr.TimeColumn(FRAME_TIMELINE, sequence=at)]
                        rec.send_columns(where, indexes=index, columns=rr.Scalars.columns(scalars=values))
            rec.flush()
        finally:
            rec.disconnect()  # closes the file sink before the rename


def _blueprint(names: list[str], cameras: list[str], joints: list[str]) -> Any:
    """One tab per window: real | predicted per camera on top, one real-vs-predicted plot per joint below."""
    import rerun.blueprint as rrb

    from genba.viz.log import FRAME_TIMELINE, entity

    tabs = []
    for name in names:
        views = [
            rrb.Spatial2DView(origin=entity(ROOT, name, cam, kind), name=f"{cam} {kind}")
            for cam in cameras
            for kind in ("real", "predicted")
        ]
        plots = [rrb.TimeSeriesView(origin=entity(ROOT, name, "state", j), name=j) for j in joints]
        tabs.append(rrb.Vertical(rrb.Grid(*views, grid_columns=2), rrb.Grid(*plots), name=name))
    return rrb.Blueprint(rrb.Tabs(*tabs), rrb.TimePanel(timeline=FRAME_TIMELINE), collapse_panels=False)


# ---- the command -----------------------------------------------------------------------------------------------


def checkpoint_folder(run: str | Path) -> Path:
    """The checkpoint to evaluate: <run>/best, else <run>/last, else `run` itself (load_model then says, in one
    line, what is wrong with a folder that is not a world-model checkpoint)."""
    from genba.train.checkpoint import CONFIG
    from genba.train.loop import BEST, LAST

    run = Path(run).expanduser()
    if not run.is_dir():
        raise GenbaError(f"run={run}: no such folder")
    return next((run / name for name in (BEST, LAST) if (run / name / CONFIG).is_file()), run)


def read_train_summary(run: str | Path, folder: Path) -> dict[str, Any]:
    """<run>/train_summary.json (or beside the checkpoint folder), {} when there is none."""
    import json

    from genba.io import one_line

    for file in dict.fromkeys([Path(run).expanduser() / "train_summary.json", folder.parent / "train_summary.json"]):
        if file.is_file():
            try:
                return json.loads(file.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise GenbaError(f"cannot read {file}: {one_line(e)}") from None
    return {}


def load_windows(ds: Any, rows: list[int], mcfg: Any, device: Any) -> tuple[dict[str, Tensor], Tensor, Tensor, list]:
    """The clips starting at rows `rows` of `ds` (T frames each): images {cam: (B, T, 3, H, W) uint8}, state
    (B, T, S), actions (B, T-1, A) and the instructions, on `device`."""
    import torch

    from genba.datasets.clips import collate_clips

    batch = collate_clips(ds.__getitems__(rows))
    images = {
        cam: torch.cat([batch[keys.image_key(cam)], batch[keys.future_image_key(cam)]], 1).to(device)
        for cam in ds.cameras
    }
    state = torch.cat([batch[mcfg.state_key], batch[keys.FUTURE_STATE]], 1).to(device)
    return images, state, batch[mcfg.action_key][:, : state.shape[1] - 1].to(device), list(batch[keys.TASK])


def run_eval_worldmodel(cfg: EvalWorldModelConfig) -> dict[str, Any]:
    """Evaluate cfg.run on the validation episodes of its split; returns the JSON summary (module docstring)."""
    import numpy as np
    import torch
    from tqdm import tqdm

    import genba.worldmodel.model  # noqa: F401  registers the checkpoint kind "worldmodel"
    from genba.datasets import frames as fr
    from genba.datasets.clips import collate_clips
    from genba.io import check_path, check_writable
    from genba.train import checkpoint as ckpt
    from genba.viz.data import feature_names
    from genba.worldmodel.data import clip_dataset

    check_path(cfg.run, "run")
    rrd = check_writable(cfg.rrd, "rrd") if cfg.rrd else None
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise GenbaError("device=cuda but torch sees no CUDA device")
    device = torch.device("cuda" if cfg.device != "cpu" and torch.cuda.is_available() else "cpu")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    folder = checkpoint_folder(cfg.run)
    model, mcfg = ckpt.load_model(folder, kind="worldmodel", device=device)
    split = ckpt.load_json(folder, ckpt.SPLIT) or {}
    val = sorted({int(e) for e in split.get("val", [])})
    if not val:
        raise GenbaError(f"{folder} records no validation episodes (split.json 'val'): nothing held out to evaluate")
    trained = read_train_summary(cfg.run, folder)
    data = str(cfg.data or split.get("dataset") or trained.get("data") or "")
    if not data:
        raise GenbaError(f"data= is required: {folder}/split.json names no dataset")
    context, horizons = cfg.context_frames or int(mcfg.context_frames), cfg.horizons
    k = max(horizons)
    span = context + k  # T: frames of one window

    # the windows from the metadata first: a clear line instead of ClipDataset's about the longest episode
    table = fr.episode_table(fr.load_metadata(fr.resolve_root(data)))
    n_eps = len(table["from"])
    if split.get("num_episodes", n_eps) != n_eps or val[-1] >= n_eps:
        raise GenbaError(f"{data} has {n_eps} episodes; the checkpoint's split is of {split.get('num_episodes')}")
    lengths = {e: int(table["to"][e] - table["from"][e]) for e in val}
    windows = eval_windows(lengths, span, cfg.windows_per_episode)
    if not windows:
        longest = max(lengths.values())
        raise GenbaError(
            f"horizon {k} + context {context} = {span} frames, but the longest of the {len(val)} validation episodes "
            f"has {longest}: use horizons up to {longest - context}"
        )
    ds = clip_dataset(data, span, image_size=mcfg.image_size, cameras=list(mcfg.cameras), episodes=val,
                      state_key=mcfg.state_key, action_key=mcfg.action_key)  # fmt: skip
    offset = dict(zip(val, np.cumsum([0, *lengths.values()]).tolist(), strict=False))  # episode -> its first ds row
    rows = [offset[e] + t for e, t in windows]  # rows of ds where the windows start
    firsts = [i for i, (e, _) in enumerate(windows) if i == 0 or windows[i - 1][0] != e]  # each episode's first
    other = other_episode(windows)
    hc = CONTROL_HORIZON if CONTROL_HORIZON in horizons else k
    bs = cfg.batch_size
    branches, skipped = open_branches(cfg.counterfactual, data, mcfg, single_window=other is None)

    metrics: dict[str, list[float]] = {}
    image_emb, text_emb, tasks = [], [], []
    bar = tqdm(total=len(windows), desc="eval worldmodel", unit="window", file=sys.stderr)
    with torch.no_grad():
        for lo in range(0, len(windows), bs):
            ids = range(lo, min(lo + bs, len(windows)))
            images, state, actions, task = load_windows(ds, [rows[i] for i in ids], mcfg, device)
            alt = None
            if other is not None:  # (B, T-1, A): the actions of other windows, from the table (no frames decoded)
                starts = [int(ds.rows[rows[other[i]]]) for i in ids]  # absolute dataset rows
                alt = torch.from_numpy(np.stack([ds.columns[mcfg.action_key][r : r + span - 1] for r in starts]))
            sim = None
            if branches is not None:  # what the taken and the other actions do in MuJoCo
                firsts_row = [int(ds.rows[offset[windows[i][0]]]) for i in ids]  # each window's episode start
                sim = replay_batch(branches, [windows[i] for i in ids], firsts_row, ds.columns[mcfg.action_key],
                                   alt.numpy(), context, hc, device)  # fmt: skip
            m = score_batch(model, images, state, actions, task, context=context, horizons=horizons,
                            other_actions=None if alt is None else alt.to(device), control_horizon=hc,
                            sim=sim)  # fmt: skip
            for name, values in m.items():
                metrics.setdefault(name, []).extend(values.double().cpu().tolist())
            bar.update(len(ids))
        bar.close()
        if branches is not None:
            branches.close()
        # retrieval: every frame of the held-out episodes, one frame (all cameras) per query
        single = clip_dataset(data, 1, image_size=mcfg.image_size, cameras=list(mcfg.cameras), episodes=val,
                              state_key=mcfg.state_key, action_key=mcfg.action_key, progress=False)  # fmt: skip
        query_episode: list[int] = []
        for lo in tqdm(range(0, len(single), 4 * bs), desc="retrieval", unit="batch", file=sys.stderr):
            batch = collate_clips(single.__getitems__(list(range(lo, min(lo + 4 * bs, len(single))))))
            image_emb.append(
                model.embed_images({cam: batch[keys.image_key(cam)][:, 0].to(device) for cam in single.cameras})
                .float().cpu()
            )  # fmt: skip
            text_emb.append(model.embed_text(list(batch[keys.TASK])).float().cpu())
            tasks += list(batch[keys.TASK])
            query_episode += batch[keys.EPISODE_INDEX].tolist()
        if rrd is not None:  # the first window of the first episodes, then more windows if there are fewer episodes
            shown = sorted(range(len(windows)), key=lambda i: (i not in firsts, i))[: cfg.rrd_windows]
            images, state, actions, task = load_windows(ds, [rows[i] for i in shown], mcfg, device)
            ctx = {cam: v[:, :context] for cam, v in images.items()}
            rollout = model.rollout(ctx, state[:, :context], actions, task, horizon=k)
            names = [f"ep{windows[i][0]}_t{windows[i][1]}" for i in shown]
            joints = feature_names(ds.meta.features[mcfg.state_key], "state", state.shape[-1])
            write_rrd(rrd, names, [windows[i][1] for i in shown], task, images, state, rollout, joints)

    summary: dict[str, Any] = {
        **summarize(metrics, list(ds.cameras), horizons, hc),
        "retrieval_r1": retrieval_r1(torch.cat(image_emb), torch.cat(text_emb), tasks, query_episode),
        "counterfactual_skipped": skipped,
        "per_window": per_window(windows, metrics),
        "episodes": len(firsts), "val_episodes": len(val), "windows": len(windows),
        "context_frames": context, "horizons": horizons, "train_seconds": trained.get("train_seconds"),
        "params": trained.get("params", sum(p.numel() for p in model.parameters())),
        "run": cfg.run, "checkpoint": str(folder), "data": data, "rrd": str(rrd) if rrd is not None else None,
        "device": str(device), "config": asdict(cfg),
    }  # fmt: skip
    scores = [
        f"psnr@{h} {summary[f'psnr@{h}']:.2f} (copy_last {summary['copy_last'][f'psnr@{h}']:.2f})" for h in horizons
    ]
    print(
        f"world model, {len(windows)} windows of {len(firsts)} validation episodes: {', '.join(scores)}",
        file=sys.stderr,
    )
    cf = summary[f"counterfactual@{hc}"]
    if cf is not None:
        print(
            f"under another episode's actions, psnr@{hc} against MuJoCo's replay of them {cf['psnr']:.2f} (copy_last "
            f"{cf['copy_last_psnr']:.2f}), against the taken actions' future {cf['psnr_to_taken']:.2f}; state MAE "
            f"{cf['state_mae']:.4f} (copy_last {cf['copy_last_state_mae']:.4f}); replay {cf['replay_psnr']:.1f} dB",
            file=sys.stderr,
        )
    return summary
