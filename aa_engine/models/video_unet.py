"""Inflating an SD UNet to video: run every 2D layer per frame and insert motion modules.

Frames are folded into the batch axis, (b, c, f, h, w) -> (b*f, c, h, w), so every conv, GroupNorm
and spatial attention of the diffusers `UNet2DConditionModel` runs per frame with unchanged weights
and key names. Motion modules are attached as `motion_modules` ModuleLists on each down/mid/up block
(the key names of Moore-AnimateAnyone's UNet3DConditionModel) and run through forward hooks:

  cross-attention down/up blocks: resnet -> attention -> motion module   (hook on each attention)
  plain down/up blocks:           resnet -> motion module               (hook on each resnet)
  mid block:                      resnet -> attention -> motion module -> resnet

The pose guider's features are added to the output of `conv_in` by another hook. Hooks read the
current frame count and pose features from the UNet's `video_state`; with `num_frames=None` the
motion modules are skipped and the UNet is the plain image model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import UNet2DConditionModel
from torch import nn

from aa_engine.config import MotionModuleConfig
from aa_engine.models.motion_module import MotionModule


@dataclass
class VideoState:
    num_frames: int | None = None
    pose_features: torch.Tensor | None = None  # (b*f, c, h/8, w/8), added after conv_in


def _motion_hook(module: MotionModule, state: VideoState):
    def hook(_layer, _args, output):
        if state.num_frames is None:
            return output
        if isinstance(output, tuple):
            return (module(output[0], state.num_frames),) + tuple(output[1:])
        if isinstance(output, torch.Tensor):
            return module(output, state.num_frames)
        output.sample = module(output.sample, state.num_frames)
        return output

    return hook


def _pose_hook(state: VideoState):
    def hook(_layer, _args, output):
        if state.pose_features is None:
            return output
        return output + state.pose_features.to(output.dtype)

    return hook


def _anchors(block: nn.Module) -> list[nn.Module]:
    """The layers each followed by a motion module in one down/mid/up block."""
    attentions = getattr(block, "attentions", None)
    return list(attentions) if attentions is not None and len(attentions) else list(block.resnets)


def _channels(layer: nn.Module) -> int:
    if hasattr(layer, "out_channels") and isinstance(layer.out_channels, int):
        return layer.out_channels
    return layer.in_channels


def inflate_unet(unet: UNet2DConditionModel, config: MotionModuleConfig) -> VideoState:
    """Attach motion modules and hooks to `unet` in place; returns the state the hooks read."""
    state = VideoState()
    blocks = list(unet.down_blocks) + [unet.mid_block] + list(unet.up_blocks)
    for block in blocks:
        anchors = _anchors(block)
        block.motion_modules = nn.ModuleList(
            MotionModule(_channels(a), config.num_attention_heads, config.max_frames, config.norm_num_groups) for a in anchors
        )
        for anchor, module in zip(anchors, block.motion_modules):
            anchor.register_forward_hook(_motion_hook(module, state))
    unet.conv_in.register_forward_hook(_pose_hook(state))
    unet.video_state = state
    return state


def motion_modules(unet: UNet2DConditionModel) -> list[MotionModule]:
    return [m for m in unet.modules() if isinstance(m, MotionModule)]


def strip_reference_head(unet: UNet2DConditionModel) -> None:
    """ReferenceNet never uses its output; the released reference_unet.pth has no conv_norm_out/conv_out."""
    unet.conv_norm_out = None
    unet.conv_out = nn.Identity()


def video_forward(
    unet: UNet2DConditionModel,
    latents: torch.Tensor,
    timestep: torch.Tensor,
    context: torch.Tensor,
    pose_features: torch.Tensor | None = None,
    use_motion: bool = True,
) -> torch.Tensor:
    """Run the inflated UNet on a video.

    latents: (b, c, f, h, w); timestep: scalar; context: (b, tokens, d) cross-attention context per video;
    pose_features: (b, c0, f, h, w) or None. Returns the prediction, (b, c, f, h, w).
    """
    b, c, f, h, w = latents.shape
    state: VideoState = unet.video_state
    x = latents.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
    state.num_frames = f if use_motion else None
    if pose_features is not None:
        state.pose_features = pose_features.permute(0, 2, 1, 3, 4).reshape(b * f, *pose_features.shape[1:2], h, w)
    try:
        out = unet(x, timestep, encoder_hidden_states=context.repeat_interleave(f, dim=0), return_dict=False)[0]
    finally:
        state.num_frames = None
        state.pose_features = None
    return out.reshape(b, f, c, h, w).permute(0, 2, 1, 3, 4)
