"""One genba-collected episode for the viz tests (a plain module: `conftest` names clash across test folders)."""

from pathlib import Path


def collect_reach(root: Path, *options: str) -> Path:
    """One reach episode of `genba collect` (32x32, front camera) with extra `options`, into `root`."""
    from genba.cli import main

    argv = ["collect", "task=reach", "episodes=1", "image_size=32", "cameras=[front]", *options, f"out={root}"]
    assert main(argv) == 0
    return root
