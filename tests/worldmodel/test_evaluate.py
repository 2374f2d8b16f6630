"""`genba eval-worldmodel`: windows, the summary layout with stand-in models, the Rerun recording read back, and the
whole command on a real trained run (the metrics themselves: test_metrics.py)."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from genba.datasets import frames as fr
from genba.errors import GenbaError
from genba.viz.log import entity
from genba.viz.readback import read_rrd, verify_rrd
from genba.worldmodel.evaluate import (
    EvalWorldModelConfig,
    eval_windows,
    other_episode,
    run_eval_worldmodel,
    score_batch,
    summarize,
    write_rrd,
)
from genba.worldmodel.metrics import copy_last, mse, psnr_of_mse

# ---- windows -------------------------------------------------------------------------------------------------------


def test_window_starts_spread_evenly_and_fit() -> None:
    windows = eval_windows({3: 30, 5: 10, 7: 20, 9: 12}, span=12, per_episode=4)
    assert windows == [(3, 0), (3, 6), (3, 12), (3, 18), (7, 0), (7, 3), (7, 5), (7, 8), (9, 0)]
    lengths = {3: 30, 7: 20, 9: 12}
    assert all(t >= 0 and t + 12 <= lengths[e] for e, t in windows)
    assert eval_windows({0: 11}, span=12, per_episode=4) == []
    assert eval_windows({0: 40}, span=12, per_episode=1) == [(0, 0)]


def test_other_episode_always_lends_another_episodes_actions() -> None:
    windows = eval_windows({0: 30, 1: 13, 2: 20, 4: 25}, span=12, per_episode=3)
    other = other_episode(windows)
    assert other is not None and len(other) == len(windows)
    assert all(windows[o][0] != windows[i][0] for i, o in enumerate(other))
    assert len(set(other)) > len({e for e, _ in windows})  # not all windows borrow the same one
    single = other_episode([(5, 0), (5, 4), (5, 8)])
    assert single == [1, 2, 0]  # one episode: another time of it
    assert other_episode([(5, 0)]) is None


# ---- a batch with stand-in models ----------------------------------------------------------------------------------


class ActionModel:
    """Knows the dynamics: state[t+1] = state[t] + action[t]; frame t is filled with the value 10 t."""

    def rollout(self, images, state, actions, task, horizon):
        c = state.shape[1]
        steps = actions[:, c - 1 : c - 1 + horizon].cumsum(1)  # (B, K, A)
        frames = {}
        for cam, v in images.items():
            values = torch.arange(c, c + horizon, dtype=torch.uint8) * 10  # (K,)
            frames[cam] = values.view(1, -1, 1, 1, 1).expand(v.shape[0], horizon, *v.shape[2:]).clone()
        return {"images": frames, "state": state[:, -1:] + steps}


class CopyModel:
    """Predicts nothing changes: the copy_last baseline as a model."""

    def rollout(self, images, state, actions, task, horizon):
        return {"images": {cam: copy_last(v, horizon) for cam, v in images.items()}, "state": copy_last(state, horizon)}


def windows_batch(b: int = 3, t: int = 10, seed: int = 0) -> tuple[dict, torch.Tensor, torch.Tensor, list[str]]:
    g = torch.Generator().manual_seed(seed)
    frames = (torch.arange(t, dtype=torch.uint8) * 10).view(1, t, 1, 1, 1).expand(b, t, 3, 12, 12).clone()
    images = {"front": frames, "wrist": frames.clone()}
    actions = torch.randn(b, t - 1, 4, generator=g)
    state = torch.cat([torch.randn(b, 1, 4, generator=g), actions], 1).cumsum(1)  # follows the dynamics exactly
    return images, state, actions, ["a"] * b


def test_score_batch_measures_the_right_frames_and_controllability() -> None:
    images, state, actions, task = windows_batch()
    horizons = [1, 3, 8]
    other = actions.roll(1, 0)  # the actions of another window
    m = score_batch(ActionModel(), images, state, actions, task, context=2, horizons=horizons, other_actions=other)
    for h in horizons:  # a model that knows the dynamics is exact at every horizon: the indices line up
        assert m[f"front/psnr@{h}"].tolist() == pytest.approx([100.0] * 3)
        assert m[f"wrist/ssim@{h}"].tolist() == pytest.approx([1.0] * 3, abs=1e-5)
        assert m[f"state_mae@{h}"].tolist() == pytest.approx([0.0] * 3, abs=1e-5)
        # copy_last on frames 10 t: the error is 10 h grey levels
        expected = 10 * math.log10(1 / (10 * h / 255) ** 2)
        assert m[f"copy_last/front/psnr@{h}"].tolist() == pytest.approx([expected] * 3, abs=1e-3)
    assert float(m["control/state_mae"].min()) > 0.1  # other actions, other states
    s = summarize({k: v.tolist() for k, v in m.items()}, ["front", "wrist"], horizons, 8)
    assert s["controllability_state@8"] > 0.1 and s["controllability_dpsnr@8"] == pytest.approx(0.0)
    assert set(s["per_camera"]) == {"front", "wrist"} and set(s["per_camera"]["front"]) == {
        f"{w}@{h}" for w in ("psnr", "psnr_frames", "ssim") for h in horizons
    } | {"controllability_dpsnr@8"}
    assert set(s["const_velocity"]) == {f"state_mae@{h}" for h in horizons}
    assert s["copy_last"]["psnr@3"] == pytest.approx(10 * math.log10(1 / (30 / 255) ** 2), abs=1e-3)


class FrontFollowsActions(ActionModel):
    """Like ActionModel, but its front camera shows the first action's running sum (grey level 100 + 20 x sum):
    the front frames follow the actions, the wrist frames do not."""

    def rollout(self, images, state, actions, task, horizon):
        out = super().rollout(images, state, actions, task, horizon)
        c = state.shape[1]
        level = (100 + 20 * actions[:, c - 1 : c - 1 + horizon, 0].cumsum(1)).clamp(0, 255)  # (B, K)
        front = level.round().to(torch.uint8).view(*level.shape, 1, 1, 1).expand_as(out["images"]["front"])
        out["images"]["front"] = front.clone()
        return out


def test_each_camera_reports_how_much_its_frames_follow_the_actions() -> None:
    images, state, actions, task = windows_batch(b=4, seed=2)
    c, k = 2, 8
    level = (100 + 20 * actions[:, c - 1 : c - 1 + k, 0].cumsum(1)).clamp(0, 255).round().to(torch.uint8)
    images["front"][:, c:] = level.view(4, k, 1, 1, 1)  # the real front frames are what the true actions give
    m = score_batch(FrontFollowsActions(), images, state, actions, task, context=c, horizons=[1, 8],
                    other_actions=actions.roll(1, 0))  # fmt: skip
    s = summarize({name: v.tolist() for name, v in m.items()}, ["front", "wrist"], [1, 8], 8)
    front, wrist = (s["per_camera"][cam]["controllability_dpsnr@8"] for cam in ("front", "wrist"))
    assert front > 10 and wrist == pytest.approx(0.0)  # exact with the true actions, wrong with the others
    assert s["controllability_dpsnr@8"] == pytest.approx((front + wrist) / 2)


def test_dpsnr_is_zero_for_a_model_that_ignores_the_actions_and_large_for_one_that_follows_them():
    images, state, actions, task = windows_batch(b=4, seed=3)
    c, hc = 2, 8
    other = actions.roll(1, 0)
    level = (100 + 20 * other[:, c - 1 : c - 1 + hc, 0].cumsum(1)).clamp(0, 255).round().to(torch.uint8)[:, -1]
    start = {cam: v[:, c - 1].permute(0, 2, 3, 1) for cam, v in images.items()}  # (B, H, W, 3) as MuJoCo's
    front = level.view(4, 1, 1, 1).expand(4, 12, 12, 3)  # what FrontFollowsActions draws for the other actions
    sim = {"start": {"images": start, "state": state[:, 1]},
           "other": {"images": {"front": front, "wrist": start["wrist"]}, "state": state[:, -1]}}  # fmt: skip
    for model, follows in ((CopyModel(), False), (FrontFollowsActions(), True)):
        m = score_batch(model, images, state, actions, task, context=c, horizons=[1, hc], other_actions=other, sim=sim)
        cf = summarize({k: v.tolist() for k, v in m.items()}, ["front", "wrist"], [1, hc], hc)[f"counterfactual@{hc}"]
        assert cf["per_camera"]["wrist"]["dpsnr"] == pytest.approx(0.0)  # no model's wrist frames follow the actions
        if follows:
            assert cf["per_camera"]["front"]["dpsnr"] > 10 and cf["per_camera"]["front"]["psnr"] == pytest.approx(100)
        else:
            assert cf["per_camera"]["front"]["dpsnr"] == pytest.approx(0.0) and cf["dstate"] == pytest.approx(0.0)
        assert cf["replay_psnr"] == pytest.approx(100) and cf["replay_state_mae"] == pytest.approx(0.0, abs=1e-6)


def test_a_model_that_copies_scores_like_the_copy_last_baseline() -> None:
    images, state, actions, task = windows_batch(seed=1)
    images = {cam: torch.randint(0, 256, v.shape, dtype=torch.uint8) for cam, v in images.items()}
    m = score_batch(CopyModel(), images, state, actions, task, context=3, horizons=[1, 2, 7])
    s = summarize({k: v.tolist() for k, v in m.items()}, ["front", "wrist"], [1, 2, 7], 7)
    for h in (1, 2, 7):
        for key in (f"psnr@{h}", f"ssim@{h}", f"state_mae@{h}"):
            assert s[key] == s["copy_last"][key]
        assert s[f"state_mae@{h}"] != s["const_velocity"][f"state_mae@{h}"]
    assert s["controllability_dpsnr@7"] is None and s["controllability_state@7"] is None  # no other actions given


# ---- config and errors ---------------------------------------------------------------------------------------------


def test_config_defaults_and_validation() -> None:
    cfg = EvalWorldModelConfig(run="runs/a", out="x/eval.json", horizons=[8, 1, 8])
    assert cfg.rrd == "x/eval.rrd" and cfg.horizons == [1, 8]
    assert EvalWorldModelConfig(run="r", out="e.json", rrd_windows=0).rrd == ""
    assert EvalWorldModelConfig(run="r").out.endswith(".json")
    for bad in (dict(run=""), dict(horizons=[]), dict(horizons=[0, 4]), dict(out="e.txt"), dict(rrd="e.mp4"),
                dict(batch_size=0), dict(device="tpu"), dict(windows_per_episode=0)):  # fmt: skip
        with pytest.raises(ValueError):
            EvalWorldModelConfig(**({"run": "r"} | bad))


def test_a_checkpoint_of_another_kind_is_one_line(tmp_path: Path) -> None:
    ckpt = tmp_path / "run" / "best"
    ckpt.mkdir(parents=True)
    (ckpt / "config.json").write_text(json.dumps({"kind": "policy", "format": 1}))
    (ckpt / "model.safetensors").write_bytes(b"")
    for run in (tmp_path / "run", ckpt):
        with pytest.raises(GenbaError, match="not 'worldmodel'") as e:
            run_eval_worldmodel(EvalWorldModelConfig(run=str(run), out=str(tmp_path / "e.json")))
        assert "\n" not in str(e.value)
    with pytest.raises(GenbaError, match="not a genba checkpoint"):
        run_eval_worldmodel(EvalWorldModelConfig(run=str(tmp_path), out=str(tmp_path / "e.json")))


# ---- the recording -------------------------------------------------------------------------------------------------


def test_write_rrd_logs_real_and_predicted_frames_and_joints(tmp_path: Path) -> None:
    images, state, actions, task = windows_batch(b=2, t=6)
    rollout = ActionModel().rollout({c: v[:, :2] for c, v in images.items()}, state[:, :2], actions, task, 4)
    out = tmp_path / "wm.rrd"
    joints = ["shoulder pan", "elbow/flex", "wrist", "gripper"]  # names that need escaping
    write_rrd(out, ["ep3_t0", "ep5_t7"], [0, 7], ["pick", "赤い"], images, state, rollout, joints)
    assert "verified without error" in verify_rrd(out)
    rrd = read_rrd(out)
    for name, t0 in (("ep3_t0", 0), ("ep5_t7", 7)):
        for cam in ("front", "wrist"):
            assert rrd.series(entity("worldmodel", name, cam, "real"), "EncodedImage:blob")[0] == list(
                range(t0, t0 + 6)
            )
            frames, _ = rrd.series(entity("worldmodel", name, cam, "predicted"), "EncodedImage:blob")
            assert frames == list(range(t0 + 2, t0 + 6))
        b = 0 if t0 == 0 else 1
        for j, joint in enumerate(joints):
            frames, real = rrd.series(entity("worldmodel", name, "state", joint, "real"), "Scalars:scalars")
            assert frames == list(range(t0, t0 + 6))
            np.testing.assert_allclose([v[0] for v in real], state[b, :, j].numpy(), rtol=1e-6)
            frames, pred = rrd.series(entity("worldmodel", name, "state", joint, "predicted"), "Scalars:scalars")
            assert frames == list(range(t0 + 2, t0 + 6))
            np.testing.assert_allclose([v[0] for v in pred], rollout["state"][b, :, j].numpy(), rtol=1e-6)
    assert rrd.static(entity("worldmodel", "ep5_t7", "instruction"), "TextDocument:text") == ["赤い"]


# ---- the whole command on a real run (fixture: tests/worldmodel/conftest.py) ---------------------------------------


def test_eval_worldmodel_on_a_trained_run(tiny_worldmodel_run: dict, tmp_path: Path) -> None:
    run, data = tiny_worldmodel_run["run"], tiny_worldmodel_run["data"]
    out = tmp_path / "eval.json"
    cfg = EvalWorldModelConfig(run=str(run), out=str(out), horizons=[1, 2, 8], windows_per_episode=3, threads=1)
    summary = run_eval_worldmodel(cfg)
    split = json.loads((run / "best" / "split.json").read_text())
    assert summary["data"] == split["dataset"] and summary["episodes"] == len(split["val"])
    assert summary["windows"] >= summary["episodes"] and summary["context_frames"] >= 1
    cams = list(summary["per_camera"])
    assert cams and set(summary["copy_last"]["per_camera"]) == set(cams)
    for h in (1, 2, 8):
        assert 0 < summary[f"psnr@{h}"] <= 100 and -1 <= summary[f"ssim@{h}"] <= 1 and summary[f"state_mae@{h}"] >= 0
        for cam in cams:
            assert 0 < summary["per_camera"][cam][f"psnr@{h}"] <= 100
        assert summary["const_velocity"][f"state_mae@{h}"] >= 0
    if summary["windows"] > 1:
        assert math.isfinite(summary["controllability_dpsnr@8"]) and math.isfinite(summary["controllability_state@8"])
    r = summary["retrieval_r1"]
    table = fr.episode_table(fr.load_metadata(fr.resolve_root(str(data))))
    held_out_frames = sum(int(table["to"][e] - table["from"][e]) for e in split["val"])
    assert r["n_en"] + r["n_ja"] == held_out_frames  # every held-out frame is a query
    assert r["episodes_en"] + r["episodes_ja"] == summary["episodes"]
    for lang in ("en", "ja"):
        assert (r[lang] is None) == (r[f"n_{lang}"] == 0) == (r[f"ci95_{lang}"] is None)
        if r[lang] is not None:
            assert r[f"ci95_{lang}"][0] <= r[lang] <= r[f"ci95_{lang}"][1]
    assert summary["params"] > 0 and summary["train_seconds"] is not None
    pw = summary["per_window"]  # the windows' own errors, from which the summary's figures follow
    assert len(pw["episode"]) == len(pw["start"]) == summary["windows"] and set(pw["episode"]) == set(split["val"])
    for cam in cams:
        assert len(pw["metrics"][f"{cam}/mse@8"]) == summary["windows"]
        assert psnr_of_mse(sum(pw["metrics"][f"{cam}/mse@8"]) / summary["windows"]) == pytest.approx(
            summary["per_camera"][cam]["psnr@8"]
        )
    assert sum(pw["metrics"]["state_mae@8"]) / summary["windows"] == pytest.approx(summary["state_mae@8"])
    json.dumps(summary)  # the CLI writes it as JSON

    rrd = read_rrd(summary["rrd"])
    names = {e.split("/")[1] for e in rrd.entities() if e.startswith("worldmodel/")}
    assert len(names) == min(2, summary["windows"])
    for name in names:
        for cam in cams:
            assert entity("worldmodel", name, cam, "real") in rrd.entities()
            assert entity("worldmodel", name, cam, "predicted") in rrd.entities()
        assert any(e.startswith(f"worldmodel/{name}/state/") and e.endswith("/predicted") for e in rrd.entities())

    again = run_eval_worldmodel(cfg)  # deterministic
    assert {k: v for k, v in again.items() if k != "config"} == {k: v for k, v in summary.items() if k != "config"}
    with pytest.raises(GenbaError, match="validation episodes") as e:  # longer than any validation episode
        run_eval_worldmodel(EvalWorldModelConfig(run=str(run), data=str(data), out=str(out), horizons=[1, 500]))
    assert "\n" not in str(e.value)


def test_psnr_is_of_the_windows_mean_error_and_the_frame_mean_is_beside_it() -> None:
    """A window copied exactly (100 dB, the cap) and one with MSE 0.01 (20 dB): psnr@H is 10 log10(1 / 0.005), not the
    mean of 100 and 20, which the cap would decide."""
    import torch

    metrics = {"front/mse@1": [0.0, 0.01], "front/psnr@1": [100.0, 20.0], "front/ssim@1": [1.0, 0.5],
               "state_mae@1": [0.0, 0.0]}  # fmt: skip
    metrics |= {f"copy_last/{k}": v for k, v in metrics.items()} | {"const_velocity/state_mae@1": [0.0, 0.0]}
    s = summarize(metrics, ["front"], [1], 1)
    assert s["psnr@1"] == pytest.approx(10 * math.log10(1 / 0.005))
    assert s["psnr_frames@1"] == pytest.approx(60.0) and s["per_camera"]["front"]["psnr_frames@1"] == pytest.approx(
        60.0
    )
    assert float(mse(torch.zeros(2, 3, 4, 4), torch.full((2, 3, 4, 4), 0.1))[0]) == pytest.approx(0.01)
