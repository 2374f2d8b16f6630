"""genba (現場): a physical-AI stack. MuJoCo data engine, world model, VLA policies, serving, Rerun views."""

import os

# Headless rendering by default: EGL uses the GPU where there is one and Mesa on a CPU-only machine.
# Set before anything imports mujoco; a user's own MUJOCO_GL (glfw, osmesa) wins.
os.environ.setdefault("MUJOCO_GL", "egl")
if os.environ["MUJOCO_GL"] in ("egl", "osmesa"):
    os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])

__version__ = "0.1.0"
