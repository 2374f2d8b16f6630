"""`genba eval threads=`: torch's thread count in each evaluation process follows threads=, else OMP_NUM_THREADS,
else the cores divided among the workers; recorded in the summary (`threads`) and per episode as torch ran it
(`torch_threads`), through the real workers (spawned, kept, and the evaluating process itself)."""

from __future__ import annotations

import os
import textwrap

import pytest

from genba import cli
from genba.errors import GenbaError
from genba.policies.eval_worker import kept_pool
from genba.policies.evaluate import EvalConfig, run_eval
from genba.policies.ranking import RankingConfig

# a policy of the user's that loads torch in the worker (the built-ins do not), and holds the arm still
TORCH_HOLD = textwrap.dedent("""
    import torch

    from genba import keys
    from genba.policies.spec import ActionSpec, Feature, InputSpec

    class TorchHold:
        input_spec = InputSpec({keys.OBS_STATE: Feature("float32", (6,))})
        action_spec = ActionSpec(horizon=10, dim=6)

        def reset(self):
            pass

        def infer(self, obs):
            return {keys.ACTIONS: torch.as_tensor(obs[keys.OBS_STATE]).repeat(10, 1).numpy()}
""")


@pytest.fixture
def torch_policy(tmp_path, monkeypatch) -> str:
    (tmp_path / "eval_threads_policy.py").write_text(TORCH_HOLD)
    monkeypatch.syspath_prepend(str(tmp_path))  # spawned workers inherit the path
    return "eval_threads_policy:TorchHold"


def _eval(policy: str, **options) -> dict:
    return run_eval(EvalConfig(task="reach", policy=policy, episodes=2, **options))


def test_spawned_workers_follow_threads_then_omp_num_threads_then_the_cores(torch_policy, monkeypatch):
    with kept_pool():  # the same two processes take each evaluation's count in turn
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        given = _eval(torch_policy, workers=2, threads=3)  # threads= wins over OMP_NUM_THREADS
        monkeypatch.setenv("OMP_NUM_THREADS", "3")
        omp = _eval(torch_policy, workers=2)  # the caller's share of the CPU, not cores // workers
        monkeypatch.delenv("OMP_NUM_THREADS")
        split = _eval(torch_policy, workers=2)
    cores = max(1, (os.cpu_count() or 1) // 2)
    for summary, want in ((given, 3), (omp, 3), (split, cores)):
        assert summary["workers"] == 2 and summary["threads"] == want
        assert [e["torch_threads"] for e in summary["per_episode"]] == [want, want]
        assert summary["config"]["threads"] == (3 if summary is given else 0)


def test_the_evaluating_process_runs_on_threads_and_gets_its_own_back(torch_policy):
    import torch

    before = torch.get_num_threads()
    summary = _eval(torch_policy, workers=1, threads=before + 1)
    assert summary["threads"] == before + 1
    assert [e["torch_threads"] for e in summary["per_episode"]] == [before + 1] * 2
    assert torch.get_num_threads() == before


def test_a_process_that_never_loads_torch_records_none(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    summary = run_eval(EvalConfig(task="reach", policy="scripted", episodes=2, workers=2))
    assert summary["threads"] == 1 and [e["torch_threads"] for e in summary["per_episode"]] == [None, None]


def test_bad_thread_counts_are_one_line_before_any_episode(monkeypatch):
    with pytest.raises(ValueError, match=r"^threads=-1 must be an integer >= 0"):
        EvalConfig(task="reach", threads=-1)
    monkeypatch.setenv("OMP_NUM_THREADS", "lots")
    with pytest.raises(GenbaError, match=r"^OMP_NUM_THREADS='lots' is not a thread count >= 1") as e:
        run_eval(EvalConfig(task="reach", policy="scripted", episodes=1, workers=2))
    assert "\n" not in str(e.value)
    assert _eval("scripted", workers=1, threads=2)["threads"] == 2  # threads= given: OMP_NUM_THREADS is not read


def test_help_and_eval_ranking_carry_threads(capsys):
    for command in ("eval", "eval-ranking"):
        assert cli.main([command, "--help"]) == 0
        out = capsys.readouterr().out
        assert "  threads=0\n" in out and "OMP_NUM_THREADS" in out, out
    ranking = RankingConfig(worldmodel="runs/wm", policies=["scripted", "hold"], threads=3)
    assert {ranking.eval_config(b, "hold").threads for b in ("mujoco", "worldmodel")} == {3}
