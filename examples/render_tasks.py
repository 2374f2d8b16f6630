"""Render the four genba tasks (front camera, a few seeds) into one picture with each episode's instruction.

    python examples/render_tasks.py                 # -> docs/tasks.png
    python examples/render_tasks.py --size 320 --seeds 0 1 2 --out /tmp/tasks.png

Each tile is the scene after the scripted expert has worked for a while, so the arm is doing the task.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

import genba.sim
from genba.sim.experts import make_expert

CJK_FONTS = [  # Japanese captions only where a font can draw them (apt: fonts-noto-cjk)
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/ipafont-gothic/ipagp.ttf",
]
LATIN_FONTS = ["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"]
FRACTION = {"reach": 0.5, "push": 0.6, "pick_place": 0.5, "stack": 0.55}  # how far into the episode to snap


def font(size: int) -> tuple[ImageFont.ImageFont, bool]:
    """A caption font, and whether it draws Japanese."""
    for path in CJK_FONTS + LATIN_FONTS:
        if Path(path).exists():
            return ImageFont.truetype(path, size), path in CJK_FONTS
    return ImageFont.load_default(), False


def snapshot(task: str, seed: int, size: int, lang: str) -> tuple[np.ndarray, str]:
    """(size, size, 3) uint8 front image part-way through an expert episode, and its instruction."""
    env = genba.sim.make(task, cameras=[], lang=lang)  # plan the episode without rendering
    expert = make_expert(task)
    obs, _ = env.reset(seed=seed)
    steps = 0
    while True:
        obs, _, terminated, truncated, _ = env.step(expert.act(obs))
        steps += 1
        if terminated or truncated:
            break
    cam = genba.sim.make(task, cameras=["front"], image_size=size, lang=lang)
    obs, _ = cam.reset(seed=seed)
    expert.reset()
    for _ in range(int(steps * FRACTION[task])):
        obs, *_ = cam.step(expert.act(obs))
    return obs["pixels"]["front"], cam.unwrapped.task_description


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "tasks.png"))
    args = parser.parse_args()
    tasks = list(genba.sim.TASKS)
    caption_h, pad = 44, 4
    sheet = Image.new("RGB", (len(args.seeds) * (args.size + pad) + pad, len(tasks) * (args.size + caption_h + pad)),
                      "white")  # fmt: skip
    draw = ImageDraw.Draw(sheet)
    small, japanese = font(max(11, args.size // 20))
    for row, task in enumerate(tasks):
        for col, seed in enumerate(args.seeds):
            lang = "ja" if (row + col) % 2 and japanese else "en"
            image, text = snapshot(task, seed, args.size, lang)
            x, y = pad + col * (args.size + pad), row * (args.size + caption_h + pad)
            draw.text((x, y + 2), f"{task} (seed {seed})", fill="gray", font=small)
            caption = small
            while draw.textlength(text, font=caption) > args.size and caption.size > 8:  # shrink to fit the tile
                caption = caption.font_variant(size=caption.size - 1)
            draw.text((x, y + 2 + caption_h // 2), text, fill="black", font=caption)
            sheet.paste(Image.fromarray(image), (x, y + caption_h))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    print(args.out)


if __name__ == "__main__":
    main()
