"""The language-vision backbone shared by the world model and the policies: a timm ViT over camera frames, a
transformer over UTF-8 bytes for instructions, and a SigLIP-style sigmoid contrastive loss that ties the two.

    backbone = Backbone(BackboneConfig(image_size=64, patch_size=16, width=128, depth=2))
    tokens = backbone.encode_images(frames)          # (B, 3, H, W) uint8 -> (B, P, width)
    img = backbone.image_embedding([tokens_front, tokens_wrist])   # -> (B, embed_dim), unit norm
    txt = backbone.text_embedding(backbone.encode_text(["put the red cube in the blue bin", "赤い..."]))
    loss = backbone.contrastive_loss(img, txt, same=(tasks_i == tasks_j))
    aud = backbone.audio_embedding(backbone.encode_audio(waves, lengths)[1])   # with audio_width > 0
    loss = backbone.audio_text_loss(aud, txt, same)

Nothing is downloaded: the ViT is built with random weights (`weights=` loads a local safetensors file of a timm
ViT when a user has one; the position embedding is resampled when the grid differs). The text encoder reads raw
UTF-8 bytes, so English and Japanese need no vocabulary. SigLIP (Zhai et al. 2023): every image-text pair of the
batch is a binary classification, positive where the instructions are the same string, with a learned temperature
and bias (initialized at log 10 and -10 as in the paper).

Spoken instructions (`audio_width > 0`; 0 builds no audio parameters, so earlier checkpoints load unchanged): a
16 kHz waveform becomes log-mel features (genba.speech.features, torch's STFT), normalized per utterance and band
(which removes much of what tells one voice or microphone from another), subsampled 4x in time by two stride-2
convolutions (40 ms per token, the conformer / Whisper front end) into a small transformer, mean-pooled over the
valid frames and projected into the same space as the text, with its own SigLIP temperature and bias.
With an alphabet in `audio_ctc` the audio tokens also transcribe the instruction (`transcription_loss`): CTC
(Graves et al. 2006) over the instruction's letters, digits, kana and kanji (`ctc_targets`: lower-cased, anything
else dropped; `alphabet(texts)` builds the alphabet from the training instructions and the config keeps it; 0 is
CTC's blank and 1 a character outside the alphabet), two outputs per 40 ms token so that a fast utterance still has
more outputs than characters. It is a per-token training signal where the SigLIP loss gives one match per
utterance; `transcription_scores` ranks candidate instructions by it.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from genba import keys
from genba.errors import GenbaError
from genba.io import one_line

BYTE_PAD = 256  # byte values are 0..255; 256 pads
STEMS = ("patch", "conv")
CTC_UPSAMPLE = 2  # transcription outputs per audio token


@dataclass
class BackboneConfig:
    image_size: int = 64  # frames are resized to this square size before the ViT
    patch_size: int = 16
    width: int = 128  # ViT width
    depth: int = 2
    heads: int = 4
    text_width: int = 128
    text_depth: int = 2
    text_heads: int = 4
    text_max_bytes: int = 96  # longer instructions are cut (a Japanese character is 3 bytes)
    embed_dim: int = 128  # the shared image-text space of the contrastive loss
    stem: str = "patch"  # patch: timm's linear patch embedding; conv: a stack of 3x3 stride-2 convolutions
    weights: str = ""  # optional local .safetensors of a timm ViT with this shape (nothing is downloaded)
    audio_width: int = 0  # the audio encoder's width; 0 = no audio encoder
    audio_depth: int = 2
    audio_heads: int = 4
    audio_max_seconds: float = 8.0  # longer waveforms are cut
    n_mels: int = 64
    audio_ctc: str = ""  # the alphabet the audio tokens transcribe (CTC; `alphabet`); "" = no transcription head
    audio_ctc_weight: float = 1.0  # the transcription loss's weight beside the speech-text loss (SpokenBackbone)

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise GenbaError(f"image_size={self.image_size} is not a multiple of patch_size={self.patch_size}")
        if self.stem not in STEMS:
            raise GenbaError(f"stem={self.stem!r} (valid: {', '.join(STEMS)})")
        if self.stem == "conv" and (self.patch_size < 2 or self.patch_size & (self.patch_size - 1)):
            raise GenbaError(f"stem=conv needs a power-of-two patch_size >= 2, got {self.patch_size}")
        if self.audio_ctc and (not self.audio_width or len(set(self.audio_ctc)) != len(self.audio_ctc)):
            raise GenbaError("audio_ctc needs an audio encoder (audio_width > 0) and each character once")
        for name, heads in (("width", self.heads), ("text_width", self.text_heads), ("audio_width", self.audio_heads)):
            if getattr(self, name) % heads:
                raise GenbaError(f"{name}={getattr(self, name)} is not divisible by its heads ({heads})")

    @property
    def patches(self) -> int:
        """P: tokens per frame out of the ViT."""
        return (self.image_size // self.patch_size) ** 2


class TextEncoder(nn.Module):
    """UTF-8 bytes -> token features (B, Lt, text_width) and a mean-pooled vector (B, text_width)."""

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        self.max_bytes = cfg.text_max_bytes
        self.embed = nn.Embedding(BYTE_PAD + 1, cfg.text_width, padding_idx=BYTE_PAD)
        self.pos = nn.Parameter(torch.zeros(cfg.text_max_bytes, cfg.text_width))
        nn.init.trunc_normal_(self.pos, std=0.02)
        layer = nn.TransformerEncoderLayer(
            cfg.text_width, cfg.text_heads, 4 * cfg.text_width, dropout=0.0, batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, cfg.text_depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.text_width)

    def tokenize(self, texts: list[str], device: torch.device | str = "cpu") -> torch.Tensor:
        """texts -> (B, Lt) int64 byte ids, padded with BYTE_PAD; Lt = the longest, at most text_max_bytes."""
        raw = [t.encode("utf-8")[: self.max_bytes] or b" " for t in texts]
        ids = torch.full((len(raw), max(len(r) for r in raw)), BYTE_PAD, dtype=torch.long)
        for i, r in enumerate(raw):
            ids[i, : len(r)] = torch.frombuffer(bytearray(r), dtype=torch.uint8).long()
        return ids.to(device)

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ids (B, Lt) -> (tokens (B, Lt, text_width), pooled (B, text_width))."""
        pad = ids == BYTE_PAD  # (B, Lt)
        x = self.embed(ids) + self.pos[: ids.shape[1]]
        x = self.norm(self.blocks(x, src_key_padding_mask=pad))
        keep = (~pad).unsqueeze(-1).to(x.dtype)  # (B, Lt, 1)
        pooled = (x * keep).sum(1) / keep.sum(1).clamp(min=1.0)
        return x, pooled


