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
from aa_engine.errors import BadRequest, InvalidSetting, WeightsError

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

# What a weights config may say (ModelConfig.validate): the block types our UNets, reference
# attention and motion modules are built for, and bounds that keep an absurd config.json from
# allocating anything (checked before any layer is built; weights.py then bounds the parameter count).
UNET_DOWN_BLOCKS = ("CrossAttnDownBlock2D", "DownBlock2D")
UNET_UP_BLOCKS = ("CrossAttnUpBlock2D", "UpBlock2D")
UNET_MID_BLOCKS = ("UNetMidBlock2DCrossAttn",)
VAE_DOWN_BLOCKS = ("DownEncoderBlock2D",)
VAE_UP_BLOCKS = ("UpDecoderBlock2D",)
MAX_CHANNELS = 4096       # SD-1.5's widest is 1280
MAX_LEVELS = 6            # SD-1.5 has 4
MAX_LAYERS_PER_BLOCK = 8  # SD-1.5 has 2
MAX_CLIP_LAYERS = 64      # ViT-L has 24
MAX_CONTEXT_TABLE = 1024  # motion modules' position table (the release: 32)


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
    # "squash" as the released weights were run, or "crop" (the earlier 64x96 default model was trained so).
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
    def from_dict(cls, data: dict, where: str = "the model config") -> "ModelConfig":
        """Build from a config.json's content, checked (validate) before anything is built;
        raises WeightsError naming `where` (the file) and the field."""
        if not isinstance(data, dict):
            raise WeightsError(f"{where} must hold a JSON object (got {type(data).__name__}).", _CONFIG_HINT, field="config")
        data = dict(data)
        motion = data.get("motion_module", {})
        if not isinstance(motion, dict):
            raise WeightsError(f"{where}: 'motion_module' must be an object (got {motion!r:.80}).", _CONFIG_HINT, field="motion_module")
        unknown = sorted(set(motion) - {f.name for f in dataclasses.fields(MotionModuleConfig)})
        if unknown:
            raise WeightsError(f"{where}: 'motion_module' has unknown key(s) {', '.join(unknown)}.", _CONFIG_HINT, field="motion_module")
        data["motion_module"] = MotionModuleConfig(**motion)
        for name in ("pose_guider_channels", "native_size"):
            if isinstance(data.get(name), list):
                data[name] = tuple(data[name])
        known = {f.name for f in dataclasses.fields(cls)}
        config = cls(**{k: v for k, v in data.items() if k in known})
        config.validate(where)
        return config

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: Path) -> "ModelConfig":
        """Read and check a config.json; raises WeightsError naming the file and the field."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise WeightsError(f"Cannot read {path} ({exc}).", _CONFIG_HINT, field="config") from exc
        try:
            data = json.loads(text)
        except RecursionError:
            raise WeightsError(f"{path} is nested too deeply to be a model config.", _CONFIG_HINT, field="config") from None
        except ValueError as exc:
            raise WeightsError(f"{path} is not valid JSON ({exc}).", _CONFIG_HINT, field="config") from None
        return cls.from_dict(data, str(path))

    # -- checks ------------------------------------------------------------------------------------
    def validate(self, where: str | dict[str, str] = "the model config") -> None:
        """Check every field's type, sign and bounds, the block types and that the parts fit
        together, before anything is allocated. Raises WeightsError naming `where` and the field;
        `where` may map a field's first part ("unet", "vae", ...) to the file it came from, with
        "" for the rest."""
        check = _ConfigCheck(where)
        unet = check.section(self.unet, "unet")
        widths = check.int_list(unet, "unet.block_out_channels", MAX_CHANNELS, MAX_LEVELS)
        levels = len(widths)
        check.names(unet, "unet.down_block_types", UNET_DOWN_BLOCKS, levels)
        check.names(unet, "unet.up_block_types", UNET_UP_BLOCKS, levels)
        if "mid_block_type" in unet and unet["mid_block_type"] not in UNET_MID_BLOCKS:
            check.fail("unet.mid_block_type", f"is {unet['mid_block_type']!r:.80}", f"Use {UNET_MID_BLOCKS[0]}.")
        check.int_field(unet, "unet.layers_per_block", MAX_LAYERS_PER_BLOCK)
        latent = check.int_field(unet, "unet.in_channels", 64)
        if check.int_field(unet, "unet.out_channels", 64) != latent:
            check.fail("unet.out_channels", "differs from unet.in_channels", "A denoising UNet predicts a latent of its input's shape.")
        context = check.int_field(unet, "unet.cross_attention_dim", MAX_CHANNELS)
        heads = unet.get("attention_head_dim", 8)
        for value in heads if isinstance(heads, list) else [heads]:
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CHANNELS:
                check.fail("unet.attention_head_dim", f"is {heads!r:.80}", "A whole number from 1 (or one per block).")
        if isinstance(heads, list) and len(heads) != levels:
            check.fail("unet.attention_head_dim", f"has {len(heads)} entries for {levels} blocks", "One per block, or one number.")
        groups = check.int_field(unet, "unet.norm_num_groups", MAX_CHANNELS, default=32)
        if "sample_size" in unet:
            check.int_field(unet, "unet.sample_size", 4096)
        motion = self.motion_module
        motion_groups = check.int_field(vars(motion), "motion_module.norm_num_groups", MAX_CHANNELS)
        motion_heads = check.int_field(vars(motion), "motion_module.num_attention_heads", MAX_CHANNELS)
        check.int_field(vars(motion), "motion_module.max_frames", MAX_CONTEXT_TABLE)
        for width in widths:
            for what, divisor in (("unet.norm_num_groups", groups), ("motion_module.norm_num_groups", motion_groups),
                                  ("motion_module.num_attention_heads", motion_heads)):
                if width % divisor:
                    check.fail("unet.block_out_channels", f"has {width}, not a multiple of {what} ({divisor})",
                               "Every block width must split evenly into its norm groups and attention heads.")

        vae = check.section(self.vae, "vae")
        vae_widths = check.int_list(vae, "vae.block_out_channels", MAX_CHANNELS, MAX_LEVELS)
        check.names(vae, "vae.down_block_types", VAE_DOWN_BLOCKS, len(vae_widths))
        check.names(vae, "vae.up_block_types", VAE_UP_BLOCKS, len(vae_widths))
        check.int_field(vae, "vae.layers_per_block", MAX_LAYERS_PER_BLOCK)
        vae_groups = check.int_field(vae, "vae.norm_num_groups", MAX_CHANNELS, default=32)
        for width in vae_widths:
            if width % vae_groups:
                check.fail("vae.block_out_channels", f"has {width}, not a multiple of vae.norm_num_groups ({vae_groups})",
                           "Every block width must split evenly into its norm groups.")
        if check.int_field(vae, "vae.latent_channels", 64) != latent:
            check.fail("vae.latent_channels", f"differs from unet.in_channels ({latent})", "The UNet denoises the VAE's latents.")
        for name in ("vae.in_channels", "vae.out_channels"):
            if check.int_field(vae, name, 4) != 3:
                check.fail(name, "must be 3", "The VAE encodes and decodes RGB images.")
        scale = vae.get("scaling_factor", 0.18215)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale < 1000:
            check.fail("vae.scaling_factor", f"is {scale!r:.80}", "A positive number (SD's VAE: 0.18215).")

        clip = check.section(self.image_encoder, "image_encoder")
        hidden = check.int_field(clip, "image_encoder.hidden_size", MAX_CHANNELS)
        check.int_field(clip, "image_encoder.intermediate_size", 4 * MAX_CHANNELS)
        check.int_field(clip, "image_encoder.num_hidden_layers", MAX_CLIP_LAYERS)
        clip_heads = check.int_field(clip, "image_encoder.num_attention_heads", MAX_CHANNELS)
        if hidden % clip_heads:
            check.fail("image_encoder.hidden_size", f"({hidden}) is not a multiple of num_attention_heads ({clip_heads})", "")
        image_size = check.int_field(clip, "image_encoder.image_size", 1024)
        patch = check.int_field(clip, "image_encoder.patch_size", 1024)
        if image_size % patch:
            check.fail("image_encoder.image_size", f"({image_size}) is not a multiple of patch_size ({patch})", "")
        if check.int_field(clip, "image_encoder.projection_dim", MAX_CHANNELS) != context:
            check.fail("image_encoder.projection_dim", f"differs from unet.cross_attention_dim ({context})",
                       "The CLIP embedding is the UNets' cross-attention context.")

        guider = self.pose_guider_channels
        if not isinstance(guider, (list, tuple)) or not guider or len(guider) > MAX_LEVELS or not all(
                isinstance(c, int) and not isinstance(c, bool) and 1 <= c <= MAX_CHANNELS for c in guider):
            check.fail("pose_guider_channels", f"is {guider!r:.80}", f"A list of whole numbers from 1 to {MAX_CHANNELS}.")
        if len(guider) != len(vae_widths):
            check.fail("pose_guider_channels", f"has {len(guider)} widths but the VAE {len(vae_widths)} levels",
                       "The pose guider downsamples as the VAE does, so its features match the latent's size.")
        if not isinstance(self.name, str):
            check.fail("name", f"is {self.name!r:.80}", "A string.")
        native = self.native_size
        if native is not None and (not isinstance(native, (list, tuple)) or len(native) != 2 or not all(
                isinstance(v, int) and not isinstance(v, bool) and 8 <= v <= settings.MAX_SIDE and v % 8 == 0 for v in native)):
            check.fail("native_size", f"is {native!r:.80}", "[width, height], multiples of 8, or null.")
        if self.clip_resize not in CLIP_RESIZES:
            check.fail("clip_resize", f"is {self.clip_resize!r:.80}",
                       f"Use one of: {', '.join(CLIP_RESIZES)} (how the reference was fed to CLIP in training).")

    def size_problem(self, width: int, height: int) -> str | None:
        """Why this architecture cannot run at width x height, or None. Every group norm needs more
        than one value per group (torch refuses otherwise), and the deepest UNet level is 1/2**k of
        the latent: a tiny model's narrow blocks need a few latent cells there."""
        scale = 2 ** (len(self.vae["block_out_channels"]) - 1)
        levels = [(w, h) for w, h in _halvings(-(-width // scale), -(-height // scale), len(self.unet["block_out_channels"]))]
        widths = self.unet["block_out_channels"]
        groups = max(self.unet.get("norm_num_groups", 32), self.motion_module.norm_num_groups)
        for i, (w, h) in enumerate(levels):
            narrowest = min(widths[max(0, i - 1)], widths[i])
            if narrowest // groups * w * h < 2:
                return f"its UNet's level {i + 1} would be {w}x{h} latent cells, too few for its {narrowest}-channel norm layers"
        vae_widths, vae_groups = self.vae["block_out_channels"], self.vae.get("norm_num_groups", 32)
        for i, (w, h) in enumerate(_halvings(width, height, len(vae_widths))):
            narrowest = min(vae_widths[max(0, i - 1)], vae_widths[i])
            if narrowest // vae_groups * w * h < 2:
                return f"its VAE's level {i + 1} would be {w}x{h} pixels, too few for its norm layers"
        return None

    def smallest_size(self) -> int:
        """The smallest square side (a multiple of 8) this architecture runs at."""
        return next(s for s in range(8, settings.MAX_SIDE + 8, 8) if self.size_problem(s, s) is None)

    def check_size(self, width: int, height: int) -> None:
        """Raise InvalidSetting (field width) if the architecture cannot run at width x height."""
        problem = self.size_problem(width, height)
        if problem is not None:
            side = self.smallest_size()
            raise InvalidSetting(f"{width}x{height} is too small for the model {self.name!r}: {problem}.",
                                 f"Use at least {side}x{side} with these weights.", field="width")


_CONFIG_HINT = ("Fix the weights folder's config.json (compare with a known-good one, e.g. aa_engine/default_model/config.json), "
                "or re-download the weights.")


def _halvings(width: int, height: int, levels: int) -> list[tuple[int, int]]:
    """The sizes after 0..levels-1 stride-2 convolutions (padding 1: ceil halving)."""
    sizes = [(width, height)]
    for _ in range(levels - 1):
        width, height = -(-width // 2), -(-height // 2)
        sizes.append((width, height))
    return sizes


class _ConfigCheck:
    """Field checks for ModelConfig.validate, raising WeightsError(field=...) naming the file."""

    def __init__(self, where: str | dict[str, str]):
        self.where = where

    def fail(self, name: str, problem: str, hint: str) -> None:
        where = self.where if isinstance(self.where, str) else self.where.get(name.split(".")[0], self.where.get("", "the model config"))
        raise WeightsError(f"{where}: '{name}' {problem}.", (hint + " " + _CONFIG_HINT).strip(), field=name)

    def section(self, value, name: str) -> dict:
        if not isinstance(value, dict):
            self.fail(name, f"must be an object (got {value!r:.80})", "")
        return value

    def _get(self, section: dict, name: str, default=None):
        key = name.split(".")[-1]
        if key not in section:
            if default is not None:
                return default
            self.fail(name, "is missing", "")
        return section[key]

    def int_field(self, section: dict, name: str, maximum: int, default=None) -> int:
        value = self._get(section, name, default)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
            self.fail(name, f"must be a whole number from 1 to {maximum} (got {value!r:.80})", "")
        return value

    def int_list(self, section: dict, name: str, maximum: int, max_length: int) -> list[int]:
        value = self._get(section, name)
        if (not isinstance(value, (list, tuple)) or not 1 <= len(value) <= max_length
                or not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= maximum for v in value)):
            self.fail(name, f"must be a list of 1 to {max_length} whole numbers from 1 to {maximum} (got {value!r:.80})", "")
        return list(value)

    def names(self, section: dict, name: str, allowed: tuple[str, ...], length: int) -> None:
        value = self._get(section, name)
        if not isinstance(value, (list, tuple)) or len(value) != length:
            self.fail(name, f"must list one block type per width ({length}; got {value!r:.80})", "")
        for item in value:
            if item not in allowed:
                self.fail(name, f"has the unknown block type {item!r:.80}", f"Known: {', '.join(allowed)}.")


class _GenerationMethods:
    """The methods of GenerationConfig (its fields come from the contract's settings declaration)."""

    def sized_for(self, model: "ModelConfig") -> "GenerationConfig":
        """A copy ready to run: width/height filled from the model's native size where they are
        None, and the preset's settings in place (settings.PRESETS; "custom" changes nothing)."""
        native = model.native_size or (512, 768)
        width = native[0] if self.width is None else self.width
        height = native[1] if self.height is None else self.height
        preset = settings.PRESETS.get(getattr(self, "preset", "custom"), {})
        return dataclasses.replace(self, width=width, height=height, **preset)

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
