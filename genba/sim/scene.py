"""Episode specs: what an episode's scene is (objects, instruction, physics, cameras), sampled from a seed.

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
wxyz) of one body; slot 0 = the object the instruction names, slot 1 = the goal (pick_place: the bin, push: the
target disc, stack: the cube to stack on, reach: none -> zeros), slots 2.. = distractors; unused slots are zeros.
"""

from __future__ import annotations

import math

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
TEMPLATES = {
    "reach": {
        "en": ["reach for the {obj}", "move the gripper to the {obj}"],
        "ja": ["{obj}に手を伸ばして", "{obj}のところまでグリッパーを動かして"],
    },
    "push": {
        "en": ["push the {obj} to the {goal}", "push the {obj} onto the {goal}"],
        "ja": ["{obj}を{goal}まで押して", "{obj}を{goal}の上に押して"],
    },
    "pick_place": {
        "en": ["put the {obj} in the {goal}", "pick up the {obj} and place it in the {goal}"],
        "ja": ["{obj}を{goal}に入れて", "{obj}を持ち上げて{goal}に入れて"],
    },
    "stack": {
        "en": ["stack the {obj} on the {goal}", "put the {obj} on top of the {goal}"],
        "ja": ["{obj}を{goal}の上に積んで", "{obj}を{goal}の上に置いて"],
    },
}
TASKS = {
    "reach": "move the gripper to the named object among distractors",
    "push": "push the named object onto a coloured target circle on the table",
    "pick_place": "pick up the named object and put it in the bin",
    "stack": "stack the named cube on top of another named cube",
}
MAX_STEPS = {"reach": 40, "push": 80, "pick_place": 80, "stack": 80}  # at 10 fps
OBJECT_SHAPES = {  # which shapes the manipulated object may take
    "reach": ("cube", "cylinder", "sphere"),
    "push": ("cube", "cylinder"),
    "pick_place": ("cube", "cylinder", "sphere"),
    "stack": ("cube",),
}
WORKSPACE_R = (0.11, 0.215)  # reachable ring on the table, metres from the base axis
WORKSPACE_AZ = 1.0  # +-radians around +x
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


def _half_height(shape: str, size: list[float]) -> float:
    return size[2] if shape == "cube" else size[1] if shape == "cylinder" else size[0]


def footprint(obj: dict) -> float:
    """Radius of the disc an object covers on the table."""
    if obj["shape"] == "bin":
        return math.hypot(obj["size"][0], obj["size"][1]) + 0.006
    if obj["shape"] == "cube":
        return obj["size"][0] * math.sqrt(2)
    return obj["size"][0]


def _sample_xy(rng: np.random.Generator, r_range: tuple[float, float], az: float) -> np.ndarray:
    r, a = rng.uniform(*r_range), rng.uniform(-az, az)
    return np.array([r * math.cos(a), r * math.sin(a)])


