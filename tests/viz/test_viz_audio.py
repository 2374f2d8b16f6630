"""`genba viz` of an episode collected with audio=true: the spoken instruction is in the .rrd as a WAV asset that
Rerun's audio view plays from time 0, equal to the stored FLAC, with its envelope plotted and both views in the
blueprint; a missing audio file costs the audio, not the episode."""

from __future__ import annotations

import io
import json
import wave
from pathlib import Path

import numpy as np
import pytest
from viz_collect import collect_reach

from genba.cli import main
from genba.datasets.commit import read_episode_audio, read_episode_meta
from genba.viz.log import AUDIO, ENVELOPE
from genba.viz.readback import blueprint_views, read_rrd, verify_rrd


@pytest.fixture(scope="module")
def spoken(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return collect_reach(tmp_path_factory.mktemp("viz-audio") / "reach", "lang=ja", "audio=true")


def test_audio_is_played_beside_the_cameras(spoken: Path, tmp_path: Path) -> None:
    out = tmp_path / "ep.rrd"
    assert main(["viz", f"data={spoken}", f"out={out}", "scene=false"]) == 0
    summary = json.loads(Path(f"{out}.json").read_text())
    stored, sr = read_episode_audio(spoken, 0)
    assert summary["audio_seconds"] == pytest.approx(stored.size / sr, abs=1e-3)
    rrd = read_rrd(out)
    rows = rrd.rows[AUDIO]
    assert len(rows) == 1 and rows[0][0] == 0 and rows[0][1] == 0.0  # frame 0, time 0 s
    blob = bytes(np.asarray(rows[0][2]["AssetAudio:blob"][0], np.uint8))
    with wave.open(io.BytesIO(blob)) as w:
        assert w.getframerate() == sr and w.getnchannels() == 1
        played = np.frombuffer(w.readframes(w.getnframes()), np.int16) / 32767
    assert played.shape == stored.shape and np.abs(played - stored).max() < 1e-3
    times = [t for _, t, _ in rrd.rows[ENVELOPE]]
    assert len(times) == stored.size // 160 and max(times) < stored.size / sr
    kinds = {(v["kind"], v["origin"]) for v in blueprint_views(out)}
    assert ("Audio", AUDIO) in kinds and ("TimeSeries", ENVELOPE) in kinds
    assert "openjtalk:mei" in rrd.static("episode", "TextDocument:text")[0]  # the voice in the episode panel
    verify_rrd(out)


def test_missing_audio_file_is_a_warning(spoken: Path, tmp_path: Path, capsys) -> None:
    copy = tmp_path / "copy"
    import shutil

    shutil.copytree(spoken, copy)
    (copy / read_episode_meta(copy, 0)["audio"]["path"]).unlink()
    out = tmp_path / "ep.rrd"
    assert main(["viz", f"data={copy}", f"out={out}", "scene=false"]) == 0
    assert "ignoring the episode's audio" in capsys.readouterr().err
    assert json.loads(Path(f"{out}.json").read_text())["audio_seconds"] is None
    assert AUDIO not in read_rrd(out).entities()
