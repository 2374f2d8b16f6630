"""SceneRenderer keeps one GL context across model swaps and must draw exactly what mujoco.Renderer draws."""

import mujoco
import numpy as np

import genba.sim
from genba import keys


def test_matches_mujoco_renderer_after_model_swaps():
    env = genba.sim.make("pick_place", image_size=64, depth=True)
    floors = []
    for seed in (0, 1, 2):  # each reset swaps in a new model with a new floor texture colour
        obs, _ = env.reset(seed=seed)
        floors.append(env.unwrapped.model.tex_data.copy())
    assert not np.array_equal(floors[0], floors[2])
    u = env.unwrapped
    reference = mujoco.Renderer(u.model, 64, 64)
    try:
        for cam in ("front", "wrist"):
            reference.update_scene(u.data, camera=cam)
            np.testing.assert_array_equal(reference.render(), obs[keys.PIXELS][cam])
            reference.enable_depth_rendering()
            reference.update_scene(u.data, camera=cam)
            np.testing.assert_allclose(reference.render(), obs[keys.DEPTH][cam], rtol=1e-6)
            reference.disable_depth_rendering()
    finally:
        reference.close()
        env.close()
