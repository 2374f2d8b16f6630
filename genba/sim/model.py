"""The genba arm and its scenes, written as MJCF from primitives (no meshes, nothing downloaded).

The arm is modelled on the SO-101: a 5-joint arm plus a gripper, base at the world origin, facing +x.

    joint          axis                 range (rad)       link
    shoulder_pan   z (vertical)         [-1.92, 1.92]     base 0.10 m tall (lift axis at z = 0.10)
    shoulder_lift  y                    [-1.75, 1.75]     upper arm 0.11 m
    elbow_flex     y                    [-1.70, 2.80]     forearm 0.13 m
    wrist_flex     y                    [-1.75, 1.75]     wrist to tip 0.105 m (tip = grasp point between the pads)
    wrist_roll     along the wrist      [-2.79, 2.79]
    gripper        slide (metres)       [0, 0.032]        parallel jaw

All joints at 0 point the arm straight up. Positive lift/elbow/wrist bend it forward (+x at pan 0).
The gripper is a parallel jaw driven by the single `gripper` joint: its value is how far EACH finger has moved
out from closed, in metres (jaw gap = 2 x gripper; 0 = closed, 0.032 = fully open, 6.4 cm gap). A second finger
joint (`gripper_right`) mirrors it through an equality constraint; it is not part of the state.

A scene is built from an episode spec (see genba.sim.scene): objects, physics parameters, lights and cameras.
`build_xml(spec)` returns the MJCF text; `build_model(spec)` the compiled MjModel. `build_xml(None)` is the arm
alone (what the experts use for inverse kinematics).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from genba import keys

ARM_JOINTS = keys.JOINTS
JOINT_LIMITS = np.array(
    [[-1.92, 1.92], [-1.75, 1.75], [-1.70, 2.80], [-1.75, 1.75], [-2.79, 2.79], [0.0, 0.032]], dtype=np.float32
)  # (6, 2)
HOME_QPOS = np.array([0.0, -0.2, 1.7, 1.6416, 0.0, 0.032], dtype=np.float32)  # (6,) tip 11 cm up, pointing down
KP = np.array([40.0, 40.0, 40.0, 20.0, 10.0, 300.0])  # position gains: N m/rad, gripper N/m
FORCE = np.array([8.0, 8.0, 8.0, 4.0, 2.0, 10.0])  # torque / force limits
TIMESTEP = 0.002  # s; small enough for stable finger contacts
UPPER_ARM, FOREARM, WRIST_TO_TIP = 0.11, 0.13, 0.105
TIP_SITE = "tip"
GRIPPER_BODIES = ("hand", "finger_left", "finger_right")


def look_at(pos: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MuJoCo camera axes (x right, y up; the camera looks along -z) for a camera at pos looking at target."""
    f = np.asarray(target, float) - np.asarray(pos, float)
    f /= np.linalg.norm(f)
    right = np.cross(f, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    return right, np.cross(right, f)


def _v(x: Any) -> str:
    return " ".join(f"{float(a):.6g}" for a in np.atleast_1d(x))


def _arm_xml(wrist_cam: dict | None) -> str:
    lo, hi = JOINT_LIMITS[:, 0], JOINT_LIMITS[:, 1]
    grey, dark, accent = "0.75 0.75 0.78 1", "0.18 0.18 0.2 1", "0.95 0.55 0.1 1"
    t = math.radians(wrist_cam["tilt_deg"]) if wrist_cam else 0.35
    cam = (
        f'<camera name="wrist" pos="{_v(wrist_cam["pos"])}" xyaxes="1 0 0 0 {-math.cos(t):.6g} {math.sin(t):.6g}"'
        f' fovy="{wrist_cam["fovy"]:.6g}"/>'
        if wrist_cam
        else ""
    )
    rng = [f'range="{lo[i]:.4g} {hi[i]:.4g}"' for i in range(6)]
    return f"""
    <body name="base" pos="0 0 0">
      <geom type="cylinder" size="0.045 0.025" pos="0 0 0.025" rgba="{dark}"/>
      <body name="shoulder" pos="0 0 0.05" gravcomp="1">
        <joint name="shoulder_pan" axis="0 0 1" {rng[0]}/>
        <geom type="cylinder" size="0.03 0.025" pos="0 0 0.025" rgba="{grey}" mass="0.15"/>
        <body name="upper_arm" pos="0 0 0.05" gravcomp="1">
          <joint name="shoulder_lift" axis="0 1 0" {rng[1]}/>
          <geom type="capsule" fromto="0 0 0 0 0 {UPPER_ARM}" size="0.018" rgba="{accent}" mass="0.1"/>
          <body name="forearm" pos="0 0 {UPPER_ARM}" gravcomp="1">
            <joint name="elbow_flex" axis="0 1 0" {rng[2]}/>
            <geom type="capsule" fromto="0 0 0 0 0 {FOREARM}" size="0.015" rgba="{grey}" mass="0.08"/>
            <body name="wrist" pos="0 0 {FOREARM}" gravcomp="1">
              <joint name="wrist_flex" axis="0 1 0" {rng[3]}/>
              <geom type="capsule" fromto="0 0 0 0 0 0.02" size="0.014" rgba="{accent}" mass="0.04"/>
              <body name="hand" pos="0 0 0.03" gravcomp="1">
                <joint name="wrist_roll" axis="0 0 1" {rng[4]}/>
                <geom type="box" size="0.045 0.016 0.01" pos="0 0 0.03" rgba="{dark}" mass="0.05"/>
                <site name="{TIP_SITE}" pos="0 0 0.075" size="0.004" rgba="1 0 0 0"/>
                {cam}
                <body name="finger_left" pos="0 0 0.04" gravcomp="1">
                  <joint name="gripper" type="slide" axis="1 0 0" {rng[5]}/>
                  <geom class="pad" pos="0.006 0 0.0225"/>
                </body>
                <body name="finger_right" pos="0 0 0.04" gravcomp="1">
                  <joint name="gripper_right" type="slide" axis="-1 0 0" {rng[5]}/>
                  <geom class="pad" pos="-0.006 0 0.0225"/>
                </body>
              </body>
            </body>
          </body>
        </body>
      </body>
    </body>"""


def _actuators_xml(kp_scale: np.ndarray) -> str:
    lines = []
    for i, name in enumerate(ARM_JOINTS):
        kp = KP[i] * kp_scale[i]
        lines.append(
            f'<position name="{name}" joint="{name}" kp="{kp:.6g}" forcerange="{-FORCE[i]:.4g} {FORCE[i]:.4g}"'
            f' ctrlrange="{JOINT_LIMITS[i, 0]:.4g} {JOINT_LIMITS[i, 1]:.4g}"/>'
        )
    return "\n    ".join(lines)


def _object_xml(obj: dict) -> str:
    """One scene object: a free body (cube, cylinder, sphere) or a static one (bin, target disc)."""
    name, shape, size, rgba = obj["name"], obj["shape"], obj["size"], _v(obj["rgba"])
    pos = _v(obj["pos"])
    quat = _v([math.cos(obj.get("yaw", 0.0) / 2), 0, 0, math.sin(obj.get("yaw", 0.0) / 2)])
    if shape == "bin":  # floor + 4 walls, inner half-extents size[0] x size[1], wall height size[2]
        hx, hy, h = size
        w = 0.004
        walls = [
            (f"{hx + w} {hy + w} {w / 2}", f"0 0 {w / 2}"),
            (f"{w} {hy + w} {h / 2}", f"{hx + w} 0 {h / 2}"),
            (f"{w} {hy + w} {h / 2}", f"{-hx - w} 0 {h / 2}"),
            (f"{hx + w} {w} {h / 2}", f"0 {hy + w} {h / 2}"),
            (f"{hx + w} {w} {h / 2}", f"0 {-hy - w} {h / 2}"),
        ]
        geoms = "".join(f'<geom type="box" size="{s}" pos="{p}" rgba="{rgba}"/>' for s, p in walls)
        return f'<body name="{name}" pos="{pos}" quat="{quat}">{geoms}</body>'
    if shape == "target":  # a flat disc painted on the table: seen, never touched
        return (
            f'<body name="{name}" pos="{pos}" quat="{quat}"><geom type="cylinder" size="{_v(size)}"'
            f' rgba="{rgba}" contype="0" conaffinity="0"/></body>'
        )
    mj_type = {"cube": "box", "cylinder": "cylinder", "sphere": "sphere"}[shape]
    fr = obj["friction"]
    return (
        f'<body name="{name}" pos="{pos}" quat="{quat}"><freejoint name="{name}"/>'
        f'<geom type="{mj_type}" size="{_v(size)}" rgba="{rgba}" mass="{obj["mass"]:.6g}"'
        f' friction="{fr:.4g} 0.005 0.0001" condim="4" solref="0.004 1"/></body>'
    )


def build_xml(spec: dict | None) -> str:
    """MJCF of the scene described by an episode spec; spec=None -> the arm alone on the floor."""
    phys = (spec or {}).get("physics", {})
    kp_scale = np.asarray(phys.get("kp_scale", np.ones(6)), float)
    cams = (spec or {}).get("cameras", {})
    light = phys.get("light", {"pos": [0.3, -0.3, 1.0], "diffuse": 0.7, "ambient": 0.35})
    tex = phys.get("floor_rgb", [[0.55, 0.5, 0.45], [0.6, 0.55, 0.5]])
    objects = "\n    ".join(_object_xml(o) for o in (spec or {}).get("objects", []))
    front = ""
    if "front" in cams:
        c = cams["front"]
        x, y = look_at(np.array(c["pos"]), np.array(c["target"]))
        front = f'<camera name="front" pos="{_v(c["pos"])}" xyaxes="{_v(x)} {_v(y)}" fovy="{c["fovy"]:.6g}"/>'
    lx, ly = light["pos"][0], light["pos"][1]
    return f"""<mujoco model="genba_{(spec or {}).get("task", "arm")}">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="{TIMESTEP}" cone="elliptic" impratio="10" integrator="implicitfast"/>
  <size memory="4M"/>
  <visual>
    <headlight ambient="{light["ambient"]:.4g} {light["ambient"]:.4g} {light["ambient"]:.4g}" diffuse="0.3 0.3 0.3"
               specular="0 0 0"/>
    <quality shadowsize="1024"/>
    <global offwidth="1024" offheight="1024"/>
  </visual>
  <default>
    <joint damping="1.0" armature="0.005"/>
    <geom condim="3" friction="1 0.005 0.0001"/>
    <default class="pad">
      <geom type="box" size="0.006 0.012 0.0225" rgba="0.25 0.25 0.28 1" friction="1.5 0.02 0.001" condim="6"
            solref="0.004 1" mass="0.02"/>
    </default>
  </default>
  <asset>
    <texture name="floor" type="2d" builtin="checker" rgb1="{_v(tex[0])}" rgb2="{_v(tex[1])}" width="256"
             height="256"/>
    <material name="floor" texture="floor" texrepeat="8 8"/>
    <texture name="sky" type="skybox" builtin="gradient" rgb1="0.55 0.65 0.8" rgb2="0.15 0.15 0.2" width="64"
             height="384"/>
  </asset>
  <worldbody>
    <light name="sun" pos="{lx:.4g} {ly:.4g} {light["pos"][2]:.4g}" dir="{-lx:.4g} {-ly:.4g} {-light["pos"][2]:.4g}"
           diffuse="{light["diffuse"]:.4g} {light["diffuse"]:.4g} {light["diffuse"]:.4g}" directional="true"
           castshadow="false"/>
    <geom name="floor" type="plane" size="0.8 0.8 0.05" material="floor"/>
    {front}
    {_arm_xml(cams.get("wrist"))}
    {objects}
  </worldbody>
  <contact>
    <exclude body1="finger_left" body2="finger_right"/>
    <exclude body1="base" body2="shoulder"/>
  </contact>
  <equality>
    <joint joint1="gripper_right" joint2="gripper" polycoef="0 1 0 0 0" solref="0.005 1"/>
  </equality>
  <actuator>
    {_actuators_xml(kp_scale)}
  </actuator>
</mujoco>
"""


def build_model(spec: dict | None):  # -> mujoco.MjModel
    import mujoco

    return mujoco.MjModel.from_xml_string(build_xml(spec))
