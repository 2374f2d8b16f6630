"""LeRobot checkpoints as genba policies (`policy=lerobot:<folder>`): the same actions as LeRobot's own evaluation
path, through genba's loop and `genba eval`, and one-line errors for folders and features that do not fit."""

import copy
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import genba.sim as sim
from genba import keys
from genba.cli import main
from genba.errors import GenbaError
from genba.policies.evaluate import env_options
from genba.policies.lerobot import LeRobotPolicy
from genba.policies.registry import policy_factory
from genba.policies.rollout import rollout
from genba.policies.spec import ActionSpec, Feature, InputSpec
from genba.sim.arm import policy_observation

IMAGE = 64  # the fixture's cameras


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MUJOCO_GL", "egl")


@pytest.fixture(scope="module")
def diffusion_checkpoint(tiny_lerobot_run, tmp_path_factory):
    """Diffusion Policy (n_obs_steps 2, horizon 16, n_action_steps 8) trained 2 steps on the fixture's dataset."""
    from genba.policies.baseline import CHECKPOINT, BaselineConfig, run_baseline

    out = tmp_path_factory.mktemp("dp") / "run"
    run_baseline(BaselineConfig(algo="diffusion", data=str(tiny_lerobot_run["data"]), out=str(out), steps=2,
                                batch_size=2))  # fmt: skip
    return out / CHECKPOINT


def lerobot_own(checkpoint):
    """The checkpoint loaded the way lerobot-eval and LeRobot's policy server load it: (policy, pre, post)."""
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.policies.factory import get_policy_class, make_pre_post_processors

    cfg = PreTrainedConfig.from_pretrained(checkpoint)
    cfg.pretrained_path, cfg.device = checkpoint, "cpu"
    policy = get_policy_class(cfg.type).from_pretrained(checkpoint, config=cfg)
    policy.eval()
    pre, post = make_pre_post_processors(cfg, pretrained_path=str(checkpoint),
                                         preprocessor_overrides={"device_processor": {"device": "cpu"}})  # fmt: skip
    return policy, pre, post


def lerobot_batch(env_obs: dict, instruction: str) -> dict:
    """What lerobot_eval.rollout hands the preprocessor for one env of a vector env (batch 1)."""
    from lerobot.envs.utils import preprocess_observation

    batched = {
        keys.PIXELS: {cam: img[None] for cam, img in env_obs[keys.PIXELS].items()},
        keys.AGENT_POS: env_obs[keys.AGENT_POS][None],
        keys.ENV_STATE: env_obs[keys.ENV_STATE][None],
    }
    batch = preprocess_observation(batched)
    batch[keys.TASK] = [instruction]
    return batch


def genba_obs(policy, env_obs: dict, instruction: str) -> dict:
    """What genba's loop hands the policy: SimArm's observation cut to the input spec and checked."""
    raw = policy_observation(env_obs, instruction)
    return policy.input_spec.validate({k: v for k, v in raw.items() if k in policy.input_spec.features})


def env_observations(n: int, seed: int = 0) -> tuple[list[dict], str]:
    """`n` consecutive observations of a reach episode (the arm nudged each step), copied: renderers reuse buffers."""
    env = sim.make("reach", image_size=IMAGE)
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    out = [copy.deepcopy(obs)]
    for _ in range(n - 1):
        target = obs[keys.AGENT_POS] + rng.uniform(-0.05, 0.05, 6).astype(np.float32)
        obs, *_ = env.step(target)
        out.append(copy.deepcopy(obs))
    instruction = env.unwrapped.task_description
    env.close()
    return out, instruction


def test_act_chunk_is_lerobots_own(tiny_lerobot_run):
    ckpt = tiny_lerobot_run["checkpoint"]
    adapter = LeRobotPolicy(ckpt, device="cpu")
    assert not adapter.stepwise and adapter.action_spec.horizon == 10 and adapter.action_spec.dim == 6  # n_action_steps
    assert adapter.input_spec.features[keys.image_key("front")] == Feature("uint8", (IMAGE, IMAGE, 3))
    assert adapter.input_spec.features[keys.OBS_ENV_STATE].shape == (35,)
    assert not adapter.input_spec.features[keys.TASK].required  # ACT reads no language
    (first, second), instruction = env_observations(2)
    ours = adapter.infer(genba_obs(adapter, first, instruction))[keys.ACTIONS]
    assert ours.shape == (10, 6) and ours.dtype == np.float32

    policy, pre, post = lerobot_own(ckpt)
    with torch.inference_mode():
        chunk = policy.predict_action_chunk(pre(lerobot_batch(first, instruction)))  # (1, 20, 6)
        direct = torch.stack([post(chunk[:, i]) for i in range(10)], dim=1)[0].numpy()
        policy.reset()  # lerobot-eval: select_action pops its queue, one row per step, from one prediction
        stepped = np.stack([post(policy.select_action(pre(lerobot_batch(first, instruction))))[0].numpy()
                            for _ in range(10)])  # fmt: skip
    diff = max(np.abs(ours - direct).max(), np.abs(ours - stepped).max())
    print(f"ACT: max |adapter - LeRobot| = {diff:.3g}")
    assert diff <= 1e-6
    # the comparison is not vacuous: another observation gives other actions
    other = adapter.infer(genba_obs(adapter, second, instruction))[keys.ACTIONS]
    assert np.abs(other - ours).max() > 1e-4
    # stateless, so the server may batch clients: a batch answers as its members would alone
    batched = adapter.infer_batch([genba_obs(adapter, o, instruction) for o in (first, second)])
    np.testing.assert_allclose(np.stack([b[keys.ACTIONS] for b in batched]), np.stack([ours, other]), atol=1e-5)


