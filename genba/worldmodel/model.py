"""The world model: frames and joint state in, the next frames and joint state out, given each step's action and
the instruction; trained with `genba.train` and checkpointed as kind "worldmodel".

Per frame t the dynamics transformer sees N = C * P + 3 tokens:

    [camera 0: P patch tokens] ... [camera C-1: P patch tokens] [state s_t] [action a_t] [instruction]

A camera's patch token is its latent z (the frame tokenizer: an MLP over each 16x16 patch's pixels on its own, so a
patch that does not change keeps exactly its latent; an MLP decodes latents back to pixels) plus the backbone ViT's
token for that patch (context from the whole frame; the ViT is shared with the policies and co-trained here).
Action a_t (the one that leads to frame t+1) is a token of frame t and is also added to all of frame t's tokens
(per-frame conditioning; with `action_adaln`, it also scales and shifts every token's norms in each block, adaLN-Zero,
genba.worldmodel.blocks); the instruction is the pooled byte-level text encoding (with `text_ngrams`, the mean of
its hashed byte n-grams, backbone.ByteNGrams, the byte transformer frozen). Attention is frame-block causal
through `genba.kernels.st_attention` (frame t sees frames t - frame_window < j <= t), with a rotary embedding over the
frame index, so rollouts longer than the training clips keep the relative positions they were trained on. The
outputs at frame t are the next latents z_{t+1} = z_t + dz and the next state s_{t+1} = s_t + ds.

Pixels of a predicted frame are `D(z_hat) + g * (x_ref - D(z_ref))` (decode_residual, the default), x_ref being the
last real frame: the decoder's error on it is carried over, so the static scene stays exact and the capacity goes to
what moves; the gate g = 2 sigmoid(w . (z_hat - z_ref)^2) per patch (1 at initialization) learns to drop the carried
detail where a patch changed. Losses: teacher-forced next-latent, next-pixel and next-state errors, the tokenizer's
reconstruction, a multi-step rollout loss (rollout_steps frames predicted autoregressively from rollout_context real
ones, context_frames by default, each fed the previous prediction), and the backbone's SigLIP loss between the first
frame and the instruction. From one real frame (`rollout_context: 1`) the rollout sees no motion to extrapolate and
must take it from the actions.

`rollout` runs autoregressively with a per-layer `FrameKVCache`: one frame's tokens per step, constant memory.
States and actions enter in raw units; the model normalizes them with buffers saved in its weights (`set_stats`).
`imagine` / `imagine_step` run the same recurrence one action at a time, for closed loops (genba.worldmodel.env).

The success head (config `success_head`, issue 12) reads frame t's hidden tokens (mean over the frame) and predicts
the logit of `next.success` at t: whether the task holds after action a_t, LeRobot's per-frame label (the dataset's
`next.success` column, e.g. `genba collect after_success=K`, which goes on K steps past the success; else 1 only on
the last frame of a successful episode, since the sim terminates on success; genba.worldmodel.data.success_labels).
It is trained on the real frames (teacher-forced) and, with `w_success_rollout`, on the rollout loss's imagined
ones, as the world-model env uses it; BCE weighted by `success_pos_weight` (negatives / positives of the training
frames). Runs trained before it have `success_head: false` and the same weights as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from genba import keys
from genba.errors import GenbaError
from genba.kernels import FrameKVCache
from genba.train.checkpoint import register_model
from genba.train.normalized import Normalized
from genba.worldmodel.backbone import Backbone, BackboneConfig, ByteNGrams, same_text
from genba.worldmodel.blocks import Block, rope_tables

KIND = "worldmodel"


@dataclass
class WorldModelConfig:
    cameras: list[str] = field(default_factory=lambda: list(keys.CAMERAS))  # short names, as in the clip sample
    state_key: str = keys.OBS_STATE
    action_key: str = keys.ACTION
    state_dim: int = 6
    action_dim: int = 6
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    latent_dim: int = 32  # per-token latent of the frame tokenizer
    decoder_hidden: int = 256
    width: int = 128  # dynamics transformer
    depth: int = 4
    heads: int = 4  # width / heads must be 32, 64 or 128 (the kernel's head dims)
    frame_window: int | None = 4  # frames each frame attends to, itself included; None = all past frames
    context_frames: int = 2  # real frames before a rollout (training's rollout loss and evaluation's default)
    clip_frames: int = 8  # T: frames per training clip
    rollout_steps: int = 4  # frames predicted autoregressively in the rollout loss
    rollout_context: int = 0  # real frames the rollout loss starts from (0 = context_frames); 1 = no motion seen
    action_adaln: bool = False  # also scale and shift every token's norms by its frame's action (AdaLN-Zero)
    text_ngrams: int = 0  # buckets of hashed byte n-grams read as the instruction (byte transformer frozen); 0 = none
    decode_residual: bool = True
    residual_gate: bool = True  # learn to drop the carried detail of patches that changed (see the module docstring)
    backend: str = "auto"  # st_attention backend: auto = triton on CUDA, sdpa on CPU
    w_latent: float = 1.0
    w_pixel: float = 100.0
    motion_weight: float = (
        0.0  # pixel errors weighted by 1 + this x |real frame change| (0 = plain MSE; see _pixel_loss)
    )
    w_state: float = 1.0
    w_recon: float = 100.0
    w_rollout: float = 1.0
    w_contrastive: float = 0.1
    success_head: bool = False  # predict next.success per frame (needs the labels; genba train-worldmodel success=)
    w_success: float = 1.0
    w_success_rollout: float = 1.0  # the head also judges the rollout loss's imagined frames (0 = real frames only)
    success_pos_weight: float = 1.0  # BCE weight of a positive frame (train-worldmodel sets negatives / positives)
    tasks: list[str] = field(default_factory=list)  # genba sim tasks of the training data (empty: unknown)
    fps: int = 0  # control rate of the training data (0: unknown)

    def __post_init__(self) -> None:
        if isinstance(self.backbone, dict):
            self.backbone = BackboneConfig(**self.backbone)
        self.cameras = list(self.cameras)
        if not self.cameras:
            raise GenbaError("a world model needs at least one camera")
        if self.width % self.heads or self.width // self.heads not in (32, 64, 128):
            raise GenbaError(f"width={self.width} / heads={self.heads} must be a head size of 32, 64 or 128")
        if self.context_frames < 1 or self.clip_frames < 2:
            raise GenbaError(f"context_frames={self.context_frames} >= 1 and clip_frames={self.clip_frames} >= 2")
        if self.rollout_context < 0:
            raise GenbaError(f"rollout_context={self.rollout_context} must be >= 0 (0 = context_frames)")
        if self.rollout_steps and self.rollout_start + self.rollout_steps > self.clip_frames:
            raise GenbaError(
                f"the rollout loss's {self.rollout_start} real frames (rollout_context, 0 = context_frames) + "
                f"rollout_steps={self.rollout_steps} exceed clip_frames={self.clip_frames}"
            )
        if self.motion_weight < 0:
            raise GenbaError(f"motion_weight={self.motion_weight} must be >= 0 (0 = plain MSE)")
        if self.text_ngrams < 0:
            raise GenbaError(f"text_ngrams={self.text_ngrams} must be >= 0")
        if self.frame_window is not None and self.frame_window < 1:
            raise GenbaError(f"frame_window={self.frame_window} must be None or >= 1")

    @property
    def rollout_start(self) -> int:
        """Real frames before the rollout loss's first prediction."""
        return self.rollout_context or self.context_frames

    @property
    def image_size(self) -> int:
        return self.backbone.image_size

    @property
    def tokens_per_frame(self) -> int:
        """N = cameras x patches + state + action + instruction."""
        return len(self.cameras) * self.backbone.patches + 3


