"""Inflating an SD UNet to video: run every 2D layer per frame and insert motion modules.

Frames are folded into the batch axis, (b, c, f, h, w) -> (b*f, c, h, w), so every conv, GroupNorm
and spatial attention of the diffusers `UNet2DConditionModel` runs per frame with unchanged weights
and key names. Motion modules are attached as `motion_modules` ModuleLists on each down/mid/up block
(the key names of Moore-AnimateAnyone's UNet3DConditionModel).

`video_forward` is the video UNet's forward, written out block by block (the same glue as
diffusers' UNet2DConditionModel.forward and its blocks, for the SD-1.5 family), so that everything
a call depends on is one of its arguments, nothing is stored on the modules, and the model can be
deep-copied:

  conv_in -> + pose features
  cross-attention down/up blocks: resnet -> attention -> motion module
  plain down/up blocks:           resnet -> motion module
  mid block:                      resnet -> attention -> motion module -> resnet
  conv_norm_out -> SiLU -> conv_out

The reference tokens reach the attention processors (reference_attention.py) through diffusers'
`cross_attention_kwargs`. With use_motion=False the motion modules are skipped: the image model.

Feature reuse in the style of DeepCache (Ma et al., 2023): the output of the deep path (everything
between the outermost down block and the outermost up block) changes little between adjacent
denoising steps. A `DeepCache` slot stores it on a full call; a call with reuse=True recomputes
only conv_in, the outermost down block (its skip connections) and the outermost up block.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import UNet2DConditionModel
from torch import nn

from aa_engine.config import MotionModuleConfig
from aa_engine.models.motion_module import MotionModule
from aa_engine.models.reference_attention import ReferenceTokens


def _anchors(block: nn.Module) -> list[nn.Module]:
    """The layers each followed by a motion module in one down/mid/up block."""
    attentions = getattr(block, "attentions", None)
    return list(attentions) if attentions is not None and len(attentions) else list(block.resnets)


def _channels(layer: nn.Module) -> int:
    if hasattr(layer, "out_channels") and isinstance(layer.out_channels, int):
        return layer.out_channels
    return layer.in_channels


# The parts of diffusers' UNet2DConditionModel that video_forward does not reproduce.
_UNSUPPORTED = {
    "class_embed_type": None, "num_class_embeds": None, "addition_embed_type": None, "encoder_hid_dim_type": None,
    "time_embedding_act_fn": None, "center_input_sample": False, "only_cross_attention": False,
}


def inflate_unet(unet: UNet2DConditionModel, config: MotionModuleConfig) -> None:
    """Attach a motion module after every anchor layer of every down/mid/up block, in place."""
    for key, supported in _UNSUPPORTED.items():
        if unet.config.get(key, supported) != supported:
            raise ValueError(f"the video UNet does not support {key}={unet.config.get(key)!r} (SD-1.5 family UNets only)")
    for block in [*unet.down_blocks, unet.mid_block, *unet.up_blocks]:
        block.motion_modules = nn.ModuleList(
            MotionModule(_channels(a), config.num_attention_heads, config.max_frames, config.norm_num_groups) for a in _anchors(block)
        )


def motion_modules(unet: UNet2DConditionModel) -> list[MotionModule]:
    return [m for m in unet.modules() if isinstance(m, MotionModule)]


def strip_reference_head(unet: UNet2DConditionModel) -> None:
    """ReferenceNet never uses its output; the released reference_unet.pth has no conv_norm_out/conv_out."""
    unet.conv_norm_out = None
    unet.conv_out = nn.Identity()


@dataclass
class DeepCache:
    """One slot of DeepCache feature reuse: the deep path's output of the last full call, (n, c, h, w)."""

    features: torch.Tensor | None = None