def test_diffusion_keeps_its_observation_history_like_lerobot_eval(diffusion_checkpoint):
    adapter = LeRobotPolicy(diffusion_checkpoint, device="cpu")
    # n_obs_steps=2: the policy must see every step's observation, so genba asks it every step (horizon 1)
    assert adapter.stepwise and adapter.action_spec.horizon == 1 and not hasattr(adapter, "infer_batch")
    seq, instruction = env_observations(12)
    torch.manual_seed(0)  # diffusion samples its noise from torch's global generator
    adapter.reset()
    ours = np.concatenate([adapter.infer(genba_obs(adapter, o, instruction))[keys.ACTIONS] for o in seq])

    policy, pre, post = lerobot_own(diffusion_checkpoint)
    torch.manual_seed(0)
    policy.reset()  # lerobot_eval.rollout: reset, then select_action on every step's observation
    with torch.inference_mode():
        theirs = np.concatenate([post(policy.select_action(pre(lerobot_batch(o, instruction)))).numpy() for o in seq])
    diff = np.abs(ours - theirs).max()
    print(f"diffusion: max |adapter - lerobot_eval loop| over {len(seq)} steps = {diff:.3g}")
    assert ours.shape == (12, 6) and diff <= 1e-6

    # the chunk predicted at step 8 was conditioned on steps 7 and 8: a different step 7 changes it
    torch.manual_seed(0)
    adapter.reset()
    changed = [*seq[:7], seq[0], *seq[8:]]
    again = np.concatenate([adapter.infer(genba_obs(adapter, o, instruction))[keys.ACTIONS] for o in changed])
    np.testing.assert_array_equal(again[:8], ours[:8])
    assert np.abs(again[8:] - ours[8:]).max() > 1e-5


