"""The lerobot_env_genba plugin through LeRobot's own discovery, factory, preprocessing, rollout and lerobot-eval."""

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from lerobot.envs.configs import EnvConfig
from lerobot.envs.factory import make_env, make_env_config
from lerobot.envs.utils import env_to_policy_features, preprocess_observation
from lerobot.utils.constants import ACTION, OBS_ENV_STATE, OBS_IMAGES, OBS_STATE
from lerobot.utils.import_utils import register_third_party_plugins

import genba.sim
from genba.sim.experts import make_expert
from genba.sim.tasks import TASKS

LEROBOT_EVAL = Path(sys.executable).parent / "lerobot-eval"


@pytest.fixture(scope="module", autouse=True)
def _plugins() -> None:
    register_third_party_plugins()  # what every lerobot CLI does before parsing its arguments


def test_lerobot_discovers_the_plugin_by_its_distribution_name():
    # register_third_party_plugins imports a distribution by its Name: a normalized "lerobot-env-genba" would fail
    assert importlib.metadata.distribution("lerobot_env_genba").metadata["Name"] == "lerobot_env_genba"
    assert "genba" in EnvConfig.get_known_choices()
    cfg = make_env_config("genba", task="pick_place")
    assert cfg.type == "genba" and cfg.gym_id == "genba/PickPlace-v0" and cfg.fps == 10


def test_features_match_what_the_vector_env_emits():
    cfg = make_env_config("genba", task="reach", image_size=64)
    envs = make_env(cfg, n_envs=2, use_async_envs=False)
    assert list(envs) == ["genba"] and list(envs["genba"]) == [0]
    vec = envs["genba"][0]
    try:
        obs, info = vec.reset(seed=[0, 1])
        assert info["is_success"].tolist() == [False, False]
        assert "physics" not in info  # dropped by the plugin's wrapper (nested, keys differ between sub-envs)
        batch = preprocess_observation(obs)
        expected = env_to_policy_features(cfg)
        assert expected.pop(ACTION).shape == (6,)
        assert set(expected) == {f"{OBS_IMAGES}.front", f"{OBS_IMAGES}.wrist", OBS_STATE, OBS_ENV_STATE}
        assert set(batch) == set(expected)
        for key, feature in expected.items():
            assert tuple(batch[key].shape) == (2, *feature.shape), key
            assert batch[key].dtype == torch.float32, key
        assert expected[f"{OBS_IMAGES}.front"].shape == (3, 64, 64) and expected[OBS_ENV_STATE].shape == (35,)
        assert batch[f"{OBS_IMAGES}.wrist"].std() > 0.01  # rendered scenes, not blank frames
        assert vec.call("_max_episode_steps") == (40, 40)  # reach's time limit at 10 fps; lerobot-eval reads it
    finally:
        vec.close()


def test_options_shape_the_features():
    cfg = make_env_config("genba", task="stack", cameras=["wrist"], image_size=32, action_mode="ee_delta")
    features = env_to_policy_features(cfg)
    assert features[f"{OBS_IMAGES}.wrist"].shape == (3, 32, 32) and f"{OBS_IMAGES}.front" not in features
    assert features[ACTION].shape == (5,)
    assert cfg.gym_kwargs["lang"] == "en" and cfg.gym_kwargs["render_mode"] == "rgb_array"


class ExpertPolicy(torch.nn.Module):
    """genba's scripted experts behind LeRobot's policy interface (reset, select_action), one per sub-env; it keeps
    the `task` strings each batch carried."""

    def __init__(self, task: str, n_envs: int) -> None:
        super().__init__()
        self.experts = [make_expert(task) for _ in range(n_envs)]
        self.tasks_seen: list[list[str]] = []

    def reset(self) -> None:
        for expert in self.experts:
            expert.reset()

    def select_action(self, batch: dict) -> torch.Tensor:  # -> (B, 6)
        self.tasks_seen.append(list(batch["task"]))
        states, env_states = batch[OBS_STATE].numpy(), batch[OBS_ENV_STATE].numpy()
        actions = [
            e.act({"agent_pos": s, "environment_state": es})
            for e, s, es in zip(self.experts, states, env_states, strict=True)
        ]
        return torch.from_numpy(np.stack(actions).astype(np.float32))


def test_lerobot_rollout_counts_successes_and_passes_the_instruction():
    from lerobot.processor import PolicyProcessorPipeline, policy_action_to_transition, transition_to_policy_action
    from lerobot.scripts.lerobot_eval import rollout

    cfg = make_env_config("genba", task="reach", cameras=[])  # no rendering: the expert reads the state
    vec = make_env(cfg, n_envs=2, use_async_envs=False)["genba"][0]
    policy = ExpertPolicy("reach", vec.num_envs)
    env_pre, env_post = cfg.get_env_processors()
    # the policy's own processors (normalization) are identities here: the expert takes raw joint units
    pre = PolicyProcessorPipeline(steps=[])
    post = PolicyProcessorPipeline(
        steps=[], to_transition=policy_action_to_transition, to_output=transition_to_policy_action
    )
    try:
        data = rollout(vec, policy, env_pre, env_post, pre, post, seeds=[3, 4])
    finally:
        vec.close()
    assert data["success"].any(dim=1).tolist() == [True, True]  # the expert reaches in both sub-envs
    assert data["done"].shape[1] < 40  # terminated on success, before reach's time limit
    # the first step's batch carries each sub-env's instruction (later ones may follow same-step autoresets)
    expected = []
    for seed in (3, 4):
        env = genba.sim.make("reach", cameras=[])
        env.reset(seed=seed)
        expected.append(env.task_description)
        env.close()
    assert policy.tasks_seen[0] == expected and all(expected)
    assert all(len(tasks) == 2 for tasks in policy.tasks_seen)


def test_an_unknown_task_lists_genba_tasks():
    valid = ", ".join(TASKS)
    with pytest.raises(ValueError, match=f"^Unknown genba task 'hover'. Available: {valid}$"):
        make_env_config("genba", task="hover")


def test_bad_options_get_genba_messages():
    with pytest.raises(ValueError, match="image_size=8 must be an integer in"):
        make_env_config("genba", task="reach", image_size=8)
    with pytest.raises(ValueError, match="each must be one of front, wrist"):
        make_env_config("genba", task="reach", cameras=["top"])


def test_lerobot_eval_runs_a_lerobot_checkpoint_on_genba(tiny_lerobot_run, tmp_path):
    out = tmp_path / "eval"
    cmd = [
        str(LEROBOT_EVAL),
        "--env.type=genba",
        f"--env.task={tiny_lerobot_run['task']}",
        "--env.image_size=64",  # the checkpoint's dataset: cameras front, wrist at 64x64
        "--env.max_episode_steps=5",  # keeps the test short; the task's own limit is 40
        f"--policy.path={tiny_lerobot_run['checkpoint']}",
        "--policy.device=cpu",
        "--eval.n_episodes=2",
        "--eval.batch_size=1",
        f"--output_dir={out}",
    ]
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((out / "eval_info.json").read_text())
    assert info["overall"]["n_episodes"] == 2
    (task,) = info["per_task"]
    assert task["task_group"] == "genba"
    successes = task["metrics"]["successes"]
    assert len(successes) == 2 and all(isinstance(s, bool) for s in successes)
    assert all(Path(p).is_file() for p in info["overall"]["video_paths"])  # rendered through render_mode=rgb_array
