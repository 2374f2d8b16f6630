"""`genba train-policy` and a VLA run as a policy (genba.policies.train_command, genba.policies.vla_policy)."""

import json

import numpy as np
import pytest
import safetensors.torch
import torch

from genba import keys
from genba.errors import GenbaError
from genba.policies.contract import check_actions
from genba.policies.evaluate import EvalConfig, run_eval
from genba.policies.registry import policy_factory
from genba.policies.train_command import TrainPolicyConfig, build, run_train_policy
from genba.policies.vla_policy import VLAPolicy
from genba.train.checkpoint import STATS, WEIGHTS


def test_the_run_is_a_checkpoint_with_stats_split_and_the_training_seeds(tiny_vla_run):
    run, summary = tiny_vla_run["run"], tiny_vla_run["summary"]
    config = json.loads((run / "last" / "config.json").read_text())
    assert config["kind"] == "vla" and config["cameras"] == ["front", "wrist"] and config["image_size"] == 64
    assert (run / "last" / WEIGHTS).is_file() and (run / "last" / STATS).is_file()
    split = json.loads((run / "split.json").read_text())
    assert len(split["train"]) == 5 and len(split["val"]) == 1
    saved = json.loads((run / "train_summary.json").read_text())
    assert saved["steps"] == summary["steps"] == 3
    # collect's seeds are 0.. (all six attempts succeeded or not, the training ones are a subset of them)
    assert saved["train_seeds"]["count"] == 5 and saved["train_seeds"]["max"] < 1_000_000
    assert saved["tasks"] and all(isinstance(t, str) for t in saved["tasks"])


def test_a_second_run_into_the_same_folder_is_refused(tiny_vla_run):
    with pytest.raises(GenbaError, match="resume=true"):
        build(TrainPolicyConfig(data=str(tiny_vla_run["data"]), out=str(tiny_vla_run["run"]), progress=False))


def test_bad_options_are_one_line(tmp_path):
    with pytest.raises(GenbaError, match="preset="):
        TrainPolicyConfig(data="x", preset="huge")
    with pytest.raises(GenbaError, match="head="):
        TrainPolicyConfig(data="x", head="ddpm")
    with pytest.raises(GenbaError, match="data= is required"):
        TrainPolicyConfig()


def test_the_run_meets_the_policy_contract_through_the_registry(tiny_vla_run):
    policy = policy_factory(str(tiny_vla_run["run"]))()
    spec = policy.input_spec.features
    assert spec[keys.image_key("front")].shape == (64, 64, 3) and spec[keys.OBS_STATE].shape == (6,)
    assert spec[keys.TASK].dtype == "str" and policy.action_spec.horizon == 8 and policy.action_spec.dim == 6
    rng = np.random.default_rng(0)
    obs = {k: rng.integers(0, 256, f.shape, dtype=np.uint8) for k, f in spec.items() if f.dtype == "uint8"}
    obs |= {keys.OBS_STATE: np.zeros(6, np.float32), keys.TASK: "reach for the red cube"}
    policy.reset()
    first = check_actions(policy.infer(policy.input_spec.validate(obs)), policy.action_spec)
    second = check_actions(policy.infer(obs), policy.action_spec)
    policy.reset()
    again = check_actions(policy.infer(obs), policy.action_spec)
    assert first.shape == (8, 6) and np.array_equal(first, again) and not np.array_equal(first, second)


def test_a_folder_that_is_not_a_vla_run_is_one_line(tmp_path):
    with pytest.raises(GenbaError, match="not a VLA run"):
        policy_factory(str(tmp_path))
    with pytest.raises(GenbaError, match="neither a training run"):
        VLAPolicy(str(tmp_path / "missing"))


def test_n_action_steps_beyond_the_horizon_is_refused(tiny_vla_run):
    with pytest.raises(GenbaError, match="n_action_steps=17"):
        VLAPolicy(str(tiny_vla_run["run"]), n_action_steps=17)


def test_genba_eval_runs_the_vla_in_mujoco(tiny_vla_run, tmp_path):
    summary = run_eval(EvalConfig(task="reach", policy=str(tiny_vla_run["run"]), episodes=2, out=str(tmp_path / "e")))
    assert summary["episodes"] == 2 and summary["policy"] == "vla:vla"
    assert 0 <= summary["success_rate"] <= 1


def test_init_starts_the_backbone_from_a_world_model(tiny_worldmodel_run, tiny_vla_run, tmp_path):
    data, wm = tiny_worldmodel_run["data"], tiny_worldmodel_run["run"]
    parts = build(TrainPolicyConfig(data=str(data), out=str(tmp_path / "vla"), init=str(wm), progress=False))
    weights = safetensors.torch.load_file(str(wm / "last" / WEIGHTS))
    ours = parts["model"].backbone.state_dict()
    assert all(torch.equal(ours[k], weights[f"backbone.{k}"]) for k in ours)
    scratch = build(TrainPolicyConfig(data=str(data), out=str(tmp_path / "vla2"), progress=False))
    theirs = scratch["model"].backbone.state_dict()
    assert not torch.equal(theirs["vision.patch_embed.proj.weight"], ours["vision.patch_embed.proj.weight"])
    with pytest.raises(GenbaError):
        build(TrainPolicyConfig(data=str(data), out=str(tmp_path / "vla3"), init=str(tiny_vla_run["run"])))


