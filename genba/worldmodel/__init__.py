"""The world model and the language-vision backbone it shares with the policies.

    backbone.py        timm ViT + UTF-8 byte text encoder + SigLIP loss (`Backbone`, `BackboneConfig`)
    model.py           `WorldModel` (kind "worldmodel"): frame tokenizer, action-conditioned dynamics on
                       genba.kernels.st_attention, losses, KV-cache `rollout`, `embed_images` / `embed_text`
    data.py            clip windows of T consecutive frames from any LeRobotDataset v3, batches for genba.train
    presets/*.yaml     tiny (2-core CPU), small (one GPU), base (several GPUs)
    train_command.py   `genba train-worldmodel`
    evaluate.py        `genba eval-worldmodel`: open-loop metrics against copy-last and constant velocity, a .rrd
    bench.py           `genba bench worldmodel`
    env.py             `WorldModelEnv`: a task's gymnasium env whose step runs a trained world model (`make_env`)

Each command's module holds its config dataclass and its `run_*` function; heavy imports happen inside them.
"""


def make_env(task: str, run: str, **env_options):  # -> genba.worldmodel.env.WorldModelEnv
    """The world-model env of a genba task from a trained run: `make_env("reach", run="runs/wm", reset="sim")`.
    Same spaces as `genba.sim.make(task, ...)`; options and behaviour in genba/worldmodel/env.py."""
    from genba.worldmodel.env import make_env as _make_env

    return _make_env(task, run, **env_options)
