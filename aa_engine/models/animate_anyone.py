"""The Animate Anyone model bundle: VAE, CLIP image encoder, ReferenceNet, denoising UNet, Pose Guider.

`build_model(config)` makes one with random weights (see aa_engine.weights for loading real ones).
The methods below are the model's steps in data-flow order; the sampling loop lives in
aa_engine.pipeline. The model holds weights only: what one generation computes (the reference
tokens, the pose features) is returned to the caller and passed back in explicitly, so a model can
be shared, switched per call (reference attention, motion modules) and deep-copied.
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from PIL import Image
from torch import nn
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from aa_engine.config import ModelConfig
from aa_engine.models.pose_guider import PoseGuider
from aa_engine.models.reference_attention import ReferenceTokens, install_reference_attention, record_reference
from aa_engine.models.video_unet import DeepCache, inflate_unet, motion_modules, strip_reference_head, video_forward

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# The five parts and their order in our checkpoints (state-dict prefixes).
PARTS = ("vae", "image_encoder", "reference_unet", "denoising_unet", "pose_guider")


class AnimateAnyoneModel(nn.Module):
    def __init__(
        self,
        config: ModelConfig,
        vae: AutoencoderKL,
        image_encoder: CLIPVisionModelWithProjection,
        reference_unet: UNet2DConditionModel,
        denoising_unet: UNet2DConditionModel,
        pose_guider: PoseGuider,
    ):
        super().__init__()
        self.config = config
        self.vae = vae
        self.image_encoder = image_encoder
        self.reference_unet = reference_unet
        self.denoising_unet = denoising_unet
        self.pose_guider = pose_guider
        self.num_reference_blocks = install_reference_attention(reference_unet, denoising_unet)

    @property
    def scaling_factor(self) -> float:
        return float(self.vae.config.scaling_factor)

    # 1. Reference image -> VAE latent and CLIP context -----------------------------------------
    def clip_pixels(self, image: Image.Image) -> torch.Tensor:
        """PIL image -> (1, 3, s, s) CLIP input, normalised with CLIP's mean/std.

        How the image becomes s x s follows the model's `clip_resize`: "squash" (the whole image
        resized to s x s, bicubic: what Moore-AnimateAnyone's pose2vid pipeline feeds its
        CLIPImageProcessor, so the head and feet of a tall reference stay in view) or "crop"
        (shortest side to s, bicubic, centre crop: CLIPImageProcessor's own defaults)."""
        size = int(self.image_encoder.config.image_size)
        image = image.convert("RGB")
        if self.config.clip_resize == "squash":
            square = image.resize((size, size), Image.BICUBIC)
        else:
            w, h = image.size
            scale = size / min(w, h)
            resized = image.resize((max(size, int(w * scale)), max(size, int(h * scale))), Image.BICUBIC)
            left = (resized.width - size) // 2
            top = (resized.height - size) // 2
            square = resized.crop((left, top, left + size, top + size))
        pixels = np.asarray(square, dtype=np.float32) / 255.0
        x = (pixels - np.array(CLIP_MEAN, dtype=np.float32)) / np.array(CLIP_STD, dtype=np.float32)
        return torch.from_numpy(x).permute(2, 0, 1).unsqueeze(0)

    def encode_context(self, clip_pixels: torch.Tensor) -> torch.Tensor:
        """(n, 3, s, s) -> (n, 1, d): the projected CLIP image embedding, the UNets' cross-attention context."""
        return self.image_encoder(pixel_values=clip_pixels).image_embeds.unsqueeze(1)

    def encode_latents(self, images: torch.Tensor) -> torch.Tensor:
        """(n, 3, H, W) in [-1, 1] -> (n, 4, H/8, W/8) scaled latent means."""
        return self.vae.encode(images).latent_dist.mean * self.scaling_factor

    # 2. ReferenceNet: record the reference tokens of every transformer block ---------------------
    def reference_tokens(self, reference_latents: torch.Tensor, context: torch.Tensor) -> ReferenceTokens:
        """reference_latents: (n, 4, h, w); context: (n, 1, d). Runs ReferenceNet once at t=0 and
        returns the tokens its writers recorded (one reference per row)."""
        t = torch.zeros((), dtype=torch.long, device=reference_latents.device)
        return record_reference(self.reference_unet, reference_latents, t, context)

    # 3. Pose Guider ------------------------------------------------------------------------------
    def pose_features(self, poses: torch.Tensor) -> torch.Tensor:
        """poses: (f, 3, H, W) in [0, 1] -> (1, c0, f, H/8, W/8)."""
        return self.pose_guider(poses).permute(1, 0, 2, 3).unsqueeze(0)

    # 4. One denoising prediction for a window of frames ----------------------------------------
    def predict(
        self,
        latents: torch.Tensor,
        timestep: torch.Tensor,
        context: torch.Tensor,
        pose_features: torch.Tensor,
        uncond_context: torch.Tensor | None = None,
        use_motion: bool = True,
        *,
        reference: ReferenceTokens | None = None,
        cache: DeepCache | None = None,
        reuse: bool = False,
        forward=video_forward,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Predict for latents (b, 4, f, h, w) (b windows of the same video); with uncond_context,
        also the unconditional prediction.

        context (1, 1, d); pose_features (b, c0, f, h, w); reference: from `reference_tokens`
        (None: no reference attention); use_motion=False skips the motion modules.
        Returns (cond, uncond or None), each (b, 4, f, h, w). The two halves run as one batch;
        only the conditional half attends to the reference tokens.
        cache/reuse: DeepCache feature reuse (video_unet.video_forward); forward: video_forward or
        a compiled version of it (torch.compile).
        """
        b, f = latents.shape[0], latents.shape[2]
        context = context.expand(b, -1, -1)
        if uncond_context is None:
            reference = None if reference is None else reference.for_batch(0)
            return forward(self.denoising_unet, latents, timestep, context, pose_features, use_motion, reference, cache, reuse), None
        out = forward(
            self.denoising_unet,
            torch.cat([latents, latents]),
            timestep,
            torch.cat([uncond_context.expand(b, -1, -1), context]),
            torch.cat([pose_features, pose_features]),
            use_motion,
            None if reference is None else reference.for_batch(b * f),
            cache,
            reuse,
        )
        uncond, cond = out.chunk(2)
        return cond, uncond

    # 5. Latents -> images ------------------------------------------------------------------------
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(n, 4, h, w) scaled latents -> (n, 3, H, W) images in [0, 1]."""
        images = self.vae.decode(latents / self.scaling_factor).sample
        return (images / 2 + 0.5).clamp(0, 1)

    def motion_modules(self) -> list[nn.Module]:
        return motion_modules(self.denoising_unet)


def build_unets(config: ModelConfig) -> tuple[UNet2DConditionModel, UNet2DConditionModel, PoseGuider]:
    """ReferenceNet (no output head), the inflated denoising UNet and the pose guider of `config`."""
    reference_unet = UNet2DConditionModel.from_config(config.unet)
    strip_reference_head(reference_unet)
    denoising_unet = UNet2DConditionModel.from_config(config.unet)
    inflate_unet(denoising_unet, config.motion_module)
    pose_guider = PoseGuider(out_channels=denoising_unet.config.block_out_channels[0], channels=tuple(config.pose_guider_channels))
    return reference_unet, denoising_unet, pose_guider


def build_model(config: ModelConfig, seed: int | None = None, randomize_zero_init: bool = False) -> AnimateAnyoneModel:
    """A model of `config`'s architecture with random weights.

    seed makes the weights reproducible. randomize_zero_init also randomises the layers that are
    zero-initialised for training (motion modules' proj_out, the pose guider's conv_out), so that a
    random model's output depends on every input: what the `random-tiny` test model wants.
    """
    if seed is not None:
        torch.manual_seed(seed)
    vae = AutoencoderKL.from_config(config.vae)
    image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**config.image_encoder))
    reference_unet, denoising_unet, pose_guider = build_unets(config)
    model = AnimateAnyoneModel(config, vae, image_encoder, reference_unet, denoising_unet, pose_guider)
    if randomize_zero_init:
        for layer in [m.temporal_transformer.proj_out for m in model.motion_modules()] + [pose_guider.conv_out]:
            layer.reset_parameters()  # torch's default init, from the seeded global generator
    return model.eval()
