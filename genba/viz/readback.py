"""Read a .rrd back with rerun's own reader (rerun.chunk.RrdReader) into plain Python, for tests and checks.

    rrd = read_rrd("episode.rrd")
    frames, values = rrd.series("state/shoulder_pan", "Scalars:scalars")   # sorted by frame_index
    rrd.static("episode", "TextDocument:text")

Component columns are named "<Archetype>:<field>" as rerun 0.41 stores them (e.g. "EncodedImage:blob").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FRAME_TIMELINE = "frame_index"


@dataclass
class RrdContents:
    # entity path (no leading "/") -> component -> last static value
    statics: dict[str, dict[str, Any]] = field(default_factory=dict)
    # entity path -> list of (frame_index, time in seconds or None, {component: value}) in file order
    rows: dict[str, list[tuple[int | None, float | None, dict[str, Any]]]] = field(default_factory=dict)

    def entities(self) -> set[str]:
        return set(self.statics) | set(self.rows)

    def static(self, entity: str, component: str) -> Any:
        return self.statics[entity][component]

    def series(self, entity: str, component: str) -> tuple[list[int], list[Any]]:
        """(frames, values) of one component of one entity on the frame_index timeline, sorted by frame."""
        pairs = sorted(
            (frame, values[component])
            for frame, _, values in self.rows.get(entity, [])
            if component in values and values[component] is not None and frame is not None
        )
        return [f for f, _ in pairs], [v for _, v in pairs]

    def times(self, entity: str) -> list[float]:
        """Seconds on the `time` timeline of an entity's rows, sorted by frame."""
        rows = sorted((f, t) for f, t, _ in self.rows.get(entity, []) if f is not None)
        return [t for _, t in rows]


def read_rrd(path: str | Path, recording: int = 0) -> RrdContents:
    """Every chunk of one recording in `path` (the first by default; `genba eval rrd=` writes one per episode)."""
    from rerun.chunk import RrdReader

    reader = RrdReader(Path(path))
    stores = reader.recordings()
    if not 0 <= recording < len(stores):
        raise ValueError(f"{path} holds {len(stores)} recording(s); there is no recording {recording}")
    contents = RrdContents()
    for chunk in reader.stream(store=stores[recording]):
        batch = chunk.to_record_batch()
        name = chunk.entity_path.lstrip("/")
        components = [c for c in batch.schema.names if ":" in c]
        if chunk.is_static:
            slot = contents.statics.setdefault(name, {})
            for c in components:
                slot[c] = batch.column(c).to_pylist()[-1]
            continue
        columns = {c: batch.column(c).to_pylist() for c in components}
        frames = batch.column(FRAME_TIMELINE).to_pylist() if FRAME_TIMELINE in batch.schema.names else None
        times = batch.column("time").to_pylist() if "time" in batch.schema.names else None
        rows = contents.rows.setdefault(name, [])
        for r in range(batch.num_rows):
            t = times[r].total_seconds() if times is not None and times[r] is not None else None
            rows.append((frames[r] if frames else None, t, {c: columns[c][r] for c in components}))
    return contents


def count_recordings(path: str | Path) -> int:
    """How many recordings `path` holds."""
    from rerun.chunk import RrdReader

    return len(RrdReader(Path(path)).recordings())


def verify_rrd(path: str | Path) -> str:
    """Run `rerun rrd verify` (the viewer's own loader) on `path`; returns its output, raises on failure."""
    import shutil
    import subprocess
    import sys

    rerun = shutil.which("rerun") or shutil.which("rerun", path=str(Path(sys.executable).parent))
    if rerun is None:
        raise FileNotFoundError("the `rerun` CLI (rerun-sdk) is not on PATH nor beside this Python")
    done = subprocess.run([rerun, "rrd", "verify", str(path)], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise ValueError(f"rerun rrd verify {path} failed: {(done.stdout + done.stderr).strip()[-500:]}")
    return done.stdout + done.stderr


def blueprint_views(path: str | Path) -> list[dict[str, str]]:
    """The views of the default blueprint stored in `path`: [{"kind": "2D"|"3D"|"TimeSeries"|..., "name", "origin"}]."""
    from rerun.chunk import RrdReader

    reader = RrdReader(Path(path))
    views = []
    for store in reader.blueprints():
        for chunk in reader.stream(store=store):
            batch = chunk.to_record_batch()
            if "ViewBlueprint:class_identifier" not in batch.schema.names:
                continue
            row = {c: batch.column(c).to_pylist()[-1] for c in batch.schema.names if c.startswith("ViewBlueprint:")}
            views.append(
                {
                    "kind": row["ViewBlueprint:class_identifier"][0],
                    "name": (row.get("ViewBlueprint:display_name") or [""])[0],
                    "origin": (row.get("ViewBlueprint:space_origin") or [""])[0],
                }
            )
    return views
