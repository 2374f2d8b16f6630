"""One attempt of `genba collect`, in whichever process simulates it: build (once per process) the env of the job's
options, run the job's policy through the one episode loop, speak the instruction when asked, and return plain data
for the writer. A top-level function of plain-dict input, so that spawned workers and Ray tasks can run it.

Policies: attempt j acts with `policies[j mod n]`: `scripted` (the task's expert, with the job's `noise`), or a
built-in weak policy from the registry (`hold`, `random`, `scripted:noise=0.3`; weak policies give a world model's
success head its failures), or a VLA run folder (loaded once per process); their random draws come from NumPy's and
torch's generators, seeded with the attempt's seed. With `clean_labels` (the expert with noise > 0), the arm executes
the noisy actions and the `action` column holds the expert's clean ones (its `clean_actions`, DART-style labels for
the states the noise leads to). With the env option `after_success`, the frames carry
`next.success` (T, 1) bool: the task's predicate after each action, from the env's `success_trace`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from genba import keys

_ENVS: dict[tuple, Any] = {}  # per process: building the env (and its renderer) once, not per episode
_POLICIES: dict[str, Any] = {}  # per process: a VLA run loaded once


def close_envs() -> None:
    while _ENVS:
        _ENVS.popitem()[1].close()
    _POLICIES.clear()


def _policy(name: str, task: str, seed: int, fps: int) -> Any:
    """A built-in policy, made per attempt (its options may take the seed), or a VLA, loaded once per process."""
    from genba.policies.registry import builtin_options, policy_factory

    if builtin_options(name):
        return policy_factory(name, task=task, seed=seed, fps=fps, horizon=1)()
    if name not in _POLICIES:
        _POLICIES[name] = policy_factory(name, task=task, fps=fps)()
    return _POLICIES[name]


def simulate_episode(job: dict) -> dict:
    """Run one attempt; returns {"frames": {feature: (T, ...) array}, "task", "success", "seed", ...}."""
    from genba.policies.rollout import rollout, seed_everything
    from genba.policies.scripted import ScriptedPolicy
    from genba.sim import make
    from genba.sim.render import offscreen_samples

    samples = job.get("samples")
    run = job.get("worldmodel")
    env_key = (job["task"], tuple(sorted((k, str(v)) for k, v in job["env"].items())), samples, run)
    if env_key not in _ENVS and run:  # imagined episodes (genba.worldmodel is above datasets: imported here)
        from genba.worldmodel import make_env

        _ENVS[env_key] = make_env(job["task"], run=run, **job["env"])
    if env_key not in _ENVS:
        _ENVS[env_key] = make(job["task"], **job["env"])
    env = _ENVS[env_key]
    seed = job["base_seed"] + job["attempt"]
    fps = env.unwrapped.fps
    policies = job.get("policies") or ["scripted"]
    policy = policies[job["attempt"] % len(policies)]
    if policy == "scripted":
        expert = ScriptedPolicy(job["task"], noise=job["noise"], seed=seed, fps=fps)
    else:  # a built-in weak policy or a VLA; their random draws come from the global generators
        seed_everything(seed)
        expert = _policy(policy, job["task"], seed, fps)
    with offscreen_samples(samples):  # the env makes its renderer at its first reset, inside the rollout
        episode = rollout(env, expert, seed, record=True)
    if job.get("clean_labels"):  # the states the noisy actions led to, labelled with what the expert meant
        clean = expert.expert.clean_actions
        assert len(clean) == episode.steps, (len(clean), episode.steps)  # one act() per sent action (horizon 1)
        episode.frames[keys.ACTION] = np.stack(clean)
    if job["env"].get("after_success"):  # (T, 1) bool: the predicate after each action, also after the success
        episode.frames[keys.NEXT_SUCCESS] = np.asarray(env.unwrapped.success_trace, bool)[: episode.steps, None]
    spec = env.unwrapped.episode_spec()
    speech = {}
    if job.get("audio"):  # synthesized here, in the worker: TTS is the slow part, the writer takes bytes
        from genba.speech.instruction import parse_voices, speak_instruction

        audio = job["audio"]
        voices = parse_voices(audio["voices"], (spec["lang"],))
        flac, meta = speak_instruction(episode.task, spec["lang"], voices, seed, audio["noise"], audio["snr"])
        speech = {"audio_flac": flac, "audio": meta}
    return speech | {
        "frames": episode.frames,  # every array the arm observed (the dataset's features) and the actions
        "task": episode.task,
        "seed": seed,
        "attempt": job["attempt"],
        "success": episode.success,
        "length": episode.steps,
        "truncation_reason": episode.truncation_reason,
        "noise": job["noise"],
        **({"clean_labels": True} if job.get("clean_labels") else {}),
        **({"policy": policy} if policies != ["scripted"] else {}),
        "physics": spec["physics"],
        "spec": spec,
        **({"synthetic": True, "worldmodel": run} if run else {}),  # imagined by the world model
    }
