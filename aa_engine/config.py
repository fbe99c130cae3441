"""Configuration objects. Defaults live here and nowhere else.

`ModelConfig` describes an architecture (saved as JSON next to our checkpoints); `GenerationConfig`
holds the user's knobs for one generation (what a `job` message or the `animate` command sets).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from aa_contract import settings
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


class _GenerationMethods:
    """The methods of GenerationConfig (its fields come from the contract's settings declaration)."""

    def sized_for(self, model: "ModelConfig") -> "GenerationConfig":
        """A copy with width/height filled from the model's native size where they are None."""
        native = model.native_size or (512, 768)
        width = native[0] if self.width is None else self.width
        height = native[1] if self.height is None else self.height
        return dataclasses.replace(self, width=width, height=height)

    def validate(self, max_context_frames: int | None = None) -> None:
        """Raise InvalidSetting (code bad_request, naming the setting) if a knob is out of range:
        the contract's one validation, plus the model's longest window."""
        if self.width is None or self.height is None:
            raise BadRequest("width and height must be set (or filled with sized_for) before validation.")
        settings.validate(self.settings())
        if max_context_frames is not None:
            settings.check_window(self.settings(), max_context_frames)

    def settings(self) -> dict:
        """The contract's settings, as a job message or `accepted` carries them."""
        return {name: getattr(self, name) for name in settings.NAMES}

    @property
    def do_cfg(self) -> bool:
        return self.guidance > 1.0

    @classmethod
    def from_dict(cls, data: dict) -> "GenerationConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise BadRequest(f"Unknown generation setting(s): {', '.join(unknown)}.", f"Known: {', '.join(sorted(known))}.")
        return cls(**data)


# The knobs of one generation: one field per setting of the contract (aa_contract/settings.py,
# name, type and default from there; width/height None = the model's native size, see sized_for),
# plus the engine-only switches below. Defaults follow Moore-AnimateAnyone's released settings.
GenerationConfig = dataclasses.make_dataclass(
    "GenerationConfig",
    [(s.name, s.type | None if s.default is None else s.type, field(default=s.default)) for s in settings.SETTINGS]
    + [("reference_attention", bool, field(default=True)),  # off = the "CLIP path only" ablation
       ("motion_modules", bool, field(default=True))],  # off = the image-level (stage 1) model, frame by frame
    bases=(_GenerationMethods,),
    namespace={"__doc__": "The knobs of one generation: the contract's settings (aa_contract/settings.py) "
                          "plus reference_attention (off = the CLIP-only ablation) and motion_modules "
                          "(off = the no-temporal-layer ablation)."},
)
GenerationConfig.__module__ = __name__