def test_runs_in_genbas_loop_chunk_by_chunk(tiny_lerobot_run):
    policy = policy_factory(f"lerobot:{tiny_lerobot_run['checkpoint']}", device="cpu")()
    episode = rollout(sim.make("reach", image_size=IMAGE), policy, seed=3, record=True)
    assert episode.steps > 0 and episode.errors == 0
    assert episode.requests == -(-episode.steps // 10)  # one prediction per 10 executed steps
    # the loop executed the first chunk as the policy answered it for the first observation
    first = {k: v[0] for k, v in episode.frames.items() if k in policy.input_spec.features}
    first[keys.TASK] = episode.task
    expected = policy.infer(first)[keys.ACTIONS]
    np.testing.assert_array_equal(episode.frames[keys.ACTION][: min(10, episode.steps)], expected[: episode.steps])


def test_diffusion_runs_in_genbas_loop(diffusion_checkpoint):
    policy = policy_factory(f"lerobot:{diffusion_checkpoint}", device="cpu")()
    episode = rollout(sim.make("reach", image_size=IMAGE, max_episode_steps=12), policy, seed=3)
    assert episode.steps == 12 and episode.requests == 12 and episode.errors == 0


def test_genba_eval_runs_a_lerobot_checkpoint(tiny_lerobot_run, tmp_path, capsys):
    out = tmp_path / "eval.json"
    argv = ["eval", "task=reach", f"policy=lerobot:{tiny_lerobot_run['checkpoint']}", "episodes=2", f"out={out}"]
    assert main(argv) == 0, capsys.readouterr().err[-2000:]
    summary = json.loads(out.read_text())
    assert summary["policy"] == "lerobot-act" and summary["episodes"] == 2
    assert all(e["steps"] > 0 and e["errors"] == 0 for e in summary["per_episode"])


def test_a_run_folder_names_its_last_checkpoint(tiny_lerobot_run):
    policy = LeRobotPolicy(tiny_lerobot_run["run"], device="cpu", horizon=20)  # `genba baseline`'s out=
    assert policy.path == tiny_lerobot_run["checkpoint"]
    assert policy.action_spec.horizon == 20  # ACT's whole chunk, for the loop to overlap and blend
    with pytest.raises(GenbaError, match=r"horizon=21: lerobot-act predicts chunks of 20 actions"):
        LeRobotPolicy(tiny_lerobot_run["run"], device="cpu", horizon=21)


def test_importing_the_registry_does_not_import_lerobot():
    code = "import sys, genba.policies.registry; assert 'lerobot' not in sys.modules, 'lerobot imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def _one_line_eval(capsys, policy: str, tmp_path) -> str:
    assert main(["eval", "task=reach", f"policy={policy}", "episodes=1", f"out={tmp_path / 'e.json'}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and not (tmp_path / "e.json").exists(), err
    return err


def test_a_folder_that_is_not_a_checkpoint_is_one_line(tiny_lerobot_run, tmp_path, capsys):
    err = _one_line_eval(capsys, f"lerobot:{tmp_path}", tmp_path)
    assert "is not a LeRobot policy checkpoint: no config.json, model.safetensors, policy_preprocessor.json, " \
           "policy_postprocessor.json" in err  # fmt: skip
    assert "no such folder" in _one_line_eval(capsys, f"lerobot:{tmp_path / 'nope'}", tmp_path)
    old = tmp_path / "old"
    shutil.copytree(tiny_lerobot_run["checkpoint"], old)
    (old / "policy_preprocessor.json").unlink()
    err = _one_line_eval(capsys, f"lerobot:{old}", tmp_path)
    assert "no policy_preprocessor.json in" in err and "migrate_policy_normalization" in err
    with pytest.raises(GenbaError, match=r"policy=lerobot: needs a checkpoint folder"):
        policy_factory("lerobot:")
    broken = tmp_path / "broken"
    shutil.copytree(tiny_lerobot_run["checkpoint"], broken)
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    assert "LeRobot cannot load it" in _one_line_eval(capsys, f"lerobot:{broken}", tmp_path)


def test_a_camera_the_env_lacks_is_one_line_before_any_episode(tiny_lerobot_run, tmp_path, capsys):
    ckpt = tmp_path / "top"
    shutil.copytree(tiny_lerobot_run["checkpoint"], ckpt)
    config = json.loads((ckpt / "config.json").read_text())
    config["input_features"] = {k.replace(".front", ".top"): v for k, v in config["input_features"].items()}
    (ckpt / "config.json").write_text(json.dumps(config))
    err = _one_line_eval(capsys, f"lerobot:{ckpt}", tmp_path)
    assert "lerobot-act reads observation.images.top uint8[64x64x3]; a genba env gives" in err
    assert "observation.images.{front,wrist} uint8[SxSx3]" in err and "eval reach" not in err


class _Reads:  # a genba policy that reads one feature (env_options is genba's check, not LeRobot's)
    def __init__(self, key: str, feature: Feature) -> None:
        self.name, self.input_spec, self.action_spec = "wants", InputSpec({key: feature}), ActionSpec(1, 6)


@pytest.mark.parametrize(
    ("key", "feature", "said"),
    [
        (keys.OBS_STATE, Feature("float32", (7,)), "wants reads observation.state float32[7]; a genba env gives "
                                                   "observation.state float32[6], observation.environment_state "
                                                   "float32[35]"),
        (keys.OBS_ENV_STATE, Feature("float32", (10,)), "observation.environment_state float32[10]; a genba env"),
        (keys.image_key("front"), Feature("uint8", (64, 64, 1)), "observation.images.front uint8[64x64x1]; a genba"),
        ("observation.velocity", Feature("float32", (6,)), "reads observation.velocity float32[6]; a genba env"),
    ],
)  # fmt: skip
def test_features_the_env_cannot_give_are_named_on_both_sides(key, feature, said):
    with pytest.raises(GenbaError) as info:
        env_options(_Reads(key, feature))
    assert said in str(info.value) and "\n" not in str(info.value)


def test_env_options_of_a_lerobot_checkpoint(tiny_lerobot_run):
    policy = LeRobotPolicy(tiny_lerobot_run["checkpoint"], device="cpu")
    assert env_options(policy) == {"cameras": ["front", "wrist"], "image_size": IMAGE}
    assert env_options(_Reads(keys.depth_key("wrist"), Feature("float32", (32, 32, 1)))) == {
        "cameras": ["wrist"], "image_size": 32, "depth": True}  # fmt: skip
