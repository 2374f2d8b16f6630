"""`genba baseline`: LeRobot's own trainer on a genba dataset, a normal LeRobot checkpoint out."""

import json

import pytest

from genba.cli import main
from genba.policies.baseline import ALGOS


def test_act_run_is_a_lerobot_checkpoint(tiny_lerobot_run):
    ckpt = tiny_lerobot_run["checkpoint"]
    config = json.loads((ckpt / "config.json").read_text())
    assert config["type"] == "act" and config["pretrained_backbone_weights"] is None  # nothing downloaded
    assert (ckpt / "model.safetensors").is_file() and (ckpt / "policy_preprocessor.json").is_file()
    assert "observation.images.front" in config["input_features"]
    assert (tiny_lerobot_run["run"] / "train.log").is_file()


def test_diffusion_trains_and_the_summary_says_how(tmp_path, tiny_lerobot_run, capsys):
    out = tmp_path / "dp"
    argv = ["baseline", "algo=diffusion", f"data={tiny_lerobot_run['data']}", f"out={out}", "steps=2", "batch_size=2"]
    assert main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["algo"] == "diffusion" and summary["device"] == "cpu" and summary["steps"] == 2
    assert summary["final_loss"] is not None and summary["final_loss"] > 0
    config = json.loads((out / "checkpoints/last/pretrained_model/config.json").read_text())
    assert config["type"] == "diffusion" and config["horizon"] == 16 and config["pretrained_backbone_weights"] is None


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("algo=pi0", "unknown algo 'pi0' (valid: act, diffusion)"),
        ("data=/nonexistent/ds", "is not a LeRobotDataset v3 folder"),
        ("args=[lr]", "'lr' is not a lerobot-train option"),
    ],
)
def test_bad_input_is_one_line(capsys, override, message):
    assert main(["baseline", "data=/nonexistent/ds", override]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_an_existing_run_is_never_overwritten(tiny_lerobot_run, capsys):
    run = tiny_lerobot_run["run"]
    assert main(["baseline", f"data={tiny_lerobot_run['data']}", f"out={run}", "steps=1"]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (run / "checkpoints").is_dir()


def test_a_run_past_its_time_limit_is_one_line_and_keeps_its_log(tmp_path, tiny_lerobot_run, capsys):
    out = tmp_path / "slow"  # lerobot-train takes longer than 1 s to import, let alone to train 1000 steps
    argv = ["baseline", f"data={tiny_lerobot_run['data']}", f"out={out}", "steps=1000", "timeout_s=1"]
    assert main(argv) == 2
    lines = capsys.readouterr().err.splitlines()  # the run's announcement, then the error
    assert len(lines) == 2 and "lerobot-train ran past timeout_s=1 and was stopped" in lines[1]
    assert (tmp_path / "slow.train.log").is_file()


def test_every_algo_starts_from_random_backbones():
    for args in ALGOS.values():
        assert "--policy.pretrained_backbone_weights=null" in args