def test_training_resumes_exactly(tiny_vla_run, tmp_path):
    data = str(tiny_vla_run["data"])
    full = run_train_policy(TrainPolicyConfig(data=data, out=str(tmp_path / "a"), steps=4, batch_size=2,
                                              progress=False))  # fmt: skip
    cut = TrainPolicyConfig(data=data, out=str(tmp_path / "b"), steps=4, batch_size=2, progress=False)
    parts = build(cut)
    from genba.train.loop import train

    parts["train"].stop_at = 2
    train(parts["train"], parts["model"], parts["data"], stats=parts["stats"], split=parts["split"])
    resumed = run_train_policy(TrainPolicyConfig(data=data, out=str(tmp_path / "b"), steps=4, batch_size=2,
                                                 resume=True, progress=False))  # fmt: skip
    assert resumed["final_loss"] == pytest.approx(full["final_loss"], rel=1e-6)


def test_a_multi_task_dataset_in_two_languages_trains_one_policy(tmp_path):
    """reach in English and push in Japanese, merged by lerobot's own aggregate_datasets: one VLA over both."""
    from lerobot.datasets.aggregate import aggregate_datasets

    from genba.datasets.collect import CollectConfig, run_collect

    parts = {"reach": "en", "push": "ja"}
    for task, lang in parts.items():
        run_collect(CollectConfig(task=task, episodes=2, image_size=64, lang=lang, out=str(tmp_path / task)))
    merged = tmp_path / "both"
    aggregate_datasets([f"genba/{t}" for t in parts], "genba/both", roots=[tmp_path / t for t in parts],
                       aggr_root=merged)  # fmt: skip
    summary = run_train_policy(TrainPolicyConfig(data=str(merged), out=str(tmp_path / "vla"), steps=2, batch_size=4,
                                                 val_fraction=0.0, progress=False))  # fmt: skip
    tasks = summary["tasks"]
    assert any(t.isascii() for t in tasks) and any(not t.isascii() for t in tasks)  # both languages
    assert summary["frames"]["train"] == sum(
        json.loads((tmp_path / t / "meta" / "info.json").read_text())["total_frames"] for t in parts
    )
    policy = policy_factory(str(tmp_path / "vla"))()
    for task in parts:  # one policy, evaluated on each task
        assert run_eval(EvalConfig(task=task, policy=str(tmp_path / "vla"), episodes=1, workers=1))["episodes"] == 1
    assert policy.action_spec.dim == 6


def test_a_preset_of_your_own_is_a_yaml_file(tiny_vla_run, tmp_path):
    from genba.policies.train_command import PRESET_DIR

    own = tmp_path / "mine.yaml"
    own.write_text((PRESET_DIR / "tiny.yaml").read_text().replace("patch_size: 16", "patch_size: 8"))
    cfg = TrainPolicyConfig(data=str(tiny_vla_run["data"]), out=str(tmp_path / "run"), preset=str(own), batch_size=4,
                            progress=False)  # fmt: skip
    parts = build(cfg)
    assert parts["model"].config.backbone.patch_size == 8
    with pytest.raises(GenbaError, match=r"an existing \.yaml file"):
        TrainPolicyConfig(data="x", preset=str(tmp_path / "missing.yaml"))


def test_the_environment_state_loss_reads_the_dataset_and_saves_its_stats(tiny_vla_run, tmp_path):
    from genba.policies.train_command import PRESET_DIR

    own = tmp_path / "aux.yaml"
    own.write_text((PRESET_DIR / "tiny.yaml").read_text().replace("w_contrastive: 0.1", "w_env_state: 1.0"))
    cfg = TrainPolicyConfig(data=str(tiny_vla_run["data"]), out=str(tmp_path / "run"), preset=str(own), steps=2,
                            batch_size=4, progress=False)  # fmt: skip
    summary = run_train_policy(cfg)
    assert np.isfinite(summary["final_loss"])
    policy = VLAPolicy(str(tmp_path / "run"))
    dim = policy.model.config.env_state_dim
    assert (
        dim
        == json.loads((tiny_vla_run["data"] / "meta" / "info.json").read_text())["features"][keys.OBS_ENV_STATE][
            "shape"
        ][0]
    )
    stats = json.loads((tmp_path / "run" / "last" / STATS).read_text())
    assert policy.model.env_state_mean.tolist() == pytest.approx(stats[keys.OBS_ENV_STATE]["mean"])
    assert keys.OBS_ENV_STATE not in policy.input_spec.features  # training only: acting never reads it


def test_the_policy_acts_with_the_ema_weights_when_the_run_kept_them(tiny_vla_run):
    run = str(tiny_vla_run["run"])
    ema, raw = VLAPolicy(run), VLAPolicy(run, ema="no")
    assert ema.ema and not raw.ema  # the tiny preset trains with ema > 0
    differ = [k for k, v in ema.model.state_dict().items() if not torch.equal(v, raw.model.state_dict()[k])]
    assert differ  # three steps of training moved the raw weights away from their average
    with pytest.raises(GenbaError, match="ema="):
        VLAPolicy(run, ema="maybe")


def test_a_builtin_name_wins_over_a_folder_of_that_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "random").mkdir()  # not a VLA run: read as a folder, it would be an error
    assert policy_factory("random")().name == "random"
