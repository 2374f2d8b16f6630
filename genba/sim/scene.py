"""Episode specs: what an episode's scene is (objects, instruction, physics, cameras), sampled from a seed.

The shared scene machinery: a task (genba.sim.tasks) creates and places its goal and the named object with a
SceneSampler; sample_spec adds the distractors, slots, instruction (the task's templates), physics and cameras.

A spec is a plain JSON-able dict; `genba.sim.model.build_xml(spec)` turns it into MJCF, so the same spec always
rebuilds the same scene (the env does that at every reset, `genba.sim.replay.Replayer` does it offline).

    {"task", "seed", "lang", "instruction", "randomize",
     "objects": [{"name", "shape": cube|cylinder|sphere|bin|target, "size" (MuJoCo convention; bin: inner
                  half-x, half-y, wall height), "rgba", "color", "role": object|goal|distractor, "slot",
                  "pos" (initial, world), "yaw", "mass", "friction"}],
     "physics": {"kp_scale" (6,), "light": {...}, "floor_rgb", "objects": {name: {"mass", "friction"}}},
     "cameras": {"front": {"pos", "target", "fovy"}, "wrist": {"pos" (in the hand frame), "tilt_deg", "fovy"}},
     "init_qpos" (6,)}

Environment state layout (ENV_STATE, E = 7 x N_SLOTS = 35 floats): slot k = pos (3, metres, world) + quat (4,
wxyz) of one body; slot 0 = the object the instruction names, slot 1 = the task's goal object (pick_place: the
bin, push: the target disc, stack: the cube to stack on; reach has none: zeros), slots 2.. = distractors; unused
slots are zeros.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from genba.sim.model import HOME_QPOS

N_SLOTS = 5
SLOT_DIM = 7
ENV_STATE_DIM = N_SLOTS * SLOT_DIM

# name, Japanese adjective, rgb
COLORS = {
    "red": ("赤い", (0.85, 0.12, 0.1)),
    "green": ("緑の", (0.15, 0.65, 0.2)),
    "blue": ("青い", (0.12, 0.3, 0.9)),
    "yellow": ("黄色い", (0.95, 0.82, 0.1)),
    "purple": ("紫の", (0.55, 0.2, 0.75)),
    "orange": ("オレンジの", (1.0, 0.5, 0.05)),
    "cyan": ("水色の", (0.2, 0.8, 0.9)),
}
SHAPE_WORDS = {  # en, ja
    "cube": ("cube", "キューブ"),
    "cylinder": ("cylinder", "円柱"),
    "sphere": ("ball", "ボール"),
    "bin": ("bin", "箱"),
    "target": ("circle", "丸"),
}
WORKSPACE_R = (0.11, 0.215)  # reachable ring on the table, metres from the base axis
WORKSPACE_AZ = 1.0  # +-radians around +x
DISTRACTOR_RING = (WORKSPACE_R[0], WORKSPACE_R[1] + 0.03)  # distractors may lie a little beyond reach
BIN_INNER = (0.04, 0.04, 0.03)  # half-x, half-y, wall height
DENSITY = 600.0  # kg/m^3 nominal (light wood / plastic)


def phrase(color: str, shape: str, lang: str) -> str:
    if lang == "ja":
        return COLORS[color][0] + SHAPE_WORDS[shape][1]
    return f"{color} {SHAPE_WORDS[shape][0]}"


def _size(shape: str, rng: np.random.Generator, big: bool = False) -> list[float]:
    s = rng.uniform(0.013, 0.016) + (0.005 if big else 0.0)
    if shape == "cube":
        return [s, s, s]
    if shape == "cylinder":
        return [s, rng.uniform(0.015, 0.02)]
    return [s + 0.001]  # sphere


def _volume(shape: str, size: list[float]) -> float:
    if shape == "cube":
        return 8 * size[0] * size[1] * size[2]
    if shape == "cylinder":
        return math.pi * size[0] ** 2 * 2 * size[1]
    return 4 / 3 * math.pi * size[0] ** 3


def half_height(shape: str, size: list[float]) -> float:
    """Centre height of a solid resting on the table."""
    return size[2] if shape == "cube" else size[1] if shape == "cylinder" else size[0]


def footprint(obj: dict) -> float:
    """Radius of the disc an object covers on the table."""
    if obj["shape"] == "bin":
        return math.hypot(obj["size"][0], obj["size"][1]) + 0.006
    if obj["shape"] == "cube":
        return obj["size"][0] * math.sqrt(2)
    return obj["size"][0]


def _seg_dist(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    ab = b - a
    t = np.clip(np.dot(p - a, ab) / max(np.dot(ab, ab), 1e-12), 0.0, 1.0)
    return float(np.linalg.norm(p - (a + t * ab)))


@dataclass
class Layout:
    """The goal and the named object of a scene, placed on the table by the task (distractors come after)."""

    objects: list[dict]
    keep_clear: tuple[np.ndarray, np.ndarray] | None = None  # a segment distractors stay away from (push's path)


class SceneSampler:
    """The random draws a scene is made of. All come from the episode's one generator, so a task's layout must
    draw in a fixed order: the same seed then gives the same scene."""

    def __init__(self, rng: np.random.Generator, randomize: bool) -> None:
        self.rng, self.randomize = rng, randomize

    def shade(self, color: str) -> list[float]:
        """rgba of a named colour, jittered when randomizing."""
        rgb = np.array(COLORS[color][1])
        if self.randomize:
            rgb = np.clip(rgb + self.rng.uniform(-0.07, 0.07, 3), 0, 1)
        return [*map(float, rgb), 1.0]

    def solid(self, shape: str, color: str, role: str, big: bool = False) -> dict:
        """A free body (cube, cylinder, sphere) resting at the origin; `place` moves it."""
        rng, randomize = self.rng, self.randomize
        size = _size(shape, rng, big)
        mass = DENSITY * _volume(shape, size) * (rng.uniform(0.7, 1.3) if randomize else 1.0)
        return {
            "name": "",
            "shape": shape,
            "size": [float(s) for s in size],
            "rgba": self.shade(color),
            "color": color,
            "role": role,
            "pos": [0.0, 0.0, float(half_height(shape, size))],
            "yaw": float(rng.uniform(-math.pi, math.pi)) if shape != "sphere" else 0.0,
            "mass": float(mass),
            "friction": float(rng.uniform(0.6, 1.0) if randomize else 0.8),
        }

    def place(self, placed: list[dict], obj: dict, ring: tuple[float, float], avoid_segment=None) -> bool:
        """Move `obj` to a random spot of the ring (radii from the base axis) clear of `placed`; False: no room."""
        for _ in range(200):
            r, a = self.rng.uniform(*ring), self.rng.uniform(-WORKSPACE_AZ, WORKSPACE_AZ)
            xy = np.array([r * math.cos(a), r * math.sin(a)])
            if all(np.linalg.norm(xy - np.array(o["pos"][:2])) > footprint(o) + footprint(obj) + 0.02 for o in placed):
                if avoid_segment is not None and _seg_dist(xy, *avoid_segment) < footprint(obj) + 0.035:
                    continue
                obj["pos"][:2] = [float(xy[0]), float(xy[1])]
                return True
        return False


def layout_apart(s: SceneSampler, target: dict, goal: dict | None = None, goal_ring=WORKSPACE_R) -> Layout | None:
    """The common layout: the goal (if any) on its ring, then the named object on the workspace ring, apart."""
    placed = []
    if goal is not None:
        if not s.place(placed, goal, goal_ring):
            return None
        placed.append(goal)
    if not s.place(placed, target, WORKSPACE_R):
        return None
    return Layout([*placed, target])


def sample_spec(task: str, seed: int, lang: str = "en", randomize: bool = True) -> dict:
    """The scene of one episode, fully determined by (task, seed, lang, randomize)."""
    from genba.sim.tasks import get_task  # here, not at the top: the task modules import this one

    t = get_task(task)
    rng = np.random.default_rng(seed)
    ep_lang = lang if lang != "mixed" else str(rng.choice(["en", "ja"]))
    colors = list(rng.permutation(list(COLORS)))
    s = SceneSampler(rng, randomize)
    for _attempt in range(50):
        target = s.solid(str(rng.choice(t.object_shapes)), colors[0], "object")
        layout = t.layout(s, target, colors[1])
        # distractors are drawn even when the layout failed, so that the next attempt's draws stay where they were
        for k in range(int(rng.integers(1, t.max_distractors + 1))):
            d = s.solid(str(rng.choice(t.distractor_shapes)), colors[2 + k], "distractor")
            if layout is not None and s.place(layout.objects, d, DISTRACTOR_RING, avoid_segment=layout.keep_clear):
                layout.objects.append(d)
        if layout is not None:
            break
    else:
        raise RuntimeError(f"could not lay out a {task} scene for seed {seed}")

    objects = sorted(layout.objects, key=lambda o: {"object": 0, "goal": 1, "distractor": 2}[o["role"]])
    goal = next((o for o in objects if o["role"] == "goal"), None)
    for slot_i, o in enumerate(objects):
        o["slot"] = slot_i + (1 if goal is None and slot_i > 0 else 0)  # no goal: slot 1 stays empty
        o["name"] = f"{o['role']}{'' if o['role'] != 'distractor' else o['slot'] - 2}"
    templates = t.templates[ep_lang]
    instruction = templates[int(rng.integers(len(templates)))].format(
        obj=phrase(target["color"], target["shape"], ep_lang),
        goal=phrase(goal["color"], goal["shape"], ep_lang) if goal else "",
    )
    physics = _sample_physics(rng, randomize, objects)
    return {
        "task": task,
        "seed": int(seed),
        "lang": ep_lang,
        "instruction": instruction,
        "randomize": bool(randomize),
        "objects": objects,
        "physics": physics,
        "cameras": _sample_cameras(rng, randomize),
        "init_qpos": [float(q) for q in HOME_QPOS + (rng.uniform(-0.05, 0.05, 6) * [1, 1, 1, 1, 1, 0] * randomize)],
    }


INSTRUCTION_MODES = ("as_is", "shuffled")  # the env's reset option "instruction"
_SHUFFLE_STREAM = 1  # the shuffle's own generator, apart from the scene's draws
_SOLIDS = ("cube", "cylinder", "sphere")


def shuffle_instruction(spec: dict) -> bool:
    """Make `spec`'s instruction name another object of its scene (grounding checks); the scene stays as it is.

    The same template and language, naming a distractor (chosen by the episode's seed) instead of the object; a
    scene without distractors names its goal when the goal is a solid (stack: the two cubes swap), else the
    instruction stays. Records `original_instruction` and `instruction_names` (the object now named, None when
    unchanged) in the spec; returns whether the instruction changed. Success is still judged on the original object.
    """
    objects = spec["objects"]
    target = next(o for o in objects if o["role"] == "object")
    goal = next((o for o in objects if o["role"] == "goal"), None)
    distractors = [o for o in objects if o["role"] == "distractor"]
    spec["original_instruction"] = spec["instruction"]
    spec["instruction_names"] = None
    if distractors:
        rng = np.random.default_rng([int(spec["seed"]), _SHUFFLE_STREAM])
        named = distractors[int(rng.integers(len(distractors)))]
        spec["instruction"] = rename_instruction(spec, named)
    elif goal is not None and goal["shape"] in _SOLIDS:
        named = goal
        spec["instruction"] = rename_instruction(spec, goal, goal=target)
    else:
        return False
    spec["instruction_names"] = named["name"]
    return True


def rename_instruction(spec: dict, obj: dict, goal: dict | None = None) -> str:
    """`spec`'s instruction in its own template and language, naming `obj` (one of its objects) as the object, and
    `goal` (default: the scene's goal, if any) as the goal. The original instruction of an unedited spec."""
    from genba.sim.tasks import get_task

    objects, lang = spec["objects"], spec["lang"]
    target = next(o for o in objects if o["role"] == "object")
    scene_goal = next((o for o in objects if o["role"] == "goal"), None)

    def words(o: dict | None) -> str:
        return phrase(o["color"], o["shape"], lang) if o else ""

    templates = get_task(spec["task"]).templates[lang]
    original = spec.get("original_instruction", spec["instruction"])
    template = next((t for t in templates if t.format(obj=words(target), goal=words(scene_goal)) == original),
                    templates[0])  # fmt: skip
    return template.format(obj=words(obj), goal=words(goal if goal is not None else scene_goal))


def _sample_physics(rng: np.random.Generator, randomize: bool, objects: list[dict]) -> dict:
    u = (lambda lo, hi, n=None: rng.uniform(lo, hi, n)) if randomize else (lambda lo, hi, n=None: (
        np.full(n, (lo + hi) / 2) if n else (lo + hi) / 2))  # fmt: skip
    base = np.array([0.55, 0.5, 0.45])
    floor = np.clip(base + (rng.uniform(-0.1, 0.1, 3) if randomize else 0.0), 0, 1)
    return {
        "kp_scale": [float(k) for k in u(0.85, 1.15, 6)],
        "light": {
            "pos": [float(u(-0.6, 0.6)), float(u(-0.6, 0.6)), float(u(0.8, 1.5))],
            "diffuse": float(u(0.5, 0.9)),
            "ambient": float(u(0.25, 0.45)),
        },
        "floor_rgb": [[float(c) for c in floor], [float(c) for c in np.clip(floor * 1.12, 0, 1)]],
        "objects": {o["name"]: {"mass": o["mass"], "friction": o["friction"]} for o in objects if o["mass"] > 0},
    }


def _sample_cameras(rng: np.random.Generator, randomize: bool) -> dict:
    j = (lambda s, n=3: rng.uniform(-s, s, n)) if randomize else (lambda s, n=3: np.zeros(n))
    return {
        "front": {
            "pos": [float(v) for v in np.array([0.42, 0.0, 0.26]) + j(0.015)],
            "target": [float(v) for v in np.array([0.1, 0.0, 0.06]) + j(0.015)],
            "fovy": float(50.0 + j(2.0, 1)[0]),
        },
        "wrist": {
            "pos": [float(v) for v in np.array([0.0, -0.035, 0.045]) + j(0.003)],
            "tilt_deg": float(18.0 + j(2.0, 1)[0]),
            "fovy": float(70.0 + j(2.0, 1)[0]),
        },
    }
