"""Pose Guider: a small conv net that turns a skeleton map into features at latent resolution.

Its output (c_out, H/8, W/8) is added to the denoising UNet's hidden state right after `conv_in`.
Key names match Moore-AnimateAnyone's `pose_guider.pth`: conv_in, blocks.0..5, conv_out.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class PoseGuider(nn.Module):
    def __init__(self, out_channels: int = 320, channels: tuple[int, ...] = (16, 32, 96, 256), in_channels: int = 3):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, channels[0], 3, padding=1)
        blocks = []
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            blocks.append(nn.Conv2d(c_in, c_in, 3, padding=1))
            blocks.append(nn.Conv2d(c_in, c_out, 3, padding=1, stride=2))
        self.blocks = nn.ModuleList(blocks)
        # Zero-initialised so that a fresh guider leaves the pretrained UNet unchanged.
        self.conv_out = nn.Conv2d(channels[-1], out_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, pose: torch.Tensor) -> torch.Tensor:
        """pose: (n, 3, H, W) in [0, 1] -> (n, out_channels, H/8, W/8)."""
        x = F.silu(self.conv_in(pose))
        for block in self.blocks:
            x = F.silu(block(x))
        return self.conv_out(x)