class WorldModel(Normalized):
    def __init__(self, config: WorldModelConfig) -> None:
        super().__init__(config)
        cfg = config
        bb = cfg.backbone
        patch = 3 * bb.patch_size**2
        self.backbone = Backbone(bb)
        # the frame tokenizer: each patch on its own, so a patch that does not change keeps its latent exactly
        self.tokenizer = nn.Sequential(
            nn.Linear(patch, cfg.decoder_hidden),
            nn.GELU(approximate="tanh"),
            nn.Linear(cfg.decoder_hidden, cfg.latent_dim),
        )
        self.decoder = nn.Sequential(
            nn.Linear(cfg.latent_dim, cfg.decoder_hidden),
            nn.GELU(approximate="tanh"),
            nn.Linear(cfg.decoder_hidden, patch),
        )
        self.lat_in = nn.Linear(cfg.latent_dim, cfg.width)
        self.vit_in = nn.Linear(bb.width, cfg.width)
        self.state_in = nn.Linear(cfg.state_dim, cfg.width)
        self.action_in = nn.Linear(cfg.action_dim, cfg.width)
        self.text_in = nn.Linear(bb.text_width, cfg.width)
        self.pos = nn.Parameter(torch.zeros(cfg.tokens_per_frame, cfg.width))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.blocks = nn.ModuleList(Block(cfg.width, cfg.heads, cfg.action_adaln) for _ in range(cfg.depth))
        if cfg.text_ngrams:  # the instruction as a bag of n-grams; the byte transformer stays (shared keys), frozen
            self.ngrams = ByteNGrams(cfg.text_ngrams, bb.text_width)
            self.backbone.text.requires_grad_(False)
        self.norm_out = nn.LayerNorm(cfg.width)
        self.lat_out = nn.Linear(cfg.width, cfg.latent_dim)
        self.state_out = nn.Linear(cfg.width, cfg.state_dim)
        self.gate = nn.Linear(cfg.latent_dim, 1)
        if cfg.success_head:  # only then: the weights of runs without it load strictly, as they were saved
            self.success_out = nn.Sequential(
                nn.Linear(cfg.width, cfg.width), nn.GELU(approximate="tanh"), nn.Linear(cfg.width, 1)
            )
        for head in (self.lat_out, self.state_out, self.gate):  # start as "nothing changes": copy-last
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    # ---- tokenizer and backbone features ----

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """frames (..., C, 3, H, W) float in [0, 1] -> latents (..., C * P, latent_dim)."""
        return F.layer_norm(self.tokenizer(self._patchify(x)), (self.config.latent_dim,))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """latents (..., C * P, latent_dim) -> frames (..., C, 3, H, W), float, about [0, 1]."""
        return self._unpatchify(self.decoder(z))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """frames (B, F, C, 3, H, W) float in [0, 1] -> the backbone ViT's tokens (B, F, C, P, width)."""
        tokens = self.backbone.encode_images(x.flatten(0, 2))  # (B * F * C, P, width)
        return tokens.reshape(*x.shape[:3], *tokens.shape[1:])

    def _patchify(self, x: torch.Tensor) -> torch.Tensor:
        """frames (..., C, 3, H, W) -> per-patch pixels (..., C * P, 3 * p * p), patches row-major per camera."""
        p = self.config.backbone.patch_size
        c, g = x.shape[-4], x.shape[-1] // p
        y = x.reshape(-1, c, 3, g, p, g, p).permute(0, 1, 3, 5, 2, 4, 6)  # (N, C, gy, gx, 3, py, px)
        return y.reshape(*x.shape[:-4], c * g * g, 3 * p * p)

    def _unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """Per-patch pixels (..., C * P, 3 * p * p) -> frames (..., C, 3, H, W)."""
        bb, c = self.config.backbone, len(self.config.cameras)
        g, p = bb.image_size // bb.patch_size, bb.patch_size
        y = x.reshape(-1, c, g, g, 3, p, p).permute(0, 1, 4, 2, 5, 3, 6)  # (N, C, 3, gy, py, gx, px)
        return y.reshape(*x.shape[:-2], c, 3, g * p, g * p)

    # ---- dynamics ----

    def _tokens(
        self, z: torch.Tensor, vit: torch.Tensor, s: torch.Tensor, a: torch.Tensor, text: torch.Tensor
    ) -> torch.Tensor:
        """z (B, F, C*P, latent), ViT tokens (B, F, C, P, width_b), s (B, F, S), a (B, F, A) normalized, text
        (B, text_width) -> (B, F * N, width)."""
        b, f = z.shape[:2]
        act = self.action_in(a)[:, :, None]  # (B, F, 1, W)
        instr = self.text_in(text)[:, None, None].expand(b, f, 1, -1)
        cams = self.lat_in(z) + self.vit_in(vit.flatten(2, 3))  # (B, F, C*P, W)
        x = torch.cat([cams, self.state_in(s)[:, :, None], act, instr], 2)  # (B, F, N, W)
        return (x + self.pos + act).flatten(1, 2)

    def _run(
        self, x: torch.Tensor, a: torch.Tensor, first_frame: int, caches: list[FrameKVCache] | None = None
    ) -> torch.Tensor:
        """Token sequence (B, F * N, W) of frames first_frame.., their actions a (B, F, A) normalized -> hidden
        states (B, F, N, W)."""
        cfg, n = self.config, self.config.tokens_per_frame
        cond = F.silu(self.action_in(a)) if cfg.action_adaln else None  # (B, F, W)
        frames = torch.arange(first_frame, first_frame + x.shape[1] // n, device=x.device)
        rope = rope_tables(frames, n, cfg.width // cfg.heads, x.dtype)
        for i, block in enumerate(self.blocks):
            cache = None if caches is None else caches[i]
            x = block(x, rope, n=n, window=cfg.frame_window, backend=cfg.backend, cache=cache, cond=cond)
        return self.norm_out(x).unflatten(1, (-1, n))

    def _heads(self, h: torch.Tensor, z: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden (B, F, N, W) at frames t -> (z_{t+1} (B, F, C*P, latent), s_{t+1} (B, F, S)), residual."""
        cp = z.shape[2]
        return z + self.lat_out(h[:, :, :cp]), s + self.state_out(h[:, :, cp])

    def _success(self, h: torch.Tensor) -> torch.Tensor | None:
        """Hidden (B, F, N, W) at frames t -> logits of next.success (B, F); None without the head."""
        return self.success_out(h.mean(2))[..., 0] if self.config.success_head else None

    def _pixels(
        self, z_hat: torch.Tensor, x_ref: torch.Tensor, z_ref: torch.Tensor, recon_ref: torch.Tensor
    ) -> torch.Tensor:
        """Predicted latents (B, K, CP, latent) -> frames (B, K, C, 3, H, W), given the last real frame x_ref
        (B, 1|K, C, 3, H, W), its latents z_ref (B, 1|K, CP, latent) and their decoding recon_ref = D(z_ref)."""
        decoded = self.decode(z_hat)
        if not self.config.decode_residual:
            return decoded
        if not self.config.residual_gate:
            return decoded + x_ref - recon_ref
        gate = 2 * torch.sigmoid(self.gate((z_hat - z_ref).square()))  # (B, K, CP, 1), 1 at initialization
        gate = self._unpatchify(gate.expand(*gate.shape[:-1], 3 * self.config.backbone.patch_size**2))
        return decoded + gate * (x_ref - recon_ref)

    def _begin(
        self, x: torch.Tensor, z: torch.Tensor, vit: torch.Tensor, s: torch.Tensor, a: torch.Tensor, text: torch.Tensor
    ) -> Dream:
        """Context frames x (B, C, Cams, 3, H, W) in [0, 1], their latents z (B, C, CP, latent), ViT tokens vit
        (B, C, Cams, P, width_b), states s (B, C, S), the actions of all but the last a (B, C - 1, A) normalized,
        text (B, text_width) -> a Dream whose pending frame is the last context frame (frames before it prefilled)."""
        c = z.shape[1]
        caches = [FrameKVCache(self.config.tokens_per_frame, self.config.frame_window) for _ in self.blocks]
        if c > 1:
            self._run(self._tokens(z[:, :-1], vit[:, :-1], s[:, :-1], a[:, : c - 1], text), a[:, : c - 1], 0, caches)
        x_ref, z_ref = x[:, -1:], z[:, -1:]
        return Dream(caches, text, x_ref, z_ref, self.decode(z_ref), z_ref, s[:, -1:], x_ref, vit[:, -1:], c - 1)

    def _advance(self, d: Dream, a: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The pending frame takes action a (B, 1, A) normalized -> the next frame's (z (B, 1, CP, latent),
        s (B, 1, S), pixels (B, 1, Cams, 3, H, W), success logit (B, 1) or None); it becomes the pending frame."""
        vit = d.vit if d.vit is not None else self.features(d.x.clamp(0, 1))  # the ViT sees the predicted pixels
        h = self._run(self._tokens(d.z, vit, d.s, a, d.text), a, d.frame, d.caches)
        z, s = self._heads(h, d.z, d.s)
        x = self._pixels(z, d.x_ref, d.z_ref, d.recon_ref)
        d.z, d.s, d.x, d.vit, d.frame = z, s, x, None, d.frame + 1
        return z, s, x, self._success(h)

    def _rollout(
        self, x: torch.Tensor, z: torch.Tensor, vit: torch.Tensor, s: torch.Tensor, a: torch.Tensor, text: torch.Tensor,
        horizon: int,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:  # fmt: skip
        """Context frames x (B, C, Cams, 3, H, W) in [0, 1] with their latents z (B, C, CP, latent), ViT tokens
        vit (B, C, Cams, P, width_b) and states s (B, C, S), actions a (B, C + K - 1, A) normalized -> the next K
        frames' (z (B, K, CP, latent), s (B, K, S), pixels (B, K, Cams, 3, H, W), success logits (B, K) or None:
        after actions C-1 .. C+K-2). Each step is fed the previous prediction (its latents, state, and the ViT's
        tokens of its pixels), with KV caches."""
        c = z.shape[1]
        d = self._begin(x, z, vit, s, a[:, : c - 1], text)
        steps = [self._advance(d, a[:, c - 1 + k : c + k]) for k in range(horizon)]
        zs, ss, xs, logits = zip(*steps, strict=True)
        success = torch.cat(logits, 1) if self.config.success_head else None
        return torch.cat(zs, 1), torch.cat(ss, 1), torch.cat(xs, 1), success

    # ---- training ----

    def loss(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """A batch of clips (genba.datasets.clips with obs_frames=1, future_frames=T-1, action_horizon=T)."""
        cfg = self.config
        frames = torch.stack([_clip_frames(batch, cam) for cam in cfg.cameras], 2)  # (B, T, C, 3, H, W) uint8
        x = frames.float() / 255.0
        s = self.norm(torch.cat([batch[cfg.state_key], batch[keys.FUTURE_STATE]], 1), "state")  # (B, T, S)
        t = s.shape[1]
        a = self.norm(batch[cfg.action_key][:, :t], "action")  # (B, T, A)
        z, vit = self.encode(x), self.features(x)  # (B, T, CP, latent), (B, T, C, P, width_b)
        text = self.instruction(list(batch[keys.TASK]))  # (B, text_width)
        h = self._run(self._tokens(z, vit, s, a, text), a, 0)  # (B, T, N, W)
        z_hat, s_hat = self._heads(h, z, s)
        target_z, recon = z.detach(), self.decode(z)
        pix = self._pixels(z_hat[:, :-1], x[:, :-1], z[:, :-1], recon[:, :-1])
        terms = {
            "latent": F.mse_loss(z_hat[:, :-1], target_z[:, 1:]),
            "pixel": _pixel_loss(pix, x[:, 1:], x[:, :-1], cfg.motion_weight),
            "state": F.mse_loss(s_hat[:, :-1], s[:, 1:]),
            "recon": F.mse_loss(recon, x),
        }
        total = (
            cfg.w_latent * terms["latent"]
            + cfg.w_pixel * terms["pixel"]
            + cfg.w_state * terms["state"]
            + cfg.w_recon * terms["recon"]
        )
        prediction = total  # what the frames and joints cost, without the head's and the contrastive terms
        labels = batch.get(keys.NEXT_SUCCESS) if cfg.success_head else None  # (B, T) float, 1 = success after a_t
        if labels is not None:
            terms["success"] = self._success_loss(self._success(h), labels)
            total = total + cfg.w_success * terms["success"]
        if cfg.rollout_steps and cfg.w_rollout:
            c, k = cfg.rollout_start, cfg.rollout_steps
            z_r, s_r, pix_r, success_r = self._rollout(
                x[:, :c], z[:, :c], vit[:, :c], s[:, :c], a[:, : c + k - 1], text, k
            )  # success_r (B, K): after actions c-1 .. c+k-2
            terms["rollout_pixel"] = _pixel_loss(pix_r, x[:, c : c + k], x[:, c - 1 : c + k - 1], cfg.motion_weight)
            terms["rollout_latent"] = F.mse_loss(z_r, target_z[:, c : c + k])
            terms["rollout_state"] = F.mse_loss(s_r, s[:, c : c + k])
            rollout = cfg.w_rollout * (
                cfg.w_pixel * terms["rollout_pixel"] + cfg.w_latent * terms["rollout_latent"]
                + cfg.w_state * terms["rollout_state"]
            )  # fmt: skip
            total, prediction = total + rollout, prediction + rollout
            if labels is not None and cfg.w_success_rollout:  # the head on imagined frames, as the env uses it
                terms["rollout_success"] = self._success_loss(success_r, labels[:, c - 1 : c + k - 1])
                total = total + cfg.w_success_rollout * terms["rollout_success"]
        if cfg.w_contrastive:
            img = self.backbone.image_embedding(list(vit[:, 0].unbind(1)))  # first frame, every camera
            txt = self.backbone.text_embedding(text)
            same = same_text(list(batch[keys.TASK])).to(img.device)
            terms["contrastive"] = self.backbone.contrastive_loss(img, txt, same)
            total = total + cfg.w_contrastive * terms["contrastive"]
        terms["prediction"] = prediction
        return total, {name: v.detach() for name, v in terms.items()}

    def _success_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """BCE of success logits and labels (B, F), positives weighted by success_pos_weight."""
        weight = torch.tensor(self.config.success_pos_weight, device=logits.device)
        return F.binary_cross_entropy_with_logits(logits.float(), labels.float(), pos_weight=weight)

    # ---- inference ----

    @torch.no_grad()
    def rollout(
        self,
        images: dict[str, torch.Tensor],
        state: torch.Tensor,
        actions: torch.Tensor,
        task: list[str],
        horizon: int | None = None,
    ) -> dict:
        """Context images {cam: (B, C, 3, H, W) uint8}, state (B, C, S), actions (B, C + K - 1, A), raw units ->
        {"images": {cam: (B, K, 3, H, W) uint8}, "state": (B, K, S)}: frames C .. C+K-1. actions[:, i] is taken at
        frame i and leads to frame i + 1."""
        cfg = self.config
        missing = [cam for cam in cfg.cameras if cam not in images]
        if missing:
            raise GenbaError(f"rollout needs camera {missing[0]!r} (the model's cameras: {', '.join(cfg.cameras)})")
        frames = torch.stack([images[cam] for cam in cfg.cameras], 2)  # (B, C, Cams, 3, H, W)
        c = frames.shape[1]
        k = actions.shape[1] - c + 1 if horizon is None else horizon
        if k < 1 or actions.shape[1] < c + k - 1 or state.shape[1] != c:
            raise GenbaError(
                f"rollout of {k} frames from {c} context frames needs state (B, {c}, S) and actions "
                f"(B, {c + k - 1}, A); got {tuple(state.shape)} and {tuple(actions.shape)}"
            )
        device = self.pos.device
        x = _resize(frames.to(device), cfg.image_size).float() / 255.0
        s, a = self.norm(state.to(device), "state"), self.norm(actions.to(device), "action")
        text = self.instruction(list(task))
        _, s_r, pix, _ = self._rollout(x, self.encode(x), self.features(x), s, a, text, k)
        pix = (pix.clamp(0, 1) * 255).round().to(torch.uint8)  # (B, K, Cams, 3, H, W)
        return {
            "images": {cam: pix[:, :, i] for i, cam in enumerate(cfg.cameras)},
            "state": self.unnorm(s_r, "state"),
        }

    @torch.no_grad()
    def imagine(self, images: dict[str, torch.Tensor], state: torch.Tensor, task: list[str]) -> Dream:
        """Start a closed-loop rollout from one real frame: images {cam: (B, 3, H, W) uint8}, state (B, S) raw ->
        a Dream for `imagine_step`."""
        cfg, device = self.config, self.pos.device
        missing = [cam for cam in cfg.cameras if cam not in images]
        if missing:
            raise GenbaError(f"imagine needs camera {missing[0]!r} (the model's cameras: {', '.join(cfg.cameras)})")
        frames = torch.stack([_resize(images[cam].to(device), cfg.image_size) for cam in cfg.cameras], 1)
        x = frames[:, None].float() / 255.0  # (B, 1, Cams, 3, H, W)
        s = self.norm(state.to(device)[:, None], "state")  # (B, 1, S)
        text = self.instruction(list(task))
        return self._begin(x, self.encode(x), self.features(x), s, s.new_zeros(s.shape[0], 0, cfg.action_dim), text)

    @torch.no_grad()
    def imagine_step(self, dream: Dream, action: torch.Tensor) -> dict:
        """The dream's newest frame takes action (B, A) raw -> {"images": {cam: (B, 3, H, W) uint8}, "state": (B, S)
        raw, "success": (B,) probability of next.success, or None without the head}."""
        a = self.norm(action.to(self.pos.device)[:, None], "action")
        _, s, x, logit = self._advance(dream, a)
        pix = (x[:, 0].clamp(0, 1) * 255).round().to(torch.uint8)  # (B, Cams, 3, H, W)
        return {
            "images": {cam: pix[:, i] for i, cam in enumerate(self.config.cameras)},
            "state": self.unnorm(s[:, 0], "state"),
            "success": None if logit is None else torch.sigmoid(logit[:, 0].float()),
        }

    @torch.no_grad()
    def embed_images(self, images: dict[str, torch.Tensor]) -> torch.Tensor:
        """{cam: (B, 3, H, W) uint8} -> (B, E) unit vectors in the backbone's image-text space."""
        device = self.pos.device
        frames = [_resize(images[cam].to(device), self.config.image_size) for cam in self.config.cameras]
        return self.backbone.image_embedding([self.backbone.encode_images(f) for f in frames])

    @torch.no_grad()
    def embed_text(self, task: list[str]) -> torch.Tensor:
        """instructions -> (B, E) unit vectors in the backbone's image-text space."""
        return self.backbone.text_embedding(self.instruction(list(task)))

    def instruction(self, task: list[str]) -> torch.Tensor:
        """instructions -> (B, text_width): the byte transformer's mean, or with text_ngrams the n-grams' mean."""
        return self.ngrams(task) if self.config.text_ngrams else self.backbone.encode_text(task)[1]


@dataclass
class Dream:
    """A rollout in progress: the KV caches, the instruction's encoding, the last real frame (x_ref (B, 1, Cams, 3,
    H, W) in [0, 1], z_ref, recon_ref = D(z_ref)) and the pending frame (z, s normalized, pixels x, ViT tokens vit
    when known) with its index `frame`, whose action comes next."""

    caches: list[FrameKVCache]
    text: torch.Tensor
    x_ref: torch.Tensor
    z_ref: torch.Tensor
    recon_ref: torch.Tensor
    z: torch.Tensor
    s: torch.Tensor
    x: torch.Tensor
    vit: torch.Tensor | None
    frame: int


def _clip_frames(batch: dict, cam: str) -> torch.Tensor:
    """Observation + future frames of one camera -> (B, T, 3, H, W)."""
    return torch.cat([batch[keys.image_key(cam)], batch[keys.future_image_key(cam)]], 1)


def _resize(frames: torch.Tensor, size: int) -> torch.Tensor:
    """(..., 3, H, W) uint8 -> (..., 3, size, size) uint8 (unchanged when already that size)."""
    if frames.shape[-1] == size and frames.shape[-2] == size:
        return frames
    lead = frames.shape[:-3]
    x = F.interpolate(frames.flatten(0, -4).float(), size=(size, size), mode="bilinear", antialias=True)
    return x.round().clamp(0, 255).to(torch.uint8).reshape(*lead, 3, size, size)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


register_model(KIND, WorldModel, WorldModelConfig)


def _pixel_loss(pred: torch.Tensor, target: torch.Tensor, previous: torch.Tensor, motion_weight: float) -> torch.Tensor:
    """pred, target, previous (B, K, C, 3, H, W) -> the pixel loss (scalar).

    Plain MSE at motion_weight 0. Else each pixel's squared error is weighted by 1 + motion_weight x mean_rgb |target -
    previous| (how much the real frame changed there: the arm and what it moves), normalized by the mean weight, so
    that the static background, most of every frame, no longer outweighs the part the actions control. Measured on
    the tuning data in benchmarks/README.md (issue 10, fifteenth session)."""
    if not motion_weight:
        return F.mse_loss(pred, target)
    w = 1.0 + motion_weight * (target - previous).abs().mean(3, keepdim=True)  # (B, K, C, 1, H, W)
    return ((pred - target) ** 2 * w).mean() / w.mean()
