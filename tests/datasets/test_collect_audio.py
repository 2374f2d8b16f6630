"""`genba collect audio=true`: each episode's instruction spoken in its language by a voice of the set, stored as a
FLAC beside genba's metadata; LeRobot loads the dataset as before; a kill between the audio file and the commit
loses nothing committed and leaves no stray file; bad audio options are one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from genba import keys
from genba.cli import main
from genba.datasets.commit import AUDIO_DIR, read_episode_audio, read_episode_meta
from genba.datasets.writer import repo_id_for
from genba.speech import Voice

pytestmark = pytest.mark.xdist_group("datasets_collect_audio")

VOICES = "[espeak:en-us+f3,kokoro:jm_kumo,openjtalk:mei:1.1]"
BASE = ["task=reach", "image_size=32", "cameras=[front]", "lang=mixed", "audio=true", f"voices={VOICES}"]


def collect(out: Path, episodes: int, *extra: str) -> int:
    return main(["collect", *BASE, f"episodes={episodes}", f"out={out}", *extra])


@pytest.fixture(scope="module")
def spoken(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("audio") / "reach"
    assert collect(out, 3, "audio_noise=motor", "audio_snr=15") == 0
    return out


def test_every_episode_is_spoken_in_its_language(spoken: Path) -> None:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset(repo_id_for(spoken), root=spoken)  # meta/genba/audio is invisible to LeRobot
    assert ds.num_episodes == 3 and keys.OBS_AUDIO not in ds.features
    langs = set()
    for i in range(3):
        meta = read_episode_meta(spoken, i)
        audio = meta["audio"]
        lang = audio["lang"]
        langs.add(lang)
        assert lang == meta["spec"]["lang"] and lang in Voice.parse(audio["voice"]).languages
        assert audio["voice"] in VOICES and audio["noise"] == "motor" and audio["snr_db"] == 15
        assert audio["path"] == f"{AUDIO_DIR}/episode_{i:06d}.flac"
        wave, sr = read_episode_audio(spoken, i)
        assert sr == keys.AUDIO_SAMPLE_RATE == audio["sample_rate"]
        assert wave.dtype == np.float32 and wave.size == pytest.approx(audio["seconds"] * sr, abs=sr / 1000)
        assert 0.5 < audio["seconds"] < 5 and np.sqrt(np.mean(wave**2)) > 0.05
    assert langs == {"en", "ja"}  # lang=mixed: both languages among seeds 0..2


def test_without_audio_nothing_changes(tmp_path: Path) -> None:
    out = tmp_path / "plain"
    assert main(["collect", "task=reach", "episodes=1", "image_size=32", "cameras=[front]", f"out={out}"]) == 0
    assert "audio" not in read_episode_meta(out, 0) and not (out / AUDIO_DIR).exists()
    assert read_episode_audio(out, 0) is None


def test_kill_after_the_audio_file_before_the_commit(tmp_path: Path) -> None:
    out = tmp_path / "killed"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"} | {"GENBA_KILL_AT": "audio:1"}
    args = [*BASE, "episodes=2", "voices=[espeak:en-us,espeak:ja]", f"out={out}"]
    proc = subprocess.run([sys.executable, "-m", "genba", "collect", *args], env=env, capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    assert json.loads((out / "meta/genba/commit.json").read_text())["episodes"] == 1
    assert (out / AUDIO_DIR / "episode_000001.flac").exists()  # written, not yet listed or committed
    assert main(["collect", *args[:-1], "episodes=1", f"out={out}"]) == 0  # reopening cleans up
    assert sorted(p.name for p in (out / AUDIO_DIR).iterdir()) == ["episode_000000.flac"]
    assert main(["collect", *args]) == 0  # and continues
    assert read_episode_audio(out, 1)[0].size > 0
    assert sorted(p.name for p in (out / AUDIO_DIR).iterdir()) == ["episode_000000.flac", "episode_000001.flac"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["voices=[espeak:en-us]"], "need audio=true"),
        (["audio=true", "executor=ray"], "needs executor=local"),
        (["audio=true", "lang=ja", "voices=[espeak:en-us]"], "no voice that speaks 'ja'"),
        (["audio=true", "voices=[kokoro:af_bella]"], "not one of jf_alpha"),
        (["audio=true", "audio_noise=rain"], "audio_noise='rain'"),
    ],
)
def test_bad_audio_options_are_one_line(tmp_path: Path, capsys, overrides: list[str], message: str) -> None:
    assert main(["collect", "task=reach", "episodes=1", f"out={tmp_path / 'x'}", *overrides]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "x").exists()


def test_other_voices_are_another_dataset(spoken: Path, capsys) -> None:
    assert collect(spoken, 3, "audio_noise=motor", "audio_snr=15", "voices=[espeak:en-us,espeak:ja]") == 2
    assert "voices=" in capsys.readouterr().err
