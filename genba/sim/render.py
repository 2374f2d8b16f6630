"""Offscreen camera rendering that survives model swaps: one GL context for the life of an env.

Every reset builds a new MjModel (genba.sim.model), and mujoco.Renderer would need a new GL context each time
(~0.3 s with Mesa). Here the GL context and MuJoCo's render context (fonts, framebuffers, textures) are kept; a new
model only gets a new MjvScene and its textures re-uploaded (the randomized floor colours). Genba's scenes share
one asset layout (two textures, no meshes); any other layout rebuilds the render context.

Quality. MuJoCo renders offscreen with `vis.quality.offsamples` = 4 multisamples per pixel (anti-aliased edges).
`samples=0` turns that off: on a 2-core CPU (Mesa llvmpipe) pick_place with two 128x128 cameras then runs at about
1.7x the env steps/s, and images differ only along edges (tests/datasets/test_collect_options.py measures it).
Renderers the env creates take the process default that `offscreen_samples(n)` sets around their creation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import mujoco
import numpy as np

_SAMPLES: int | None = None  # offscreen multisamples for renderers created now; None = the model's own (4)


@contextlib.contextmanager
def offscreen_samples(samples: int | None) -> Iterator[None]:
    """Renderers created inside this block use `samples` multisamples per pixel (0 = off, None = MuJoCo's 4)."""
    global _SAMPLES
    previous, _SAMPLES = _SAMPLES, samples
    try:
        yield
    finally:
        _SAMPLES = previous


class SceneRenderer:
    def __init__(self, model: mujoco.MjModel, size: int, samples: int | None = None) -> None:
        from mujoco import gl_context

        self.size = size
        self.samples = _SAMPLES if samples is None else samples
        self._gl = gl_context.GLContext(size, size)
        self._gl.make_current()
        self._rect = mujoco.MjrRect(0, 0, size, size)
        self._option = mujoco.MjvOption()
        self._camera = mujoco.MjvCamera()
        self._camera.type = mujoco.mjtCamera.mjCAMERA_FIXED
        self._con: mujoco.MjrContext | None = None
        self._layout: tuple | None = None
        self.set_model(model)

    def set_model(self, model: mujoco.MjModel) -> None:
        self._gl.make_current()
        if self.samples is not None:  # read by MuJoCo when it builds the offscreen buffer (the render context)
            model.vis.quality.offsamples = self.samples
        layout = (model.ntex, model.nmesh, model.nhfield, model.nskin, tuple(model.tex_width), tuple(model.tex_height))
        if self._con is None or layout != self._layout:
            if self._con is not None:
                self._con.free()
            self._con = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_50)
            mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._con)
            self._con.readDepthMap = mujoco.mjtDepthMap.mjDEPTH_ZEROFAR
            self._layout = layout
        else:
            for tex in range(model.ntex):
                mujoco.mjr_uploadTexture(model, self._con, tex)
        self.model = model
        self._scene = mujoco.MjvScene(model, maxgeom=200)
        extent = model.stat.extent
        self._near = np.float32(model.vis.map.znear * extent)
        self._far = np.float32(model.vis.map.zfar * extent)

    def _draw(self, data: mujoco.MjData, camera: int, segment: bool) -> None:
        self._gl.make_current()
        self._camera.fixedcamid = camera
        mujoco.mjv_updateScene(self.model, data, self._option, None, self._camera, mujoco.mjtCatBit.mjCAT_ALL,
                               self._scene)  # fmt: skip
        # flat-shaded segment colours give exact depth far from the camera (as mujoco.Renderer does)
        self._scene.flags[mujoco.mjtRndFlag.mjRND_SEGMENT] = segment
        self._scene.flags[mujoco.mjtRndFlag.mjRND_IDCOLOR] = segment
        mujoco.mjr_render(self._rect, self._scene, self._con)

    def rgb(self, data: mujoco.MjData, camera: int) -> np.ndarray:
        """(H, W, 3) uint8 image from the model camera with id `camera`."""
        self._draw(data, camera, segment=False)
        out = np.empty((self.size, self.size, 3), np.uint8)
        mujoco.mjr_readPixels(out, None, self._rect, self._con)
        return out[::-1].copy()  # OpenGL rows run bottom-up

    def depth(self, data: mujoco.MjData, camera: int) -> np.ndarray:
        """(H, W) float32 distance along the camera axis, metres (the far plane where nothing is hit)."""
        self._draw(data, camera, segment=True)
        buf = np.empty((self.size, self.size), np.float32)
        mujoco.mjr_readPixels(None, buf, self._rect, self._con)
        # undo the reversed-Z perspective projection (same float32 coefficients as mujoco.Renderer)
        near, far = self._near, self._far
        c = np.float32(-0.5) * (-(far + near) / (far - near)) - np.float32(0.5)
        d = np.float32(-0.5) * (-(np.float32(2) * far * near) / (far - near))
        return (d / (buf[::-1].astype(np.float64) + c)).astype(np.float32)

    def close(self) -> None:
        if self._con is not None:
            self._gl.make_current()
            self._con.free()
            self._con = None
        if self._gl is not None:
            self._gl.free()
            self._gl = None

    def __del__(self) -> None:
        # Not contextlib.suppress: at interpreter shutdown module globals (contextlib included) may already be None.
        try:  # noqa: SIM105
            self.close()
        except Exception:  # GL may already be gone too
            pass
