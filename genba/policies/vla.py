"""The VLA: chunks of H actions by flow matching on the shared language-vision backbone (checkpoint kind "vla").

    model = VLA(VLAConfig(cameras=["front", "wrist"], state_dim=6, action_dim=6, image_size=64))
    model.set_stats(stats)                              # mean/std of state and action (genba.datasets.stats)
    loss, metrics = model.loss(batch)                   # what genba.train.train calls
    actions = model.sample(images, state, tasks)        # (B, H, A) in raw units (rad, gripper m)

The prefix is what the policy sees: every camera's ViT patch tokens (genba.worldmodel.backbone, the world model's
backbone) with a learned camera embedding, the instruction's UTF-8 byte tokens from the backbone's text encoder,
and one joint-state token. A fusion transformer over the whole prefix lets image patches attend to the words, which
is where "the red cube" picks out one object among several. The action expert is a small transformer over H action
tokens, with self-attention among them and cross-attention to the fused prefix (pi0's split of a large
vision-language prefix and a small action expert, Black et al. 2024).

Flow matching (Lipman et al. 2023, as in pi0): for normalized actions a, noise e and t in (0, 1], x_t = t e + (1 - t)
a; the expert predicts the velocity e - a from (x_t, t). Sampling starts from noise at t = 1 and integrates to t = 0
with diffusers' FlowMatchEulerDiscreteScheduler (`flow_steps` Euler steps, 10 by default); the prefix is encoded
once per chunk. `head="l1"` instead regresses the chunk directly from H learned queries with an L1 loss (ACT's
objective), one expert pass per chunk.

Training adds a random shift of each camera image (DrQ's +-`shift_pixels` translation, Kostrikov et al. 2020), the
usual remedy for image policies that overfit a few hundred demonstrations, and the backbone's SigLIP loss between
frames and instructions (`w_contrastive`), the same co-training as the world model's.

Two options fight the shortcut that a few hundred demonstrations invite: after the first frames of an episode the
joints alone say where the arm is going, so a policy can fit its data while its cameras only matter at the one
frame where they must choose the object. `state_dropout` hides the joint state (a learned token instead) from a
fraction of the training samples. `w_env_state` > 0 regresses the dataset's privileged
`observation.environment_state` (every object's pose, the named object in the first slot: genba's simulated data
has it, a real arm's log does not), from the keypoints alone when there are keypoints (so the position must come
from the cameras and the instruction, never from joints that already reached it), else from the fused state token.
Both only shape training; acting reads cameras, instruction and joints as before.

Two more aim at where the first options left reach (benchmarks/README.md, "The VLA (issue 11)"): a keypoint network
that fits 190 scenes and locates nothing in a new one. `w_locate` > 0 asks the keypoints, on every training sample,
where one object of its scene is, named by a relabelled instruction (genba.policies.relabel: any solid object of the
scene, in the episode's template), and regresses that object's (x, y) from them: three or four questions per scene
instead of one. `locate_token` puts the head's answer for the instruction itself, the named object's (x, y), in the
prefix as one token (detached: only the localization loss trains what it says), an explicit target that the
action expert can read. `text_ngrams` > 0 gives the keypoints' FiLM a bag of hashed byte n-grams of the instruction
(genba.worldmodel.backbone.ByteNGrams) instead of the byte transformer's mean, so that "red" reads the same
wherever the template puts it; the byte tokens still enter the prefix.

Spoken instructions (`instruction_modality`, issue 13): `text` (the default; older checkpoints load unchanged) reads
the typed instruction; `audio` reads the spoken one instead, as the backbone's audio encoder tokens (log-mel, a small
transformer; genba.worldmodel.backbone) in the prefix where the byte tokens were; `both` takes either or both, so a
policy can be typed to or spoken to. Training with `both` draws per sample text only, speech only or both (a third
each), so every combination is one the policy has seen. Whenever speech is trained, the backbone's speech-text
SigLIP loss (`w_audio_text`) pulls each utterance towards its instruction's text embedding, so that speech and text
share one space and a voice never heard still lands near the words it says. The keypoints' FiLM reads the pooled
instruction: the text's, the speech's mapped to the text width, or their mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from genba import keys
from genba.errors import GenbaError
from genba.train.checkpoint import register_model
from genba.train.normalized import Normalized
from genba.worldmodel.backbone import BYTE_PAD, Backbone, BackboneConfig, ByteNGrams, same_text

KIND = "vla"
LOCATE_SCALE = 0.1  # m: the localization head's unit (objects lie within about 0.25 m of the arm's base)
HEADS = ("flow", "l1")
MODALITIES = ("text", "audio", "both")
ENV_STATE_MIN_STD = 0.01  # m (and quaternion units): the finest spread of an environment-state feature normalized


@dataclass
class VLAConfig:
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    cameras: list[str] = field(default_factory=lambda: list(keys.CAMERAS))
    image_size: int = 64  # frames as the dataset stores them (what an env renders for this policy)
    state_key: str = keys.OBS_STATE
    action_key: str = keys.ACTION
    state_dim: int = 6
    action_dim: int = 6
    fps: float = 10.0
    horizon: int = 16  # H: actions predicted per chunk
    n_action_steps: int = 8  # rows of each chunk the policy hands out (executed before the next chunk)
    head: str = "flow"  # flow | l1
    flow_steps: int = 10
    width: int = 128
    fusion_depth: int = 2
    expert_depth: int = 3
    heads: int = 4
    shift_pixels: int = 4  # random-shift augmentation at training time (pixels of the stored frame); 0 = off
    keypoints: int = 0  # K: instruction-conditioned spatial-softmax keypoints per camera as extra tokens; 0 = none
    patch_tokens: bool = True  # the backbone's patch tokens in the prefix; false: keypoints are all it sees
    w_contrastive: float = 0.1
    w_env_state: float = 0.0  # auxiliary regression of the privileged environment state at training time; 0 = off
    state_dropout: float = 0.0  # fraction of training samples whose joint state is hidden (a learned token)
    text_ngrams: int = 0  # buckets of hashed byte n-grams whose mean is the instruction the keypoints read; 0 = none
    w_locate: float = 0.0  # relabelled localization loss: keypoints asked where another object of the scene is
    locate_token: bool = False  # the located (x, y) of the named object as a prefix token (needs w_locate)
    locate_teacher: float = 0.0  # fraction of training samples whose locate token holds the named object's true (x, y)
    env_state_key: str = keys.OBS_ENV_STATE
    env_state_dim: int = 0  # its size (set from the dataset when w_env_state > 0)
    instruction_modality: str = "text"  # text | audio | both: the instruction typed, spoken or either
    w_audio_text: float = 0.5  # speech-text SigLIP loss of the backbone when the instruction can be spoken

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise GenbaError(f"head={self.head!r} (valid: {', '.join(HEADS)})")
        if not self.cameras:
            raise GenbaError("a VLA needs at least one camera")
        if not 1 <= self.n_action_steps <= self.horizon:
            raise GenbaError(f"n_action_steps={self.n_action_steps} must be in [1, horizon={self.horizon}]")
        if self.width % self.heads:
            raise GenbaError(f"width={self.width} is not divisible by heads={self.heads}")
        if self.flow_steps < 1 or min(self.shift_pixels, self.w_contrastive, self.keypoints, self.w_env_state) < 0:
            raise GenbaError("flow_steps must be >= 1, shift_pixels, w_contrastive, w_env_state and keypoints >= 0")
        if not 0 <= self.state_dropout < 1:
            raise GenbaError(f"state_dropout={self.state_dropout} must be in [0, 1)")
        if not (self.patch_tokens or self.keypoints):
            raise GenbaError("patch_tokens=false needs keypoints > 0: the VLA would see no image")
        if self.instruction_modality not in MODALITIES:
            raise GenbaError(f"instruction_modality={self.instruction_modality!r} (valid: {', '.join(MODALITIES)})")
        if self.spoken and not self.backbone.audio_width:
            raise GenbaError(f"instruction_modality={self.instruction_modality} needs a backbone with an audio encoder "
                             "(backbone.audio_width > 0)")  # fmt: skip
        if self.w_audio_text < 0:
            raise GenbaError(f"w_audio_text={self.w_audio_text} must be >= 0")
        if self.w_locate < 0 or self.text_ngrams < 0:
            raise GenbaError(f"w_locate={self.w_locate} and text_ngrams={self.text_ngrams} must be >= 0")
        if self.locate_token and not self.w_locate:
            raise GenbaError("locate_token=true reads the localization head: it needs w_locate > 0")
        if not 0 <= self.locate_teacher <= 1:
            raise GenbaError(f"locate_teacher={self.locate_teacher} must be in [0, 1]")
        if self.locate_teacher and not self.locate_token:
            raise GenbaError(f"locate_teacher={self.locate_teacher} feeds the locate token: it needs locate_token=true")
        if self.w_locate and not self.keypoints:
            raise GenbaError(f"w_locate={self.w_locate} trains the keypoints: it needs keypoints > 0")
        if self.w_locate and self.env_state_dim < 3:
            raise GenbaError(f"w_locate={self.w_locate} needs the objects' positions in {self.env_state_key} "
                             "(env_state_dim)")  # fmt: skip
        if self.w_env_state and self.env_state_dim < 1:
            raise GenbaError(f"w_env_state={self.w_env_state} needs the size of {self.env_state_key} (env_state_dim)")

    @property
    def spoken(self) -> bool:
        """Whether the policy takes the instruction as speech (instruction_modality audio or both)."""
        return self.instruction_modality != "text"

    @property
    def typed(self) -> bool:
        """Whether the policy takes the instruction as text (instruction_modality text or both)."""
        return self.instruction_modality != "audio"


def _layer(width: int, heads: int, decoder: bool = False) -> nn.Module:
    cls = nn.TransformerDecoderLayer if decoder else nn.TransformerEncoderLayer
    return cls(width, heads, 4 * width, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """t (B,) in [0, 1] -> (B, dim) sinusoidal features (periods from 1/1000 of the unit interval up to 1)."""
    half = dim // 2
    freqs = torch.exp(-math.log(1000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = 1000.0 * t.float()[:, None] * freqs[None]  # (B, half)
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def random_shift(frames: torch.Tensor, pad: int) -> torch.Tensor:
    """frames (B, 3, H, W) -> the same, each translated by its own integer shift in [-pad, pad] (edges replicated)."""
    if pad == 0:
        return frames
    b, _, h, w = frames.shape
    padded = F.pad(frames.float(), (pad, pad, pad, pad), mode="replicate")  # (B, 3, H + 2p, W + 2p)
    dx, dy = torch.randint(0, 2 * pad + 1, (2, b)).tolist()
    return torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(b)]).to(frames.dtype)


class Keypoints(nn.Module):
    """Where things are, as coordinates: frames (B, 3, H, W) and the pooled instruction (B, T) -> K keypoints
    (B, K, 2) in [-1, 1] (x, y). A small CNN (to H/4) whose features the instruction scales and shifts (FiLM, Perez
    et al. 2018), then K heat maps reduced to their expected positions by a spatial softmax (Levine et al. 2016):
    a map can become "where the named object is", an explicit position the action expert can read, which a few
    hundred demonstrations teach far more easily than positions spread over patch tokens."""

    def __init__(self, k: int, text_width: int, channels: int = 64) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(3, channels // 2, 3, stride=2, padding=1), nn.GroupNorm(1, channels // 2), nn.GELU(),
            nn.Conv2d(channels // 2, channels, 3, stride=2, padding=1), nn.GroupNorm(1, channels), nn.GELU(),
            nn.Conv2d(channels, channels, 3, padding=1),
        )  # fmt: skip
        self.film = nn.Linear(text_width, 2 * channels)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)
        self.maps = nn.Sequential(nn.GELU(), nn.Conv2d(channels, channels, 3, padding=1), nn.GELU(),
                                  nn.Conv2d(channels, k, 1))  # fmt: skip

    def forward(self, frames: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        x = frames.float() / 255.0 if frames.dtype == torch.uint8 else frames
        f = self.convs((x - 0.5) / 0.5)  # (B, C, H/4, W/4)
        gamma, beta = self.film(text).unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)  # each (B, C, 1, 1)
        heat = self.maps(f * (1 + gamma) + beta)  # (B, K, h, w)
        b, k, h, w = heat.shape
        prob = heat.flatten(2).softmax(-1).view(b, k, h, w)
        ys = torch.linspace(-1, 1, h, device=heat.device)
        xs = torch.linspace(-1, 1, w, device=heat.device)
        return torch.stack([(prob.sum(2) * xs).sum(-1), (prob.sum(3) * ys).sum(-1)], dim=-1)  # (B, K, 2)


class VLA(Normalized):
    def __init__(self, config: VLAConfig) -> None:
        super().__init__(config)
        cfg = config
        bb, width = cfg.backbone, cfg.width
        self.backbone = Backbone(bb)
        self.image_in = nn.Linear(bb.width, width)
        self.camera_embed = nn.Parameter(torch.zeros(len(cfg.cameras), width))
        self.text_in = nn.Linear(bb.text_width, width)
        self.state_in = nn.Linear(cfg.state_dim, width)
        self.kind_embed = nn.Parameter(torch.zeros(2, width))  # text, state
        for p in (self.camera_embed, self.kind_embed):
            nn.init.trunc_normal_(p, std=0.02)
        if cfg.keypoints:
            self.keypoints = nn.ModuleList(Keypoints(cfg.keypoints, bb.text_width) for _ in cfg.cameras)
            self.keypoint_in = nn.Linear(2, width)
            self.keypoint_embed = nn.Parameter(torch.zeros(len(cfg.cameras), cfg.keypoints, width))
            nn.init.trunc_normal_(self.keypoint_embed, std=0.02)
        self.fusion = nn.TransformerEncoder(_layer(width, cfg.heads), cfg.fusion_depth, enable_nested_tensor=False)
        self.fusion_norm = nn.LayerNorm(width)
        self.action_in = nn.Linear(cfg.action_dim, width)
        self.time_in = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.action_pos = nn.Parameter(torch.zeros(cfg.horizon, width))
        nn.init.trunc_normal_(self.action_pos, std=0.02)
        self.expert = nn.TransformerDecoder(_layer(width, cfg.heads, decoder=True), cfg.expert_depth)
        self.out_norm = nn.LayerNorm(width)
        self.action_out = nn.Linear(width, cfg.action_dim)
        if cfg.state_dropout:
            self.no_state = nn.Parameter(torch.zeros(width))
        if cfg.w_env_state:  # from the keypoints of every camera when there are some, else from the fused state token
            n_in = 2 * cfg.keypoints * len(cfg.cameras) if cfg.keypoints else width
            self.env_state_out = nn.Sequential(nn.Linear(n_in, width), nn.GELU(), nn.Linear(width, cfg.env_state_dim))
        if cfg.text_ngrams:
            self.ngrams = ByteNGrams(cfg.text_ngrams, bb.text_width)
        if cfg.w_locate:  # the queried object's (x, y) from the keypoints of every camera
            n_in = 2 * cfg.keypoints * len(cfg.cameras)
            self.locate_out = nn.Sequential(nn.Linear(n_in, width), nn.GELU(), nn.Linear(width, 2))
        if cfg.locate_token:
            self.locate_in = nn.Sequential(nn.Linear(2, width), nn.GELU(), nn.Linear(width, width))
        if cfg.spoken:  # speech tokens beside (or instead of) the byte tokens
            self.audio_in = nn.Linear(bb.audio_width, width)
            self.audio_kind = nn.Parameter(torch.zeros(width))
            nn.init.trunc_normal_(self.audio_kind, std=0.02)
            self.audio_pool = nn.Linear(bb.audio_width, bb.text_width)  # pooled speech for the keypoints' FiLM
        self._scheduler = None

    def normalized_features(self) -> list[tuple[str, str, int]]:
        cfg = self.config
        extra = [("env_state", cfg.env_state_key, cfg.env_state_dim)] if cfg.w_env_state else []
        return super().normalized_features() + extra

    def set_stats(self, stats: dict[str, dict]) -> None:
        super().set_stats(stats)
        if self.config.w_env_state:  # an object's resting height or pose barely moves: its noise is not a target
            self.env_state_std.clamp_(min=ENV_STATE_MIN_STD)

    # ---- prefix: cameras, instruction, state ----

    def prefix(
        self,
        images: dict[str, torch.Tensor],
        state: torch.Tensor,
        tasks: list[str],
        drop_state: torch.Tensor | None = None,
        image_embedding: bool = False,
        audio: tuple[torch.Tensor, torch.Tensor] | None = None,
        use_text: torch.Tensor | None = None,
        use_audio: torch.Tensor | None = None,
        text_embedding: bool = False,
        true_xy: torch.Tensor | None = None,
        use_true: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """images {camera: (B, 3, H, W) uint8}, state (B, S) raw, tasks B strings, drop_state (B,) bool: samples whose
        state the learned no-state token replaces; for a spoken policy audio (waves (B, T) 16 kHz, lengths (B,),
        0 = no speech), use_text and use_audio (B,) bool: which samples' typed and spoken instructions the prefix
        reads (default: every typed one when the policy is typed, every spoken one given) -> (memory (B, L, width),
        padding (B, L) bool, {"text": (B, E)} (when the text encoder ran), with speech "audio" (B, E), with patch
        tokens or `image_embedding` (the contrastive loss) "image" (B, E) embeddings of the shared space, with
        keypoints "keypoints" (B, cameras x K x 2)); L = cameras x (P + K) + G + Lt + La + 1 (P = 0 with
        patch_tokens=false, whose ViT then runs only when asked for the image embedding; G = 1 with locate_token, the
        located object, else 0)."""
        cfg = self.config
        missing = [c for c in cfg.cameras if c not in images]
        if missing:
            raise GenbaError(f"the VLA reads cameras {cfg.cameras}; missing {missing}")
        vit = []  # each camera's patch tokens (B, P, bb width), when the prefix or the contrastive loss reads them
        if cfg.patch_tokens or image_embedding:
            vit = [self.backbone.encode_images(images[c]) for c in cfg.cameras]
        parts = [self.image_in(t) + self.camera_embed[i] for i, t in enumerate(vit)] if cfg.patch_tokens else []
        words, word_pad, pooled, emb = self.instruction(tasks, state.device, audio, use_text, use_audio, text_embedding)
        points = [self.keypoints[i](images[c], pooled) for i, c in enumerate(cfg.cameras)] if cfg.keypoints else []
        for i, xy in enumerate(points):  # each (B, K, 2) -> (B, K, width): a position plus which keypoint it is
            parts.append(self.keypoint_in(xy) + self.keypoint_embed[i])
        if cfg.locate_token:  # where the named object is, as the localization head says (its own loss trains it)
            located = self.locate_out(torch.cat(points, dim=1).flatten(1))  # (B, 2) in LOCATE_SCALE units
            if true_xy is not None:
                located = torch.where(use_true[:, None], true_xy.to(located.dtype), located)
            parts.append(self.locate_in(located.detach()).unsqueeze(1))
        n_image = sum(t.shape[1] for t in parts)
        parts.append(words)
        state_token = self.state_in(self.norm(state, "state"))  # (B, width)
        if drop_state is not None:
            state_token = torch.where(drop_state[:, None], self.no_state.expand_as(state_token), state_token)
        parts.append(state_token.unsqueeze(1) + self.kind_embed[1])
        x = torch.cat(parts, dim=1)  # (B, L, width)
        b = x.shape[0]
        image_pad = torch.zeros(b, n_image, dtype=torch.bool, device=x.device)
        pad = torch.cat([image_pad, word_pad, image_pad[:, :1]], dim=1)  # (B, L)
        memory = self.fusion_norm(self.fusion(x, src_key_padding_mask=pad))
        if vit:
            emb["image"] = self.backbone.image_embedding(vit)
        if points:
            emb["keypoints"] = torch.cat(points, dim=1).flatten(1)  # (B, cameras x K x 2)
        return memory, pad, emb

    def instruction(
        self,
        tasks: list[str],
        device: torch.device,
        audio: tuple[torch.Tensor, torch.Tensor] | None,
        use_text: torch.Tensor | None,
        use_audio: torch.Tensor | None,
        text_embedding: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """The instruction's tokens in the prefix: (tokens (B, Lt + La, width), padding (B, Lt + La) bool, pooled
        (B, text width) for the keypoints' FiLM, {"text", "audio"}: (B, E) embeddings of what was encoded)."""
        cfg, bb = self.config, self.backbone
        b = len(tasks)
        if not cfg.spoken:  # the typed instruction alone, as before speech existed
            ids = bb.text.tokenize(tasks, device)  # (B, Lt)
            text, pooled = bb.text(ids)  # (B, Lt, text width), (B, text width)
            film = self.ngrams(tasks) if cfg.text_ngrams else pooled
            return self.text_in(text) + self.kind_embed[0], ids == BYTE_PAD, film, {"text": bb.text_embedding(pooled)}
        if use_text is None:
            use_text = torch.full((b,), cfg.typed, dtype=torch.bool)
        use_text = use_text.to(device) & cfg.typed
        given = (audio[1] > 0).to(device) if audio is not None else torch.zeros(b, dtype=torch.bool, device=device)
        use_audio = given if use_audio is None else use_audio.to(device) & given
        if not bool((use_text | use_audio).all()):
            i = int((~(use_text | use_audio)).nonzero()[0])
            want = "a spoken instruction" if not cfg.typed else "a typed or spoken instruction"
            raise GenbaError(f"sample {i} of the batch has no instruction: this VLA needs {want}")
        tokens, pads, pools, weights, emb = [], [], [], [], {}
        if bool(use_text.any()) or text_embedding:
            ids = bb.text.tokenize(tasks, device)
            text, pooled_text = bb.text(ids)
            emb["text"] = bb.text_embedding(pooled_text)
            if bool(use_text.any()):
                tokens.append(self.text_in(text) + self.kind_embed[0])
                pads.append((ids == BYTE_PAD) | ~use_text[:, None])
                pools.append(self.ngrams(tasks) if cfg.text_ngrams else pooled_text)
                weights.append(use_text)
        if bool(given.any()):  # every utterance given is encoded (the speech-text loss reads them all)
            waves, lengths = audio[0].to(device), audio[1].to(device)
            speech, pooled_audio, inside = bb.encode_audio(waves, lengths)  # (B, La, width), (B, width), (B, La)
            emb["audio"] = bb.audio_embedding(pooled_audio)
            tokens.append(self.audio_in(speech) + self.audio_kind)
            pads.append(~inside | ~use_audio[:, None])
            pools.append(self.audio_pool(pooled_audio))
            weights.append(use_audio)
        w = torch.stack(weights).to(pools[0].dtype)[..., None]  # (n, B, 1): which pooled vectors each sample has
        pooled = (torch.stack(pools) * w).sum(0) / w.sum(0).clamp(min=1.0)  # (B, text width)
        return torch.cat(tokens, dim=1), torch.cat(pads, dim=1), pooled, emb

    # ---- action expert ----

    def expert_forward(
        self, x: torch.Tensor | None, t: torch.Tensor | None, memory: torch.Tensor, pad: torch.Tensor
    ) -> torch.Tensor:
        """flow: noisy normalized actions x (B, H, A) at times t (B,) -> velocity (B, H, A);
        l1 (x, t None): the normalized action chunk (B, H, A) from the learned queries."""
        b = memory.shape[0]
        q = self.action_pos.expand(b, -1, -1)  # (B, H, width)
        if x is not None:
            q = q + self.action_in(x) + self.time_in(timestep_embedding(t, self.config.width)).unsqueeze(1)
        out = self.expert(q, memory, memory_key_padding_mask=pad)
        return self.action_out(self.out_norm(out))

    # ---- training ----

    def loss(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """batch: `observation.images.<cam>` (B, 1, 3, H, W) uint8, state (B, 1, S), action (B, H, A), task (B,);
        with w_env_state, the environment state (B, 1, E)."""
        cfg = self.config
        images = {c: batch[keys.image_key(c)][:, -1] for c in cfg.cameras}  # (B, 3, H, W)
        if self.training and cfg.shift_pixels:
            images = {c: random_shift(v, cfg.shift_pixels) for c, v in images.items()}
        state = batch[cfg.state_key][:, -1]  # (B, S)
        target = self.norm(batch[cfg.action_key][:, : cfg.horizon], "action")  # (B, H, A)
        tasks = list(batch[keys.TASK])
        drop = None
        if self.training and cfg.state_dropout:
            drop = torch.rand(state.shape[0], device=state.device) < cfg.state_dropout  # (B,)
        audio, use_text, use_audio = None, None, None
        if cfg.spoken:
            if keys.OBS_AUDIO not in batch:
                raise GenbaError(f"instruction_modality={cfg.instruction_modality}: the batch has no {keys.OBS_AUDIO}")
            audio = (batch[keys.OBS_AUDIO], (~batch[keys.pad_key(keys.OBS_AUDIO)]).sum(1))  # (B, T), (B,)
            if cfg.instruction_modality == "both" and self.training:  # text only, speech only or both, a third each
                choice = torch.randint(0, 3, (state.shape[0],))
                use_text, use_audio = choice != 1, choice != 0
        true_xy, use_true = None, None
        if self.training and cfg.locate_teacher:  # the named object is slot 0 of the environment state
            if cfg.env_state_key not in batch:
                raise GenbaError(f"locate_teacher={cfg.locate_teacher}: the batch has no {cfg.env_state_key}")
            true_xy = batch[cfg.env_state_key][:, -1, :2].float() / LOCATE_SCALE  # (B, 2)
            use_true = torch.rand(state.shape[0], device=state.device) < cfg.locate_teacher  # (B,)
        memory, pad, emb = self.prefix(images, state, tasks, drop, image_embedding=cfg.w_contrastive > 0, audio=audio,
                                       use_text=use_text, use_audio=use_audio, text_embedding=True,
                                       true_xy=true_xy, use_true=use_true)  # fmt: skip
        if cfg.head == "flow":
            b = target.shape[0]
            t = torch.distributions.Beta(1.5, 1.0).sample((b,)).to(target.device) * 0.999 + 0.001  # (B,) pi0's
            noise = torch.randn_like(target)
            x_t = t[:, None, None] * noise + (1 - t[:, None, None]) * target
            action_loss = F.mse_loss(self.expert_forward(x_t, t, memory, pad), noise - target)
        else:
            action_loss = F.l1_loss(self.expert_forward(None, None, memory, pad), target)
        metrics = {"action": action_loss.detach()}
        total = action_loss
        if cfg.w_contrastive:
            con = self.backbone.contrastive_loss(emb["image"], emb["text"], same_text(tasks).to(target.device))
            total = total + cfg.w_contrastive * con
            metrics["contrastive"] = con.detach()
        if cfg.spoken and cfg.w_audio_text:  # every utterance, also those the prefix did not read this time
            speech = self.backbone.audio_text_loss(emb["audio"], emb["text"], same_text(tasks).to(target.device))
            total = total + cfg.w_audio_text * speech
            metrics["audio_text"] = speech.detach()
        if cfg.w_env_state:
            env = self.norm(batch[cfg.env_state_key][:, -1], "env_state")  # (B, E)
            source = emb["keypoints"] if cfg.keypoints else memory[:, -1]  # (B, 2 x cameras x K) or (B, width)
            aux = F.mse_loss(self.env_state_out(source), env)
            total = total + cfg.w_env_state * aux
            metrics["env_state"] = aux.detach()
        if cfg.w_locate and keys.LOCATE_TASK in batch:  # training batches carry the queries; validation ones do not
            loc = self.locate_loss(images, batch[keys.LOCATE_TASK], batch[keys.LOCATE_SLOT], batch[cfg.env_state_key])
            total = total + cfg.w_locate * loc
            metrics["locate"] = loc.detach()
        return total, metrics

    def locate_loss(
        self, images: dict[str, torch.Tensor], queries: list[str], slots: torch.Tensor, env_state: torch.Tensor
    ) -> torch.Tensor:
        """Where is the object each query names? images {camera: (B, 3, H, W)} (as the action loss saw them), queries
        B instructions, slots (B,) environment-state slots, env_state (B, To, E) raw -> MSE of its (x, y) in units of
        LOCATE_SCALE, from the keypoints the query's instruction conditions (genba.policies.relabel)."""
        from genba.sim.scene import SLOT_DIM

        cfg = self.config
        if cfg.text_ngrams:
            pooled = self.ngrams(queries)  # (B, text width)
        else:
            _, pooled = self.backbone.text(self.backbone.text.tokenize(queries, env_state.device))
        points = torch.cat([self.keypoints[i](images[c], pooled) for i, c in enumerate(cfg.cameras)], dim=1)
        cols = slots.to(env_state.device)[:, None] * SLOT_DIM + torch.arange(2, device=env_state.device)  # (B, 2)
        target = env_state[:, -1].float().gather(1, cols) / LOCATE_SCALE  # (B, 2)
        return F.mse_loss(self.locate_out(points.flatten(1)), target)

    # ---- inference ----

    @torch.no_grad()
    def sample(
        self,
        images: dict[str, torch.Tensor],
        state: torch.Tensor,
        tasks: list[str],
        generator: torch.Generator | None = None,
        audio: tuple[torch.Tensor, torch.Tensor] | None = None,
        use_text: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """images {camera: (B, 3, H, W) uint8}, state (B, S) raw, tasks -> action chunk (B, H, A) raw units; a spoken
        policy also takes audio (waves (B, T), lengths (B,)) and use_text (B,) bool, as `prefix`."""
        cfg = self.config
        memory, pad, _ = self.prefix(images, state.float(), tasks, audio=audio, use_text=use_text)
        if cfg.head == "l1":
            return self.unnorm(self.expert_forward(None, None, memory, pad), "action")
        scheduler = self.scheduler()
        scheduler.set_timesteps(cfg.flow_steps, device=memory.device)
        shape = (memory.shape[0], cfg.horizon, cfg.action_dim)
        x = torch.randn(shape, generator=generator, device="cpu").to(memory.device)  # (B, H, A) at t = 1
        for step in scheduler.timesteps:
            t = (step / scheduler.config.num_train_timesteps).expand(shape[0])  # (B,)
            x = scheduler.step(self.expert_forward(x, t, memory, pad), step, x).prev_sample
        return self.unnorm(x, "action")

    def scheduler(self):  # diffusers' FlowMatchEulerDiscreteScheduler, imported lazily
        """diffusers' flow-matching Euler scheduler, built once per model."""
        if self._scheduler is None:
            from diffusers import FlowMatchEulerDiscreteScheduler

            self._scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0)
        return self._scheduler


register_model(KIND, VLA, VLAConfig)
