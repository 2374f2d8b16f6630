"""Training shared by the world model and the VLA policy: one loop, one checkpoint format.

    loop.py        train(cfg: TrainConfig, model, data) -> summary: AdamW, warm-up + cosine, clipping, bf16 on CUDA,
                   EMA, evaluation, metrics.jsonl, checkpoints, NaN stop, exact resume
    checkpoint.py  the checkpoint folder (config.json + model.safetensors + stats/split + trainer state), written
                   atomically, loaded by kind from a registry (register_model, load_model); never pickle
    state.py       optimizer state dicts and RNG states as safetensors tensors + JSON structure
    dist.py        torchrun: the process group (gloo on CPU, NCCL on CUDA), DDP around the loss, batches split by
                   rank; no-ops in a single process

A model supplies only `loss(batch) -> (loss, {name: float})` and a `config` dataclass.
"""