def _seg_dist(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    ab = b - a
    t = np.clip(np.dot(p - a, ab) / max(np.dot(ab, ab), 1e-12), 0.0, 1.0)
    return float(np.linalg.norm(p - (a + t * ab)))


def _place(rng, placed: list[dict], obj: dict, r_range, avoid_segment=None, tries: int = 200) -> bool:
    for _ in range(tries):
        xy = _sample_xy(rng, r_range, WORKSPACE_AZ)
        if all(np.linalg.norm(xy - np.array(o["pos"][:2])) > footprint(o) + footprint(obj) + 0.02 for o in placed):
            if avoid_segment is not None and _seg_dist(xy, *avoid_segment) < footprint(obj) + 0.035:
                continue
            obj["pos"][:2] = [float(xy[0]), float(xy[1])]
            return True
    return False


def sample_spec(task: str, seed: int, lang: str = "en", randomize: bool = True) -> dict:
    """The scene of one episode, fully determined by (task, seed, lang, randomize)."""
    rng = np.random.default_rng(seed)
    ep_lang = lang if lang != "mixed" else str(rng.choice(["en", "ja"]))
    colors = list(rng.permutation(list(COLORS)))

    def shade(color: str) -> list[float]:
        rgb = np.array(COLORS[color][1])
        if randomize:
            rgb = np.clip(rgb + rng.uniform(-0.07, 0.07, 3), 0, 1)
        return [*map(float, rgb), 1.0]

    def solid(shape: str, color: str, role: str, big: bool = False) -> dict:
        size = _size(shape, rng, big)
        mass = DENSITY * _volume(shape, size) * (rng.uniform(0.7, 1.3) if randomize else 1.0)
        return {
            "name": "",
            "shape": shape,
            "size": [float(s) for s in size],
            "rgba": shade(color),
            "color": color,
            "role": role,
            "pos": [0.0, 0.0, float(_half_height(shape, size))],
            "yaw": float(rng.uniform(-math.pi, math.pi)) if shape != "sphere" else 0.0,
            "mass": float(mass),
            "friction": float(rng.uniform(0.6, 1.0) if randomize else 0.8),
        }

    for _attempt in range(50):
        objects: list[dict] = []
        segment = None
        target = solid(str(rng.choice(OBJECT_SHAPES[task])), colors[0], "object")
        goal = None
        if task == "pick_place":
            goal = {"shape": "bin", "size": list(BIN_INNER), "rgba": shade(colors[1]), "color": colors[1],
                    "role": "goal", "pos": [0.0, 0.0, 0.0], "yaw": float(rng.uniform(-0.4, 0.4)),
                    "mass": 0.0, "friction": 1.0}  # fmt: skip
        elif task == "push":
            goal = {"shape": "target", "size": [0.03, 0.0005], "rgba": shade(colors[1]), "color": colors[1],
                    "role": "goal", "pos": [0.0, 0.0, 0.0005], "yaw": 0.0, "mass": 0.0, "friction": 1.0}  # fmt: skip
        elif task == "stack":
            goal = solid("cube", colors[1], "goal", big=True)
        ok = True
        if goal is not None:
            r_goal = (0.14, 0.19) if task == "pick_place" else WORKSPACE_R
            ok = _place(rng, objects, goal, r_goal)
            objects.append(goal)
        if ok and task == "push":  # object 5-9 cm from the target, the pushing side reachable
            for _ in range(200):
                a = rng.uniform(-math.pi, math.pi)
                d = rng.uniform(0.05, 0.09)
                g = np.array(goal["pos"][:2])
                p = g + d * np.array([math.cos(a), math.sin(a)])
                behind = p + (p - g) / d * (footprint(target) + 0.03)
                r_p, r_b = np.linalg.norm(p), np.linalg.norm(behind)
                reachable = WORKSPACE_R[0] <= r_p <= WORKSPACE_R[1] and WORKSPACE_R[0] <= r_b <= WORKSPACE_R[1] + 0.005
                if reachable and abs(math.atan2(p[1], p[0])) < WORKSPACE_AZ and abs(math.atan2(*behind[::-1])) < 1.2:
                    target["pos"][:2] = [float(p[0]), float(p[1])]
                    segment = (behind, g)
                    break
            else:
                ok = False
            objects.append(target)
        elif ok:
            ok = _place(rng, objects, target, WORKSPACE_R)
            objects.append(target)
        n_distractors = int(rng.integers(1, 4 if task == "reach" else 3))
        for k in range(n_distractors):
            shape = str(rng.choice(["cube", "cylinder"] if task == "push" else ["cube", "cylinder", "sphere"]))
            d = solid(shape, colors[2 + k], "distractor")
            if ok and _place(rng, objects, d, (WORKSPACE_R[0], WORKSPACE_R[1] + 0.03), avoid_segment=segment):
                objects.append(d)
        if ok:
            break
    else:
        raise RuntimeError(f"could not lay out a {task} scene for seed {seed}")

    objects.sort(key=lambda o: {"object": 0, "goal": 1, "distractor": 2}[o["role"]])
    for slot_i, o in enumerate(objects):
        o["slot"] = slot_i + (1 if task == "reach" and slot_i > 0 else 0)  # reach: slot 1 (goal) stays empty
        o["name"] = f"{o['role']}{'' if o['role'] != 'distractor' else o['slot'] - 2}"
    template = TEMPLATES[task][ep_lang][int(rng.integers(len(TEMPLATES[task][ep_lang])))]
    instruction = template.format(
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
