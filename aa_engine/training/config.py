"""Training settings (one dataclass; the `train` command's flags map onto it one to one)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from aa_engine.config import TINY_CLIP, ModelConfig

# The shipped default model's architecture: the tiny test model's UNet (32/64 channels, one
# cross-attention level), a 4-level VAE (8x down) a little wider than the tiny one.
# Group norms with few channels per group wash out absolute colour: a flat background normalises to
# ~0 whatever its colour, so conv_out sees the same input for every background. SD has 10-16
# channels per group; here the VAE uses one group (LayerNorm-like over C, H, W) and the UNet 8
# groups (4-8 channels per group) instead of the tiny test model's 32 (one channel per group).
SMALL_UNET = {
    "sample_size": 12,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [32, 64],
    "layers_per_block": 1,
    "cross_attention_dim": 32,
    "attention_head_dim": 8,
    "norm_num_groups": 8,
}
SMALL_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [16, 32, 64, 64],
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 1,
    "sample_size": 96,
    "scaling_factor": 0.18215,  # replaced by 1/std of the trained VAE's latents after the vae stage
}


# The v2 default model (docs/default_model.md, "v2"): 128x192, 8x down as SD, but 16 latent channels
# instead of 4 so the 16x24 latent keeps enough detail (the 64x96 model's 4-channel 8x12 latent
# capped reconstruction at SSIM 0.675). The VAE was first trained at the small model's widths
# (16, 32, 64, 64) with one norm group, then widened twice over by training.widen (old channels one
# group, new ones the other) and trained on: the narrow one stalled at SSIM ~0.83, short of fine
# detail (patterns, eyes, edges). 3.9 M parameters, ~0.15 s per decoded frame on one thread.
V2_LATENT_CHANNELS = 16
V2_VAE = dict(SMALL_VAE, latent_channels=V2_LATENT_CHANNELS, sample_size=192, block_out_channels=[32, 64, 128, 128], norm_num_groups=2)
V2_UNET = dict(SMALL_UNET, sample_size=24, in_channels=V2_LATENT_CHANNELS, out_channels=V2_LATENT_CHANNELS)
# The same UNets twice as wide (64, 128 channels; 8 heads of 8 at level 0): 4x the parameters, but on
# a CPU a stage-1 step costs only ~1.45x the narrow one's (the narrow UNets are bound by per-layer
# overhead, not arithmetic), and at equal compute the wider diffusion model learns more (DiT's
# scaling result). Measured in docs/default_model.md, section 4, fourth session.
V2_WIDE_UNET = dict(V2_UNET, block_out_channels=[64, 128])


def small_model_config() -> ModelConfig:
    return ModelConfig(
        unet=dict(SMALL_UNET), vae=dict(SMALL_VAE), image_encoder=dict(TINY_CLIP),
        pose_guider_channels=(16, 16, 32, 32), name="aa-default-small", native_size=(64, 96),
    )


def v2_model_config() -> ModelConfig:
    return ModelConfig(
        unet=dict(V2_UNET), vae=dict(V2_VAE), image_encoder=dict(TINY_CLIP),
        pose_guider_channels=(16, 16, 32, 32), name="aa-default-v2", native_size=(128, 192),
    )


def v2_wide_model_config() -> ModelConfig:
    return dataclasses.replace(v2_model_config(), unet=dict(V2_WIDE_UNET), name="aa-default-v2-wide")


ARCHITECTURES = {"small": small_model_config, "v2": v2_model_config, "v2-wide": v2_wide_model_config, "tiny": ModelConfig.tiny}


@dataclass
class TrainConfig:
    stage: str = "image"  # vae | image | motion | decoder
    out: str = "runs/default"
    init: str | None = None  # checkpoint folder to start from (required for image and motion)
    unets_from: str | None = None  # image stage from a VAE-only --init: every part but the VAE from this model folder
    arch: str = "small"  # architecture when starting from scratch (vae stage without --init, or --init of a VAE-only folder)
    data: str = "flat"  # character style of the synthetic data: flat (the 64x96 model's) or rich (v2)
    steps: int = 1000
    batch_size: int = 16
    frames: int = 1  # frames per sample: 1 for image-level stages, a clip length for motion
    width: int = 64
    height: int = 96
    lr: float = 5e-4
    warmup: int = 50
    lr_schedule: str = "constant"  # constant after warmup, or cosine (decays to 10% at --steps)
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    seed: int = 0
    first_clip: int = 0  # index of the first training clip: step s trains on clips first_clip + s*batch ...
    noise_offset: float = 0.05
    snr_gamma: float = 0.0  # 0 = plain v-prediction MSE; 5 = the re-implementation's min-SNR
    condition_dropout: float = 0.1
    kl_weight: float = 1e-4  # vae stage: L2 penalty on the latent means
    latent_noise: float = 0.05  # vae stage: noise added to the latents before decoding
    crop: int = 0  # vae/decoder stages: train on random size x size crops (0 = whole frames)
    ssim_weight: float = 0.0  # vae/decoder stages: weight of a (1 - SSIM) term beside L1 + MSE
    scale_equivariance: float = 0.0  # vae stage: weight of decode(pool2(z)) ~ pool2(image) (smoother latents)
    sample_latents: str | None = None  # decoder stage: a training.sample_latents folder (the model's own final latents)
    sample_weight: float = 1.0  # decoder stage with --sample-latents: weight of their decoding loss
    encode_bf16: bool = False  # image/motion stages: the frozen VAE encodes under bfloat16 autocast (faster)
    ema_decay: float = 0.0  # 0 = off; e.g. 0.999: checkpoints and model/ also hold an average of the recent weights
    mixed_precision: str = "no"  # no | bf16: every forward under bfloat16 autocast, float32 weights
    checkpoint_every: int = 200
    sample_every: int = 500
    sample_steps: int = 20
    log_every: int = 10
    cpu: bool = False

    def validate(self) -> None:
        from aa_engine.errors import BadRequest

        if self.stage not in ("vae", "image", "motion", "decoder"):
            raise BadRequest(f"Unknown stage {self.stage!r}.", "Use --stage vae, then image, then motion (optionally decoder).")
        if self.stage != "vae" and not self.init:
            raise BadRequest(f"The {self.stage} stage needs --init: the checkpoint of the previous stage.",
                             "Train the VAE first (--stage vae), then pass its out/model folder as --init.")
        if self.width % 8 or self.height % 8 or self.width <= 0 or self.height <= 0:
            raise BadRequest(f"--width/--height must be positive multiples of 8 (got {self.width}x{self.height}).")
        if self.stage == "motion" and self.frames < 2:
            raise BadRequest("The motion stage trains on clips: --frames must be at least 2.", "8 or 16 is typical.")
        if self.stage == "image" and self.frames != 1:
            raise BadRequest("The image stage trains on single frames: use --frames 1.")
        from aa_engine.data.dataset import STYLES
        from aa_engine.training.vae_product import is_vae_product

        if self.data not in STYLES:
            raise BadRequest(f"Unknown --data {self.data!r}.", f"Use one of: {', '.join(STYLES)}.")
        if self.unets_from and not (self.stage == "image" and self.init and is_vae_product(self.init)):
            raise BadRequest("--unets-from warm-starts stage 1 on a new VAE: it needs --stage image and a VAE-only --init "
                             "(a vae run's vae/ folder).", "Without a new VAE, pass the model folder itself as --init.")
        if self.scale_equivariance and self.stage != "vae":
            raise BadRequest(f"--scale-equivariance shapes the latent space, which only the vae stage trains (got --stage {self.stage}).",
                             "Leave it at 0 here; the decoder stage keeps the encoder's latents fixed.")
        if self.sample_latents and self.stage != "decoder":
            raise BadRequest(f"--sample-latents fits the decoder to the model's own latents: it needs --stage decoder (got {self.stage}).",
                             "Make them with python -m aa_engine.training.sample_latents, then run --stage decoder with them.")
        if self.encode_bf16 and self.stage not in ("image", "motion"):
            raise BadRequest(f"--encode-bf16 is for the stages that keep the VAE frozen (image, motion), not --stage {self.stage}.",
                             "The vae and decoder stages train the VAE in full precision: leave the flag out.")
        if self.mixed_precision not in ("no", "bf16"):
            raise BadRequest(f"Unknown --mixed-precision {self.mixed_precision!r}.",
                             "Use no (float32) or bf16 (bfloat16 autocast, float32 weights; on CPUs with avx512_bf16 or AMX, and on GPUs).")
        if not 0.0 <= self.ema_decay < 1.0:
            raise BadRequest(f"--ema-decay must be in [0, 1) (got {self.ema_decay}).", "0 turns the average off; 0.999 averages over ~1000 steps.")
        if self.lr_schedule not in ("constant", "cosine"):
            raise BadRequest(f"Unknown --lr-schedule {self.lr_schedule!r}.", "Use constant or cosine.")
        if self.arch not in ARCHITECTURES:
            raise BadRequest(f"Unknown --arch {self.arch!r}.", f"Use one of: {', '.join(ARCHITECTURES)}.")
        if self.first_clip < 0:
            raise BadRequest(f"--first-clip must be 0 or more (got {self.first_clip}).",
                             "A run that continues another passes that run's steps x batch size, so it sees new clips.")
        for name in ("steps", "batch_size", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise BadRequest(f"--{name.replace('_', '-')} must be at least 1.")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))