class ByteNGrams(nn.Module):
    """UTF-8 byte n-grams (3 to 5 bytes) hashed into `buckets` embeddings, averaged: texts -> (B, width). fastText's
    bag of character n-grams (Bojanowski et al. 2017) on bytes, so that English words and Japanese characters (3
    bytes each) need no vocabulary. Unlike the byte transformer's mean, a word's vector here does not depend on
    where the template puts it, which is what a few hundred instructions can teach."""

    NS = (3, 4, 5)

    def __init__(self, buckets: int, width: int) -> None:
        super().__init__()
        self.buckets = buckets
        self.embed = nn.EmbeddingBag(buckets, width, mode="mean")

    def ids(self, text: str) -> list[int]:
        """The hashed n-grams of one text (crc32, stable across runs and machines); [0] for a text too short."""
        b = text.encode("utf-8")
        return [zlib.crc32(b[i : i + n]) % self.buckets for n in self.NS for i in range(len(b) - n + 1)] or [0]

    def forward(self, texts: list[str]) -> torch.Tensor:
        grams = [self.ids(t) for t in texts]
        offsets = torch.tensor([0] + [len(g) for g in grams[:-1]]).cumsum(0)  # (B,)
        flat = torch.tensor([i for g in grams for i in g], device=self.embed.weight.device)
        return self.embed(flat, offsets.to(flat.device))  # (B, width)


