"""`genba train-policy data=<dir> out=<run> preset=tiny|small [init=<world-model run>]`: the VLA on any LeRobotDataset.

    genba train-policy data=outputs/pick_place out=runs/vla-pp preset=tiny
    genba train-policy data=outputs/pick_place out=runs/vla-pp-wm preset=tiny init=runs/wm   # backbone from a WM
    genba train-policy data=outputs/pp-audio out=runs/vla-pp-both instruction_modality=both   # typed or spoken
    genba eval task=pick_place policy=runs/vla-pp episodes=100
    genba serve policy=runs/vla-pp

The cameras (every video feature, or `cameras=`), the state and action sizes, the image size and the fps come from
the dataset; the dataset's instructions (`task`, any language, several tasks in one dataset) are the language
input. Episodes are split once (`<out>/split.json`, seeded; `val_fraction=0` trains on every episode), and the
state and action statistics come from the training episodes only and are saved in the policy's weights and as
`stats.json` beside them. `init=` starts the backbone (ViT, text encoder, projections) from a world model's last
checkpoint; its backbone shape then replaces the preset's. The run folder gets the training loop's metrics.jsonl,
last/ and best/ checkpoints and train_summary.json, which records the training data's episode seeds (when genba
wrote the dataset) so that evaluation seeds can be checked to be disjoint from them.

Spoken instructions: `instruction_modality=audio|both` (genba.policies.vla) trains on each episode's utterance from a
dataset collected with `genba collect ... audio=true` (meta/genba/audio, read once at the start): every sample of an
episode hears that episode's waveform, augmented per batch like the speech-text benchmark's (leading silence, gain,
factory noise at 5..30 dB for half; genba.worldmodel.spoken.augment, seeded by (seed, epoch, batch)). The backbone gets
an audio encoder (`audio_width` = its text width) when the preset has none, and the speech-text SigLIP loss weighs
`w_audio_text`. A dataset without audio for every episode is refused in one line before any training.
`speech_voices=[engine:name[:speed[:pitch]], ...]` re-speaks every episode's instruction with those voices too (the
ones that speak its language), once, before training; each training sample then hears its episode's recording or one
of these renditions, drawn with the augmentation (validation hears the recordings). One utterance per episode teaches
an encoder the voices more than the speech (benchmarks/README.md, "Spoken instructions (issue 13)"), and so does
`speech_perturb=true` (genba.worldmodel.spoken.perturb_voice: speed, equalizer and masks on every training utterance).
`speech_init=<run>` starts the speech encoder from a speech-text backbone pre-trained on many voices
(benchmarks/spoken_retrieval.py's `<out>/run`) or from a world model with speech; its encoder's shape replaces the
preset's, and with init= it replaces the speech encoder of the init= world model (the rest of its backbone is kept).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from genba import keys
from genba.errors import GenbaError
from genba.io import write_json

PRESETS = ("tiny", "tiny-locate", "small")
PRESET_DIR = Path(__file__).parent / "presets"
SUMMARY = "train_summary.json"
VAL_BATCHES = 8


@dataclass
class TrainPolicyConfig:
    data: str = field(default="", metadata={"help": "LeRobotDataset v3 folder"})
    out: str = field(default="", metadata={"help": "run folder (default outputs/vla-<dataset name>)"})
    preset: str = field(
        default="tiny", metadata={"help": f"model and schedule preset: {', '.join(PRESETS)}, or a .yaml file of yours"}
    )
    init: str = field(default="", metadata={"help": "world-model run whose backbone starts the VLA's (empty: scratch)"})
    speech_init: str = field(
        default="",
        metadata={"help": "run whose speech encoder starts the VLA's: a speech-text backbone "
                  "(benchmarks/spoken_retrieval.py) or a world model with speech (empty: scratch)"},
    )  # fmt: skip
    head: str = field(default="", metadata={"help": "action head: flow or l1 (empty = the preset's, flow)"})
    instruction_modality: str = field(
        default="", metadata={"help": "text, audio (the spoken instruction) or both (empty = the preset's, text)"}
    )
    speech_voices: list[str] = field(
        default_factory=list, metadata={"help": "TTS voices that also speak every episode's instruction (training)"}
    )
    speech_perturb: bool = field(
        default=False, metadata={"help": "also vary each training utterance's voice (speed, equalizer, masks)"}
    )
    w_audio_text: float = field(
        default=-1.0, metadata={"help": "weight of the speech-text contrastive loss (negative = the preset's, 0.5)"}
    )
    steps: int = field(default=0, metadata={"help": "optimizer steps (0 = the preset's)"})
    batch_size: int = field(default=0, metadata={"help": "samples per step and process (0 = the preset's)"})
    lr: float = field(default=0.0, metadata={"help": "peak learning rate (0 = the preset's)"})
    save_every: int = field(default=0, metadata={"help": "checkpoint every N steps (0 = the preset's; at the end)"})
    cameras: list[str] = field(default_factory=list, metadata={"help": "cameras to use (empty = every camera)"})
    state_key: str = field(default=keys.OBS_STATE, metadata={"help": "proprioceptive state feature"})
    action_key: str = field(default=keys.ACTION, metadata={"help": "action feature"})
    val_fraction: float = field(default=0.05, metadata={"help": "share of episodes held out for validation loss"})
    split_seed: int = field(default=0, metadata={"help": "seed of the train/validation split"})
    seed: int = field(default=0, metadata={"help": "training seed (weights, data order, noise)"})
    device: str = field(default="auto", metadata={"help": "auto (cuda when there is one), cpu, cuda"})
    threads: int = field(default=0, metadata={"help": "torch CPU threads (0 = torch's default)"})
    resume: bool = field(default=False, metadata={"help": "continue <out>/last"})
    progress: bool = field(default=True, metadata={"help": "progress bar on stderr"})

    def __post_init__(self) -> None:
        from genba.policies.vla import HEADS, MODALITIES

        if self.preset not in PRESETS and not (self.preset.endswith(".yaml") and Path(self.preset).is_file()):
            raise GenbaError(f"preset={self.preset!r} (valid: {', '.join(PRESETS)}, or an existing .yaml file)")
        if not self.data:
            raise GenbaError("data= is required: a LeRobotDataset v3 folder")
        if not self.out:
            self.out = str(Path("outputs") / f"vla-{Path(self.data).name}")
        if self.head and self.head not in HEADS:
            raise GenbaError(f"head={self.head!r} (valid: {', '.join(HEADS)})")
        if self.instruction_modality and self.instruction_modality not in MODALITIES:
            raise GenbaError(f"instruction_modality={self.instruction_modality!r} (valid: {', '.join(MODALITIES)})")
        if self.speech_voices:
            from genba.speech import Voice

            self.speech_voices = [str(Voice.parse(v)) for v in self.speech_voices]  # a bad voice: one line, now
        for name in ("steps", "batch_size", "save_every", "threads"):
            if getattr(self, name) < 0:
                raise GenbaError(f"{name}={getattr(self, name)} must be >= 0")
        if self.lr < 0 or not 0 <= self.val_fraction < 1:
            raise GenbaError(f"lr={self.lr} must be >= 0 and val_fraction={self.val_fraction} in [0, 1)")


def backbone_from(run: str) -> tuple[dict, dict]:
    """A world-model run's backbone: (its BackboneConfig fields, its `backbone.*` weights without the prefix)."""
    import safetensors.torch

    from genba.policies.vla_policy import checkpoint_folder
    from genba.train.checkpoint import WEIGHTS, read_config

    folder = checkpoint_folder(run)
    _, config = read_config(folder, "worldmodel")
    weights = safetensors.torch.load_file(str(folder / WEIGHTS))
    prefix = "backbone."
    ours = {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
    return dataclasses.asdict(config.backbone), ours


AUDIO_FIELDS = ("audio_width", "audio_depth", "audio_heads", "audio_max_seconds", "n_mels")
AUDIO_PREFIXES = ("audio.", "audio_proj.", "audio_logit_scale", "audio_logit_bias")


def speech_from(run: str) -> tuple[dict, dict]:
    """A run's speech encoder: (its BackboneConfig audio fields, its audio weights keyed as in a Backbone). The run is
    a speech-text backbone (kind spoken_backbone) or a world model whose backbone has an audio encoder. A
    transcription head (`audio_ctc`) stays behind: the policy reads the encoder's tokens."""
    import safetensors.torch

    from genba.policies.vla_policy import checkpoint_folder
    from genba.train.checkpoint import WEIGHTS, read_config

    folder = checkpoint_folder(run)
    kind, config = read_config(folder)
    if kind not in ("spoken_backbone", "worldmodel"):
        raise GenbaError(f"speech_init={run} is a {kind!r} checkpoint; it takes a spoken_backbone or worldmodel run")
    backbone = config if kind == "spoken_backbone" else config.backbone
    if not backbone.audio_width:
        raise GenbaError(f"speech_init={run}: its backbone has no audio encoder (audio_width=0)")
    prefix = "" if kind == "spoken_backbone" else "backbone."
    weights = safetensors.torch.load_file(str(folder / WEIGHTS))
    ours = {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
    return ({f: getattr(backbone, f) for f in AUDIO_FIELDS},
            {k: v for k, v in ours.items() if k.startswith(AUDIO_PREFIXES)})  # fmt: skip


def train_seeds(root: Path, episodes: list[int]) -> list[int] | None:
    """The episode seeds genba recorded for `episodes` of a dataset it wrote; None for a foreign dataset."""
    from genba.datasets.commit import read_all_episode_meta

    records = read_all_episode_meta(root)
    if records is None:
        return None
    return sorted(int(records[e]["seed"]) for e in episodes if e < len(records) and "seed" in records[e])


def episode_speech(
    root: Path, episodes: int, modality: str, voices: list[str] = (), progress: bool = False
) -> list[list[np.ndarray]]:
    """Every episode's spoken instruction (float32 (T,) at 16 kHz), from genba's per-episode audio, then the same
    instruction spoken by each of `voices` that speaks its language: [[recording, *renditions] per episode]; one line
    naming the first episode without a recording. `progress`: a bar on stderr (a neural voice takes about a second
    per instruction on a CPU)."""
    from tqdm import tqdm

    from genba.datasets.commit import read_episode_audio, read_episode_meta
    from genba.speech import Voice, synthesize
    from genba.speech.tts import resample

    extra = [Voice.parse(v) for v in voices]
    spoken: dict[tuple[str, str, str], np.ndarray] = {}  # (text, lang, voice) -> wave: instructions repeat
    out = []
    bar = tqdm(range(episodes), desc="speech", unit="episode", disable=not (progress and extra), leave=False)
    for e in bar:
        found = read_episode_audio(root, e)
        if found is None:
            raise GenbaError(f"instruction_modality={modality} needs each episode's spoken instruction, and episode "
                             f"{e} of {root} has none: collect it with `genba collect ... audio=true`")  # fmt: skip
        wave, rate = found
        waves = [resample(wave, rate, keys.AUDIO_SAMPLE_RATE) if rate != keys.AUDIO_SAMPLE_RATE else wave]
        if extra:
            record = read_episode_meta(root, e)
            text, lang = record["task"], record["audio"]["lang"]
            for v in (v for v in extra if lang in v.languages):
                if (text, lang, str(v)) not in spoken:
                    spoken[text, lang, str(v)] = synthesize(text, lang, v)
                waves.append(spoken[text, lang, str(v)])
        out.append(waves)
    return out


def with_speech(
    batch: dict,
    speech: list[list[np.ndarray]],
    rng: np.random.Generator | None = None,
    bank: list | None = None,
    voice: bool = False,
) -> dict:
    """The batch with each sample's episode utterance: observation.audio (B, T) float32, zero-padded, and its pad
    mask (B, T) bool. With a generator and a noise bank: one of the episode's renditions at random, augmented
    (genba.worldmodel.spoken.augment, with its voice perturbation when `voice`); without: the episode's recording."""
    import torch

    from genba.worldmodel.spoken import augment, pad

    options = [speech[int(e)] for e in batch[keys.EPISODE_INDEX]]
    if rng is None:
        waves = [o[0] for o in options]
    else:
        waves = [augment(o[int(rng.integers(len(o)))], rng, bank, voice) for o in options]
    padded, lengths = pad(waves)  # (B, T), (B,)
    mask = torch.arange(padded.shape[1])[None] >= lengths[:, None]
    return {**batch, keys.OBS_AUDIO: padded, keys.pad_key(keys.OBS_AUDIO): mask}


def build(cfg: TrainPolicyConfig) -> dict:
    """Everything a run needs, before any training: datasets, split, stats, model, TrainConfig, batches."""
    import torch

    from genba.datasets.clips import ClipConfig, ClipDataset
    from genba.datasets.scenes import scene_queries
    from genba.datasets.split import load_or_make_split
    from genba.datasets.stats import compute_stats
    from genba.policies.relabel import with_queries
    from genba.policies.vla import VLA, VLAConfig
    from genba.train.checkpoint import recover
    from genba.train.loop import LAST, TrainConfig
    from genba.worldmodel.backbone import BackboneConfig
    from genba.worldmodel.data import ClipBatches, MappedBatches, fixed_batches
    from genba.worldmodel.spoken import noise_bank
    from genba.worldmodel.train_command import load_preset

    last = Path(cfg.out) / LAST
    recover(last)
    if last.exists() and not cfg.resume:
        raise GenbaError(f"{last} exists; pass resume=true to continue it, or choose another out")
    file = Path(cfg.preset)
    preset = (
        load_preset(file.stem, file.parent) if cfg.preset.endswith(".yaml") else load_preset(cfg.preset, PRESET_DIR)
    )
    model_fields, train_fields = dict(preset["model"]), dict(preset["train"])
    init_weights = None
    if cfg.init:
        model_fields["backbone"], init_weights = backbone_from(cfg.init)
    horizon = model_fields.get("horizon", 16)
    if cfg.instruction_modality:
        model_fields["instruction_modality"] = cfg.instruction_modality
    if cfg.w_audio_text >= 0:
        model_fields["w_audio_text"] = cfg.w_audio_text
    spoken = model_fields.get("instruction_modality", "text") != "text"
    if cfg.speech_init and not spoken:
        raise GenbaError("speech_init= starts the speech encoder of a spoken policy: instruction_modality=audio|both")
    speech_weights = None
    if cfg.speech_init:  # its encoder's shape comes with it
        audio_fields, speech_weights = speech_from(cfg.speech_init)
        model_fields["backbone"] = {**model_fields["backbone"], **audio_fields}
        if init_weights is not None:  # speech_init= supersedes the speech encoder an init= world model may hold
            init_weights = {k: v for k, v in init_weights.items() if not k.startswith(AUDIO_PREFIXES)}
    if spoken and not model_fields["backbone"].get("audio_width"):  # the speech encoder, as wide as the text's
        model_fields["backbone"] = {**model_fields["backbone"], "audio_width": model_fields["backbone"]["text_width"]}
    extra = [keys.OBS_ENV_STATE] if model_fields.get("w_env_state") or model_fields.get("w_locate") else []

    def dataset(episodes: list[int] | None, progress: bool = False) -> ClipDataset:
        clip = ClipConfig(data=cfg.data, cameras=list(cfg.cameras), obs_frames=1, action_horizon=horizon,
                          state_key=cfg.state_key, action_key=cfg.action_key, extra_keys=extra)  # fmt: skip
        ds = ClipDataset(clip, episodes=episodes, progress=progress)
        if not ds.cameras:
            raise GenbaError(f"{ds.root} has no camera (no video feature): the VLA reads images")
        return ds

    full = dataset(None, progress=cfg.progress)
    out = Path(cfg.out)
    n_eps = full.meta.total_episodes
    split = load_or_make_split(out / "split.json", dataset=str(full.root), num_episodes=n_eps,
                               val_fraction=cfg.val_fraction, seed=cfg.split_seed)  # fmt: skip
    train_ds = dataset(split["train"])
    speech = None
    if cfg.speech_voices and not spoken:
        raise GenbaError("speech_voices= re-speaks instructions for a spoken policy: instruction_modality=audio|both")
    if spoken:
        speech = episode_speech(full.root, n_eps, model_fields["instruction_modality"], cfg.speech_voices, cfg.progress)
    stats = compute_stats(train_ds, images=False)
    feats = full.meta.features
    video_key = next(iter(full.cameras.values()))
    h, w = feats[video_key]["shape"][:2]
    if h != w:
        raise GenbaError(f"{video_key} of {full.root} is {h}x{w}; the VLA takes square frames")
    model_fields.update(
        backbone=BackboneConfig(**model_fields["backbone"]),
        cameras=list(full.cameras),
        image_size=int(h),
        state_key=cfg.state_key,
        action_key=cfg.action_key,
        state_dim=int(feats[cfg.state_key]["shape"][0]),
        action_dim=int(feats[cfg.action_key]["shape"][0]),
        fps=float(full.fps),
        **({"head": cfg.head} if cfg.head else {}),
        **({"env_state_dim": int(feats[keys.OBS_ENV_STATE]["shape"][0])} if extra else {}),
    )
    model_cfg = VLAConfig(**model_fields)
    torch.manual_seed(cfg.seed)  # the initial weights (the loop re-seeds for the data and the rest)
    model = VLA(model_cfg)
    if init_weights is not None:
        missing, unexpected = model.backbone.load_state_dict(init_weights, strict=False)
        if not any(k.startswith("audio") for k in init_weights):  # a world model without speech: ours starts fresh
            missing = [k for k in missing if not k.startswith("audio")]
        if missing or unexpected:
            raise GenbaError(f"init={cfg.init}: its backbone does not fit (missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]})")  # fmt: skip
    if speech_weights is not None:
        mine = model.backbone.state_dict()
        wrong = [k for k, v in speech_weights.items() if k not in mine or mine[k].shape != v.shape]
        if wrong:  # the projection into the joint space differs when embed_dim does
            raise GenbaError(f"speech_init={cfg.speech_init}: {wrong[0]} does not fit this backbone "
                             f"({tuple(speech_weights[wrong[0]].shape)} against "
                             f"{tuple(mine[wrong[0]].shape) if wrong[0] in mine else 'absent'})")  # fmt: skip
        model.backbone.load_state_dict(speech_weights, strict=False)
    model.set_stats(stats)
    batch_size = cfg.batch_size or train_fields.pop("batch_size")
    train_fields.pop("batch_size", None)
    train_fields.update({k: v for k, v in (("steps", cfg.steps), ("lr", cfg.lr), ("save_every", cfg.save_every)) if v})
    if train_fields.get("min_lr", 0) > train_fields["lr"]:
        train_fields["min_lr"] = train_fields["lr"]
    train_fields["warmup"] = min(train_fields.get("warmup", 0), train_fields.get("steps", 1))
    # best/ is the lowest validation action loss: the contrastive term on unseen scenes rises as the actions improve
    train_fields.setdefault("select", "action")
    val = None
    if split["val"]:
        val = fixed_batches(dataset(split["val"]), batch_size, VAL_BATCHES)
        if speech is not None:
            val = [with_speech(b, speech) for b in val]
    else:
        train_fields["eval_every"] = 0
    data: Any = ClipBatches(train_ds, batch_size, seed=cfg.seed)
    if speech is not None:  # each sample hears its episode's utterance, augmented (seeded per batch)
        bank = noise_bank(cfg.seed)
        data = MappedBatches(data, lambda b, rng: with_speech(b, speech, rng, bank, cfg.speech_perturb), seed=cfg.seed)
    if model_cfg.w_locate:  # each sample also asks where one object of its scene is
        queries = scene_queries(full.root, "w_locate")
        data = MappedBatches(data, lambda b, rng: with_queries(b, queries, rng), seed=cfg.seed + 1)
    train_cfg = TrainConfig(out=str(out), seed=cfg.seed, device=cfg.device, resume=cfg.resume,
                            progress=cfg.progress, **train_fields)  # fmt: skip
    return {
        "model": model,
        "train": train_cfg,
        "data": data,
        "val": val,
        "speech": speech,
        "stats": stats,
        "split": split,
        "dataset": str(full.root),
        "batch_size": batch_size,
        "frames": {"train": len(train_ds), "val": 0 if not split["val"] else sum(len(b[keys.TASK]) for b in val)},
        "train_seeds": train_seeds(full.root, split["train"]),
        "tasks": full.tasks,
    }


def run_train_policy(cfg: TrainPolicyConfig) -> dict:
    import torch

    from genba.train import dist
    from genba.train.loop import train
    from genba.worldmodel.model import count_params

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    started = time.perf_counter()
    cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    dist.init_if_needed(dist.device_for(torch.device("cuda" if cuda else "cpu")))
    if not dist.is_main():
        dist.barrier()  # rank 0 first builds the frame cache and writes the split
    parts = build(cfg)
    if dist.is_main():
        dist.barrier()
    model = parts["model"]
    summary = train(parts["train"], model, parts["data"], val=parts["val"], stats=parts["stats"], split=parts["split"])
    seeds = parts["train_seeds"]
    seed_range = None if seeds is None else {"count": len(seeds), "min": min(seeds, default=None),
                                             "max": max(seeds, default=None)}  # fmt: skip
    summary.update(
        train_seconds=round(time.perf_counter() - started, 3),
        params=count_params(model),
        data=parts["dataset"],
        tasks=parts["tasks"],
        preset=cfg.preset,
        init=cfg.init,
        speech_init=cfg.speech_init,
        batch_size=parts["batch_size"],
        frames=parts["frames"],
        train_seeds=seed_range,
        model=dataclasses.asdict(model.config),
        out=str(cfg.out),
    )
    if dist.is_main():
        write_json(Path(cfg.out) / SUMMARY, summary, indent=2)
    return summary
