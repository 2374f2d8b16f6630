"""Rerun views of robot episodes.

data.py        an episode as plain arrays, from any LeRobotDataset v3 (through lerobot) or from env steps
log.py         cameras, depth, per-joint state/action, instruction, outcome -> Rerun; the default blueprint
scene.py       genba sim episodes: arm and objects in 3D from the stored episode spec (genba.sim.replay)
pointcloud.py  recorded depth -> coloured world point clouds (open3d)
episode.py     the `genba viz` command (config + run); standard library only at import time
readback.py    read a .rrd back with rerun's own reader (tests, checks)
"""