class AudioEncoder(nn.Module):
    """Log-mel frames (B, F, n_mels) -> token features (B, F / 4, audio_width) and a pooled vector (B, audio_width)."""

    SUBSAMPLE = 4  # two stride-2 convolutions

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        from genba.speech.features import HOP

        w, channels = cfg.audio_width, max(cfg.audio_width // 4, 8)
        self.conv = nn.Sequential(
            nn.Conv2d(1, channels, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(channels, channels, 3, stride=2, padding=1), nn.GELU(),
        )  # fmt: skip
        self.proj = nn.Linear(channels * math.ceil(cfg.n_mels / self.SUBSAMPLE), w)
        max_tokens = math.ceil(cfg.audio_max_seconds * keys.AUDIO_SAMPLE_RATE / HOP / self.SUBSAMPLE) + 1
        self.pos = nn.Parameter(torch.zeros(max_tokens, w))
        nn.init.trunc_normal_(self.pos, std=0.02)
        layer = nn.TransformerEncoderLayer(w, cfg.audio_heads, 4 * w, dropout=0.0, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, cfg.audio_depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(w)

    def forward(self, mel: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """mel (B, F, n_mels) normalized log-mel, valid (B, F) bool -> (tokens (B, L, w), pooled (B, w), keep (B, L)
        bool: the tokens inside the utterance)."""
        x = self.conv(mel.unsqueeze(1))  # (B, C, L, n_mels / 4)
        x = self.proj(x.permute(0, 2, 1, 3).flatten(2))  # (B, L, w)
        keep = valid[:, :: self.SUBSAMPLE][:, : x.shape[1]]  # (B, L): a token is valid where its first frame is
        x = x + self.pos[: x.shape[1]]
        x = self.norm(self.blocks(x, src_key_padding_mask=~keep))
        k = keep.unsqueeze(-1).to(x.dtype)
        return x, (x * k).sum(1) / k.sum(1).clamp(min=1.0), keep


def vision_transformer(cfg: BackboneConfig) -> nn.Module:
    """timm's VisionTransformer without class token or head: (B, 3, H, W) -> (B, P, width) via forward_features."""
    from timm.models.vision_transformer import VisionTransformer

    vit = VisionTransformer(
        img_size=cfg.image_size,
        patch_size=cfg.patch_size,
        embed_dim=cfg.width,
        depth=cfg.depth,
        num_heads=cfg.heads,
        num_classes=0,
        global_pool="",
        class_token=False,
        no_embed_class=True,
    )
    if cfg.stem == "conv":
        vit.patch_embed.proj = conv_stem(cfg.patch_size, cfg.width)
    if cfg.weights:
        load_vit_weights(vit, cfg.weights, cfg.image_size // cfg.patch_size)
    return vit


def conv_stem(patch_size: int, width: int) -> nn.Sequential:
    """(B, 3, H, W) -> (B, width, H / p, W / p) by log2(p) 3x3 stride-2 convolutions (GroupNorm, GELU) and a 1x1
    projection: the convolutional stem of Xiao et al. 2021 ("Early convolutions help transformers see better"),
    which makes a ViT trained from scratch on little data far easier to optimize and better at locating things
    inside a patch than one linear map of the whole patch."""
    layers: list[nn.Module] = []
    channels, n = 3, int(math.log2(patch_size))
    for i in range(n):
        out = max(width // 2 ** (n - i), 16)
        layers += [nn.Conv2d(channels, out, 3, stride=2, padding=1, bias=False), nn.GroupNorm(1, out), nn.GELU()]
        channels = out
    layers.append(nn.Conv2d(channels, width, 1))
    return nn.Sequential(*layers)


def load_vit_weights(vit: nn.Module, path: str, grid: int) -> None:
    """A local safetensors state dict of a timm ViT into `vit` (head and class token dropped, position embedding
    resampled to the grid); one line when the file is missing or does not fit."""
    import safetensors.torch
    from timm.layers import resample_abs_pos_embed

    file = Path(path).expanduser()
    if not file.is_file() or file.suffix != ".safetensors":
        raise GenbaError(f"backbone weights={path}: need an existing .safetensors file (never a pickle)")
    try:
        state = safetensors.torch.load_file(str(file))
    except Exception as e:  # a truncated or foreign file
        raise GenbaError(f"cannot read backbone weights {file}: {one_line(e)}") from None
    state = {k: v for k, v in state.items() if not k.startswith(("head.", "cls_token", "fc_norm."))}
    if "pos_embed" in state:
        pos = state["pos_embed"]
        extra = pos.shape[1] - math.isqrt(pos.shape[1]) ** 2  # class/register tokens stored in front
        state["pos_embed"] = resample_abs_pos_embed(pos[:, extra:], new_size=[grid, grid], num_prefix_tokens=0)
    try:
        missing, unexpected = vit.load_state_dict(state, strict=False)
    except RuntimeError as e:  # a tensor of another shape
        raise GenbaError(f"backbone weights {file} do not fit the ViT: {one_line(e)[:300]}") from None
    if missing or unexpected:
        raise GenbaError(
            f"backbone weights {file} do not fit the ViT: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )


class Backbone(nn.Module):
    """Vision encoder + text encoder + projections into one embedding space, and the contrastive loss."""

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.vision = vision_transformer(cfg)
        self.text = TextEncoder(cfg)
        self.image_proj = nn.Linear(cfg.width, cfg.embed_dim)
        self.text_proj = nn.Linear(cfg.text_width, cfg.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(10.0)))
        self.logit_bias = nn.Parameter(torch.tensor(-10.0))
        if cfg.audio_width:
            self.audio = AudioEncoder(cfg)
            self.audio_proj = nn.Linear(cfg.audio_width, cfg.embed_dim)
            self.audio_logit_scale = nn.Parameter(torch.tensor(math.log(10.0)))
            self.audio_logit_bias = nn.Parameter(torch.tensor(-10.0))
        if cfg.audio_ctc:  # only then: earlier checkpoints load strictly, as they were saved
            self.audio_ctc = nn.Linear(cfg.audio_width, CTC_UPSAMPLE * (len(cfg.audio_ctc) + 2))

    def encode_images(self, frames: torch.Tensor) -> torch.Tensor:
        """frames (B, 3, H, W) uint8 (or float in [0, 1]) -> patch tokens (B, P, width)."""
        x = frames.float() / 255.0 if frames.dtype == torch.uint8 else frames
        if x.shape[-1] != self.cfg.image_size or x.shape[-2] != self.cfg.image_size:
            x = F.interpolate(x, size=(self.cfg.image_size,) * 2, mode="bilinear", antialias=True, align_corners=False)
        return self.vision.forward_features((x - 0.5) / 0.5)

    def encode_text(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """instructions -> (tokens (B, Lt, text_width), pooled (B, text_width))."""
        return self.text(self.text.tokenize(texts, self.logit_scale.device))

    def encode_audio(
        self, waves: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """waves (B, T) float 16 kHz, zero-padded after lengths (B,) samples -> (tokens (B, L, audio_width),
        pooled (B, audio_width), valid (B, L) bool: the tokens inside the utterance, at most audio_max_seconds).
        Each utterance's log-mel is normalized over its own valid frames, per band."""
        from genba.speech.features import HOP, N_FFT, log_mel

        if not self.cfg.audio_width:
            raise GenbaError("this backbone has no audio encoder (audio_width=0)")
        limit = int(self.cfg.audio_max_seconds * keys.AUDIO_SAMPLE_RATE)
        waves, lengths = waves[:, :limit], lengths.clamp(max=limit)
        mel = log_mel(waves.float(), n_mels=self.cfg.n_mels)  # (B, F, n_mels)
        # a frame is valid when its window lies inside the utterance (the STFT reflects at the end of each row, so
        # a frame that reaches past an utterance's end would differ with the padding behind it); at least one
        ends = torch.arange(mel.shape[1], device=mel.device)[None] * HOP + N_FFT // 2  # (1, F)
        valid = (ends <= lengths[:, None]) | (torch.arange(mel.shape[1], device=mel.device)[None] == 0)  # (B, F)
        v = valid.unsqueeze(-1).to(mel.dtype)
        count = v.sum(1, keepdim=True).clamp(min=1.0)
        mean = (mel * v).sum(1, keepdim=True) / count
        std = (((mel - mean) ** 2 * v).sum(1, keepdim=True) / count).sqrt().clamp(min=1e-3)
        return self.audio((mel - mean) / std * v, valid)

    def audio_embedding(self, pooled: torch.Tensor) -> torch.Tensor:
        """pooled audio features (B, audio_width) -> unit vector (B, embed_dim)."""
        return F.normalize(self.audio_proj(pooled), dim=-1)

    def audio_text_loss(self, aud: torch.Tensor, txt: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
        """SigLIP's sigmoid loss between speech and text, with the audio pair's own temperature and bias."""
        return sigmoid_loss(aud, txt, same, self.audio_logit_scale, self.audio_logit_bias)

    def transcription_logp(self, tokens: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """audio tokens (B, L, audio_width), valid (B, L) -> (log-probabilities (2L, B, V), V = the alphabet + blank
        + unknown, time-major as CTC reads them, and each utterance's output count (B,))."""
        if not self.cfg.audio_ctc:
            raise GenbaError("this backbone has no transcription head (audio_ctc is empty)")
        b, length, _ = tokens.shape
        logits = self.audio_ctc(tokens).reshape(b, CTC_UPSAMPLE * length, -1)  # (B, 2L, V)
        return logits.float().log_softmax(-1).transpose(0, 1), CTC_UPSAMPLE * valid.sum(1)

    def transcription_loss(self, tokens: torch.Tensor, valid: torch.Tensor, texts: list[str]) -> torch.Tensor:
        """CTC loss of the instructions' characters given the audio tokens (B, L, audio_width), valid (B, L); mean
        over the batch of each utterance's loss per target character."""
        logp, out_len = self.transcription_logp(tokens, valid)
        targets = [ctc_targets(t, self.cfg.audio_ctc) for t in texts]
        lengths = torch.tensor([len(t) for t in targets], device=tokens.device)
        flat = torch.tensor([c for t in targets for c in t], dtype=torch.long, device=tokens.device)
        return F.ctc_loss(logp, flat, out_len, lengths, blank=0, reduction="mean", zero_infinity=True)

    @torch.no_grad()
    def transcription_scores(self, tokens: torch.Tensor, valid: torch.Tensor, candidates: list[str]) -> torch.Tensor:
        """Audio tokens (B, L, audio_width), valid (B, L), C candidate instructions -> (B, C) log-likelihood of
        each candidate's characters under the transcription head (higher is likelier)."""
        logp, out_len = self.transcription_logp(tokens, valid)  # (2L, B, V), (B,)
        b, c = tokens.shape[0], len(candidates)
        targets = [ctc_targets(t, self.cfg.audio_ctc) for t in candidates]
        lengths = torch.tensor([len(t) for t in targets], device=tokens.device).repeat(b)  # (B * C,)
        flat = torch.tensor([x for _ in range(b) for t in targets for x in t], dtype=torch.long, device=tokens.device)
        nll = F.ctc_loss(
            logp.repeat_interleave(c, 1), flat, out_len.repeat_interleave(c), lengths, blank=0, reduction="none"
        )  # (B * C,): inf where a candidate has more characters than the outputs can spell
        return -nll.reshape(b, c)

    def image_embedding(self, tokens: list[torch.Tensor]) -> torch.Tensor:
        """Each camera's patch tokens (B, P, width) -> one unit vector (B, embed_dim) for the scene."""
        pooled = torch.stack([t.mean(1) for t in tokens]).mean(0)  # (B, width)
        return F.normalize(self.image_proj(pooled), dim=-1)

    def text_embedding(self, pooled: torch.Tensor) -> torch.Tensor:
        """pooled text features (B, text_width) -> unit vector (B, embed_dim)."""
        return F.normalize(self.text_proj(pooled), dim=-1)

    def contrastive_loss(self, img: torch.Tensor, txt: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
        """SigLIP's sigmoid loss: img, txt (B, E) unit vectors; same (B, B) bool, True where pair (i, j) matches."""
        return sigmoid_loss(img, txt, same, self.logit_scale, self.logit_bias)


def sigmoid_loss(a: torch.Tensor, b: torch.Tensor, same: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor):
    """SigLIP: a (B, E), b (B, E) unit vectors, same (B, B) bool; every pair a binary classification -> scalar."""
    logits = a @ b.T * scale.exp() + bias  # (B, B)
    labels = same.to(logits.dtype) * 2 - 1
    return -F.logsigmoid(labels * logits).sum() / a.shape[0]


def spoken_chars(text: str) -> list[str]:
    """What a speaker says of an instruction: its letters, digits, kana and kanji, lower-cased (punctuation and
    spaces are not spoken)."""
    return [c for c in text.lower() if c.isalnum()]


def alphabet(texts: list[str]) -> str:
    """The sorted characters the instructions `texts` speak: a transcription head's `audio_ctc`."""
    return "".join(sorted({c for t in texts for c in spoken_chars(t)}))


def ctc_targets(text: str, chars: str) -> list[int]:
    """An instruction as CTC targets over the alphabet `chars`: 2 + its index, 1 outside it (0 is the blank)."""
    index = {c: i + 2 for i, c in enumerate(chars)}
    targets = [index.get(c, 1) for c in spoken_chars(text)]
    if not targets:
        raise GenbaError(f"instruction {one_line(text)!r} has no letters to transcribe")
    return targets


def same_text(texts: list[str]) -> torch.Tensor:
    """(B, B) bool: True where two instructions are the same string (positives of the contrastive loss)."""
    ids = {t: i for i, t in enumerate(dict.fromkeys(texts))}
    idx = torch.tensor([ids[t] for t in texts])
    return idx[:, None] == idx[None, :]
