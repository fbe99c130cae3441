"""AnimateDiff-v2 motion module: a temporal transformer that attends over frames at each pixel.

Input and output are frame-folded feature maps (b*f, c, h, w); the module needs `num_frames` to
unfold them. Its `proj_out` is zero-initialised, so a fresh module is an exact identity and an
image model inflated with fresh modules behaves exactly as the image model run frame by frame.
Key names match Moore-AnimateAnyone's `motion_module.pth`:
  temporal_transformer.{norm, proj_in, proj_out}
  temporal_transformer.transformer_blocks.0.attention_blocks.{0,1}.{to_q,to_k,to_v,to_out.0,pos_encoder.pe}
  temporal_transformer.transformer_blocks.0.{norms.{0,1}, ff.net.0.proj, ff.net.2, ff_norm}
"""

from __future__ import annotations

import math

import torch
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from torch import nn


class PositionalEncoding(nn.Module):
    """Sinusoidal frame-position table, stored as the persistent buffer `pe` of shape (1, max_len, dim)."""

    def __init__(self, dim: int, max_len: int = 32):
        super().__init__()
        position = torch.arange(max_len).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
        pe = torch.zeros(1, max_len, dim)
        pe[0, :, 0::2] = torch.sin(position * div_term)
        pe[0, :, 1::2] = torch.cos(position * div_term)
        self.register_buffer("pe", pe)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (n, f, dim) -> x + pe[:f]."""
        return x + self.pe[:, : x.shape[1]].to(x.dtype)


class TemporalSelfAttention(Attention):
    """Self-attention along the frame axis (diffusers Attention + a position table)."""

    def __init__(self, dim: int, heads: int, max_len: int):
        super().__init__(query_dim=dim, heads=heads, dim_head=dim // heads, bias=False, out_bias=True)
        self.pos_encoder = PositionalEncoding(dim, max_len)

    def forward(self, hidden_states: torch.Tensor, num_frames: int) -> torch.Tensor:  # type: ignore[override]
        """hidden_states: (b*f, d, c) tokens of each frame -> same shape."""
        bf, d, c = hidden_states.shape
        b = bf // num_frames
        x = hidden_states.reshape(b, num_frames, d, c).permute(0, 2, 1, 3).reshape(b * d, num_frames, c)
        x = self.pos_encoder(x)
        x = super().forward(x)
        return x.reshape(b, d, num_frames, c).permute(0, 2, 1, 3).reshape(bf, d, c)


class TemporalTransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, max_len: int):
        super().__init__()
        self.attention_blocks = nn.ModuleList([TemporalSelfAttention(dim, heads, max_len) for _ in range(2)])
        self.norms = nn.ModuleList([nn.LayerNorm(dim) for _ in range(2)])
        self.ff = FeedForward(dim, dropout=0.0, activation_fn="geglu")
        self.ff_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        for attention, norm in zip(self.attention_blocks, self.norms):
            x = attention(norm(x), num_frames) + x
        return self.ff(self.ff_norm(x)) + x


class TemporalTransformer(nn.Module):
    def __init__(self, channels: int, heads: int = 8, max_len: int = 32, norm_groups: int = 32):
        super().__init__()
        self.norm = nn.GroupNorm(norm_groups, channels, eps=1e-6, affine=True)
        self.proj_in = nn.Linear(channels, channels)
        self.transformer_blocks = nn.ModuleList([TemporalTransformerBlock(channels, heads, max_len)])
        self.proj_out = nn.Linear(channels, channels)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        """x: (b*f, c, h, w) -> (b*f, c, h, w)."""
        bf, c, h, w = x.shape
        residual = x
        # GroupNorm on the frame-folded batch normalises each frame on its own (as AnimateDiff does).
        y = self.norm(x).permute(0, 2, 3, 1).reshape(bf, h * w, c)
        y = self.proj_in(y)
        for block in self.transformer_blocks:
            y = block(y, num_frames)
        y = self.proj_out(y)
        # contiguous: keep later convs on the same (NCHW) kernels as the image model
        return residual + y.reshape(bf, h, w, c).permute(0, 3, 1, 2).contiguous()


class MotionModule(nn.Module):
    def __init__(self, channels: int, heads: int = 8, max_len: int = 32, norm_groups: int = 32):
        super().__init__()
        if channels % norm_groups:
            raise ValueError(f"motion module channels ({channels}) must be a multiple of {norm_groups}")
        self.temporal_transformer = TemporalTransformer(channels, heads, max_len, norm_groups)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        return self.temporal_transformer(x, num_frames)