@dataclass
class _Call:
    """What every block of one forward call needs (built once per call)."""

    emb: torch.Tensor  # (n, d) time embedding
    context: torch.Tensor  # (n, tokens, d) cross-attention context, per row
    kwargs: dict  # cross_attention_kwargs: the reference tokens for the readers
    num_frames: int | None  # None: motion modules off

    def attend(self, attention: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return attention(x, encoder_hidden_states=self.context, cross_attention_kwargs=self.kwargs, return_dict=False)[0]

    def motion(self, module: MotionModule, x: torch.Tensor) -> torch.Tensor:
        return x if self.num_frames is None else module(x, self.num_frames)


def _down(block: nn.Module, x: torch.Tensor, call: _Call, downsample: bool = True) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """One down block: (its output, the skip connections it hands to the up blocks)."""
    skips = []
    attentions = getattr(block, "attentions", None) or [None] * len(block.resnets)
    for resnet, attention, module in zip(block.resnets, attentions, block.motion_modules):
        x = resnet(x, call.emb)
        if attention is not None:
            x = call.attend(attention, x)
        x = call.motion(module, x)
        skips.append(x)
    if downsample and block.downsamplers is not None:
        for downsampler in block.downsamplers:
            x = downsampler(x)
        skips.append(x)
    return x, skips


def _mid(block: nn.Module, x: torch.Tensor, call: _Call) -> torch.Tensor:
    x = block.resnets[0](x, call.emb)
    for attention, module, resnet in zip(block.attentions, block.motion_modules, block.resnets[1:]):
        x = call.motion(module, call.attend(attention, x))
        x = resnet(x, call.emb)
    return x


def _up(block: nn.Module, x: torch.Tensor, skips: list[torch.Tensor], call: _Call, upsample_size) -> torch.Tensor:
    """One up block; consumes its skip connections from the end of `skips`."""
    attentions = getattr(block, "attentions", None) or [None] * len(block.resnets)
    for resnet, attention, module in zip(block.resnets, attentions, block.motion_modules):
        x = resnet(torch.cat([x, skips.pop()], dim=1), call.emb)
        if attention is not None:
            x = call.attend(attention, x)
        x = call.motion(module, x)
    if block.upsamplers is not None:
        for upsampler in block.upsamplers:
            x = upsampler(x, upsample_size)
    return x


def video_forward(
    unet: UNet2DConditionModel,
    latents: torch.Tensor,
    timestep: torch.Tensor,
    context: torch.Tensor,
    pose_features: torch.Tensor | None = None,
    use_motion: bool = True,
    reference: ReferenceTokens | None = None,
    cache: DeepCache | None = None,
    reuse: bool = False,
) -> torch.Tensor:
    """Run the inflated UNet on a video.

    latents: (b, c, f, h, w); timestep: scalar or (b*f,); context: (b, tokens, d) cross-attention
    context per video; pose_features: (b, c0, f, h, w) or None; reference: the reference tokens for
    the readers (None: plain self-attention), with its uncond_rows counted in frames (b*f rows).
    cache/reuse: DeepCache feature reuse (see the module docstring); reuse needs a filled cache.
    Returns the prediction, (b, c, f, h, w).
    """
    b, c, f, h, w = latents.shape
    x = latents.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)
    # As diffusers does: when the latent is not a multiple of the total upsampling, each upsampler
    # is told the size of the skip connection it must match.
    forward_upsample_size = any(dim % 2**unet.num_upsamplers for dim in (h, w))
    call = _Call(
        emb=unet.time_embedding(unet.get_time_embed(sample=x, timestep=timestep), None),
        context=context.repeat_interleave(f, dim=0),
        kwargs={"reference": reference},
        num_frames=f if use_motion else None,
    )

    x = unet.conv_in(x)
    if pose_features is not None:
        x = x + pose_features.permute(0, 2, 1, 3, 4).reshape(b * f, *pose_features.shape[1:2], h, w).to(x.dtype)
    skips = [x]
    down_blocks, up_blocks = list(unet.down_blocks), list(unet.up_blocks)
    if reuse:
        if cache is None or cache.features is None:
            raise ValueError("reuse=True needs a DeepCache filled by a full call")
        # only the outermost level: its skip connections, then the cached deep path's output
        x, block_skips = _down(down_blocks[0], x, call, downsample=False)
        skips += block_skips
        x = cache.features
    else:
        for block in down_blocks:
            x, block_skips = _down(block, x, call)
            skips += block_skips
        x = _mid(unet.mid_block, x, call)
        for i, block in enumerate(up_blocks[:-1]):
            remaining = skips[: len(skips) - len(block.resnets)]
            upsample_size = remaining[-1].shape[2:] if forward_upsample_size else None
            x = _up(block, x, skips, call, upsample_size)
        if cache is not None:
            cache.features = x
    x = _up(up_blocks[-1], x, skips, call, None)

    if unet.conv_norm_out is not None:
        x = unet.conv_act(unet.conv_norm_out(x))
    out = unet.conv_out(x)
    return out.reshape(b, f, c, h, w).permute(0, 2, 1, 3, 4)
