"""Configuration objects. Defaults live here and nowhere else.

`ModelConfig` describes an architecture (saved as JSON next to our checkpoints); `GenerationConfig`
holds the user's knobs for one generation (what a `job` message or the `animate` command sets).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from aa_engine.errors import BadRequest

# SD-1.5's UNet, as in stable-diffusion-v1-5/unet/config.json (the keys we pass to diffusers).
SD15_UNET = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}
SD15_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 512,
    "scaling_factor": 0.18215,
}
# CLIP ViT-L/14 vision tower with its 768-d projection (the `image_encoder` of the release).
CLIP_VIT_L14 = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "patch_size": 14,
    "image_size": 224,
    "projection_dim": 768,
}

# The tiny random architecture for tests and benchmarks: every mechanism of the real one
# (cross-attention down/mid/up blocks, a plain down and up block, 8x VAE), channels a multiple of 32
# because the motion modules' GroupNorm has 32 groups.
TINY_UNET = {
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [32, 64],
    "layers_per_block": 1,
    "cross_attention_dim": 32,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}
TINY_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [16, 32, 32, 32],
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 8,
    "sample_size": 64,
    "scaling_factor": 0.18215,
}
TINY_CLIP = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "patch_size": 8,
    "image_size": 32,
    "projection_dim": 32,
}


@dataclass
class MotionModuleConfig:
    """AnimateDiff-v2 temporal module settings (as in Moore-AnimateAnyone's inference_v2.yaml)."""

    num_attention_heads: int = 8
    max_frames: int = 32  # length of the sinusoidal position table `pos_encoder.pe`
    norm_num_groups: int = 32


CLIP_RESIZES = ("squash", "crop")


@dataclass
class ModelConfig:
    """One architecture: the SD-style UNet (used for both UNets), VAE, CLIP vision tower, pose guider."""

    unet: dict = field(default_factory=lambda: dict(SD15_UNET))
    vae: dict = field(default_factory=lambda: dict(SD15_VAE))
    image_encoder: dict = field(default_factory=lambda: dict(CLIP_VIT_L14))
    pose_guider_channels: tuple[int, ...] = (16, 32, 96, 256)
    motion_module: MotionModuleConfig = field(default_factory=MotionModuleConfig)
    name: str = "sd15"
    # (width, height) the model was trained at: the size used when a job gives none.
    native_size: tuple[int, int] | None = (512, 768)
    # How the reference becomes the CLIP encoder's square input (AnimateAnyoneModel.clip_pixels):
    # "squash" as the released weights were run, or "crop" (the shipped default model was trained so).
    clip_resize: str = "squash"

    @classmethod
    def sd15(cls) -> "ModelConfig":
        return cls()

    @classmethod
    def tiny(cls) -> "ModelConfig":
        return cls(
            unet=dict(TINY_UNET),
            vae=dict(TINY_VAE),
            image_encoder=dict(TINY_CLIP),
            pose_guider_channels=(16, 16, 32, 32),
            name="random-tiny",
            native_size=(64, 64),
        )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        data = dict(data)
        data["motion_module"] = MotionModuleConfig(**data.get("motion_module", {}))
        data["pose_guider_channels"] = tuple(data.get("pose_guider_channels", (16, 32, 96, 256)))
        if data.get("native_size") is not None:
            data["native_size"] = tuple(data["native_size"])
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: Path) -> "ModelConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))


@dataclass
class GenerationConfig:
    """The knobs of one generation. Defaults follow Moore-AnimateAnyone's released settings.

    width/height None = the model's native size (`ModelConfig.native_size`), see `sized_for`.
    """

    width: int | None = None
    height: int | None = None
    steps: int = 30
    guidance: float = 3.5
    seed: int = 42
    context_frames: int = 24
    context_overlap: int = 4
    context_loop: bool = False  # windows wrap round the clip's end (the release's closed loop; seamless cycles)
    fps: float = 24.0
    decode_batch: int = 4  # frames per VAE decode call: bounds the decoder's peak memory
    reference_attention: bool = True  # off = the "CLIP path only" ablation

    def sized_for(self, model: "ModelConfig") -> "GenerationConfig":
        """A copy with width/height filled from the model's native size where they are None."""
        native = model.native_size or (512, 768)
        width = native[0] if self.width is None else self.width
        height = native[1] if self.height is None else self.height
        return dataclasses.replace(self, width=width, height=height)

    def validate(self, max_context_frames: int | None = None) -> None:
        """Raise BadRequest with a specific message if a knob is out of range."""
        if self.width is None or self.height is None:
            raise BadRequest("width and height must be set (or filled with sized_for) before validation.")
        for name in ("width", "height"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0 or value % 8:
                lower = max(8, (int(value) // 8) * 8) if isinstance(value, (int, float)) else 8
                raise BadRequest(
                    f"{name} must be a positive multiple of 8 (got {value!r}).",
                    f"Use {lower} or {lower + 8}: the model works on 8x8-pixel latent cells.",
                )
        if self.steps < 1:
            raise BadRequest(f"steps must be at least 1 (got {self.steps}).", "30 is the default; 20 is the paper's.")
        if self.guidance < 1:
            raise BadRequest(f"guidance must be >= 1 (got {self.guidance}).", "3.5 is the default; 1 turns CFG off.")
        if self.context_frames < 1:
            raise BadRequest(f"context_frames must be at least 1 (got {self.context_frames}).", "24 is the default.")
        if max_context_frames is not None and self.context_frames > max_context_frames:
            raise BadRequest(
                f"context_frames={self.context_frames} exceeds what the motion modules were built for "
                f"({max_context_frames} frames).",
                f"Use at most {max_context_frames}; longer videos are handled by overlapping windows.",
            )
        if not 0 <= self.context_overlap < self.context_frames:
            raise BadRequest(
                f"context_overlap must be between 0 and context_frames-1 (got {self.context_overlap} "
                f"with context_frames={self.context_frames}).",
                "4 is the default.",
            )
        if self.decode_batch < 1:
            raise BadRequest(f"decode_batch must be at least 1 (got {self.decode_batch}).")

    @property
    def do_cfg(self) -> bool:
        return self.guidance > 1.0

    @classmethod
    def from_dict(cls, data: dict) -> "GenerationConfig":
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise BadRequest(f"Unknown generation setting(s): {', '.join(unknown)}.", f"Known: {', '.join(known)}.")
        return cls(**data)
