"""The training stages, each an nn.Module whose forward(batch, generator) returns the loss.

  vae     the small VAE, trained first because no SD VAE can be downloaded here (L1 + MSE, see VAEStage)
  image   stage 1 of the paper: denoising UNet + ReferenceNet + Pose Guider on single frames;
          VAE and CLIP image encoder frozen, motion modules unused
  motion  stage 2: motion modules only, on clips; everything else frozen
  decoder optional: the VAE decoder only (encoder frozen, so the latent space the UNets were trained
          on does not move); lets the decoder keep improving after, or alongside, stages 1 and 2

Wrapping the model in a stage module lets `accelerate` prepare one module whose forward does all
the work (distributed gradient sync needs the forward to go through the wrapper).
"""

from __future__ import annotations

import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from aa_engine.data.dataset import Batch
from aa_engine.models.animate_anyone import AnimateAnyoneModel
from aa_engine.models.video_unet import video_forward
from aa_engine.training.config import TrainConfig
from aa_engine.training.objectives import add_noise, alphas_cumprod, loss_weights, sample_noise, v_target

STAGES = ("vae", "image", "motion", "decoder")


def trainable_parameters(model: AnimateAnyoneModel, stage: str) -> list[nn.Parameter]:
    """The parameters a stage trains; everything else gets requires_grad=False."""
    motion = {id(p) for m in model.motion_modules() for p in m.parameters()}
    if stage == "vae":
        chosen = list(model.vae.parameters())
    elif stage == "decoder":
        chosen = list(model.vae.decoder.parameters()) + list(model.vae.post_quant_conv.parameters())
    elif stage == "image":
        chosen = list(model.reference_unet.parameters()) + list(model.pose_guider.parameters())
        chosen += [p for p in model.denoising_unet.parameters() if id(p) not in motion]
    elif stage == "motion":
        chosen = [p for m in model.motion_modules() for p in m.parameters()]
    else:
        raise ValueError(f"unknown stage {stage!r}")
    ids = {id(p) for p in chosen}
    for p in model.parameters():
        p.requires_grad_(id(p) in ids)
    return chosen


class VAEStage(nn.Module):
    def __init__(self, model: AnimateAnyoneModel, config: TrainConfig):
        super().__init__()
        self.model = model
        self.config = config
        self.pair_latents = self.pair_images = None
        if config.sample_latents:
            from aa_engine.training.sample_latents import load_sample_pairs

            self.pair_latents, self.pair_images = load_sample_pairs(config.sample_latents, config.width, config.height, config.data)

    def forward(self, batch: Batch, generator: torch.Generator) -> torch.Tensor:
        images = torch.cat([batch.references, batch.targets.flatten(0, 1)])
        images = random_crops(images, self.config.crop, generator)
        images = images.to(next(self.model.vae.parameters()).device)
        # A deterministic autoencoder on the posterior mean (the engine only ever uses the mean):
        # sampling with the initial unit std drowns the latents in noise and trains far too slowly
        # for a CPU budget. A little fixed-size noise keeps the decoder tolerant of the imperfect
        # latents diffusion produces; an L2 penalty on the mean keeps the latent scale bounded.
        with torch.set_grad_enabled(self.config.stage == "vae" and torch.is_grad_enabled()):
            mean = self.model.vae.encode(images).latent_dist.mean
        eps = torch.randn(mean.shape, generator=generator).to(images)
        recon = self.model.vae.decode(mean + self.config.latent_noise * eps).sample
        loss = F.l1_loss(recon, images) + F.mse_loss(recon, images) + self.config.kl_weight * mean.pow(2).mean()
        if self.config.ssim_weight > 0:
            loss = loss + self.config.ssim_weight * (1 - ssim_torch(recon.clamp(-1, 1), images))
        if self.config.scale_equivariance > 0:
            loss = loss + self.config.scale_equivariance * scale_equivariance_loss(self.model.vae, mean, images)
        if self.pair_latents is not None:
            loss = loss + self.config.sample_weight * self.sample_pairs_loss(generator, images.device)
        return loss

    def sample_pairs_loss(self, generator: torch.Generator, device: torch.device) -> torch.Tensor:
        """--sample-latents: the model's own final latents of training clips, decoded, against the true
        frames (the same crops of both, on the latent grid)."""
        picked = torch.randint(0, len(self.pair_latents), (self.config.batch_size,), generator=generator)
        latents, truth = self.pair_latents[picked], self.pair_images[picked].float().div(127.5).sub(1)
        both = torch.cat([truth, F.interpolate(latents, scale_factor=8, mode="nearest")], dim=1)
        both = random_crops(both, self.config.crop, generator)
        truth, latents = both[:, :3].to(device), both[:, 3:, ::8, ::8].to(device)
        recon = self.model.vae.decode(latents / self.model.scaling_factor).sample
        loss = F.l1_loss(recon, truth) + F.mse_loss(recon, truth)
        if self.config.ssim_weight > 0:
            loss = loss + self.config.ssim_weight * (1 - ssim_torch(recon.clamp(-1, 1), truth))
        return loss


def scale_equivariance_loss(vae, mean: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """L1 + MSE between the decoded 2x average-pooled latent and the 2x average-pooled image.

    A 16-channel latent trained on reconstruction alone carries much more detail at the scale of one
    latent cell than the image does at the scale of 8 pixels, and a small denoising UNet cannot tell
    that detail from noise (docs/default_model.md, v2). Asking the decoder to read a coarser latent
    as a coarser image keeps the latent's spectrum like the image's (the "scale equivariance" of
    Skorokhodov et al. 2025, "Improving the diffusability of autoencoders"). Latents with an odd
    side are cut to an even one.
    """
    h, w = mean.shape[-2] // 2 * 2, mean.shape[-1] // 2 * 2
    coarse = vae.decode(F.avg_pool2d(mean[..., :h, :w], 2)).sample
    target = F.avg_pool2d(images[..., : h * 8, : w * 8], 2)
    return F.l1_loss(coarse, target) + F.mse_loss(coarse, target)


def random_crops(images: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """(n, c, H, W) -> (n, c, size, size): one random crop per image, corners on the 8-pixel latent grid.

    size 0 (or one at least the image's size) returns the images whole. The VAE is convolutional,
    so crops train it on the same local content at a fraction of the cost per step; finish on whole
    frames (its one-group norms see whole-frame statistics at inference).
    """
    n, _, h, w = images.shape
    if size <= 0 or (size >= h and size >= w):
        return images
    size_h, size_w = min(size, h), min(size, w)
    ys = torch.randint(0, (h - size_h) // 8 + 1, (n,), generator=generator) * 8
    xs = torch.randint(0, (w - size_w) // 8 + 1, (n,), generator=generator) * 8
    return torch.stack([images[i, :, y : y + size_h, x : x + size_w] for i, (y, x) in enumerate(zip(ys.tolist(), xs.tolist()))])


def ssim_torch(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Differentiable mean SSIM of images (n, c, H, W) in [-1, 1]: the evaluation's SSIM (Gaussian
    window 11, sigma 1.5, per channel, valid positions), on the [0, 255] scale it uses."""
    x = (x + 1) * 127.5
    y = (y + 1) * 127.5
    c = x.shape[1]
    g = torch.exp(-((torch.arange(11, dtype=x.dtype, device=x.device) - 5) ** 2) / (2 * 1.5**2))
    g = g / g.sum()
    kx = g.reshape(1, 1, 1, -1).repeat(c, 1, 1, 1)
    ky = g.reshape(1, 1, -1, 1).repeat(c, 1, 1, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, kx, groups=c), ky, groups=c)

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    value = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return value.mean()


class DiffusionStage(nn.Module):
    """Stage 1 (frames=1, no motion modules) and stage 2 (clips, motion modules) share this objective."""

    def __init__(self, model: AnimateAnyoneModel, config: TrainConfig, use_motion: bool):
        super().__init__()
        self.model = model
        self.config = config
        self.use_motion = use_motion
        self.register_buffer("ac", alphas_cumprod(), persistent=False)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """The frozen VAE's scaled latents of (n, 3, H, W) images in [-1, 1], in float32 (bfloat16 autocast
        inside with --encode-bf16)."""
        device = self.ac.device
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.config.encode_bf16):
            return self.model.encode_latents(images.to(device)).float()

    def conditions(self, batch: Batch, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Frozen encoders: reference latents (b, c, h, w) and CLIP contexts (b, 1, d)."""
        model = self.model
        ref_latents = self.encode(batch.references)
        with torch.no_grad():
            pixels = torch.cat([model.clip_pixels(Image.fromarray(image)) for image in batch.reference_images]).to(device)
            context = model.encode_context(pixels)
        return ref_latents, context

    def forward(self, batch: Batch, generator: torch.Generator) -> torch.Tensor:
        model, cfg = self.model, self.config
        device = self.ac.device
        b, f = batch.targets.shape[:2]
        ref_latents, context = self.conditions(batch, device)
        x0 = self.encode(batch.targets.flatten(0, 1))
        x0 = x0.reshape(b, f, *x0.shape[1:]).permute(0, 2, 1, 3, 4)  # (b, 4, f, h, w)

        noise = sample_noise(tuple(x0.shape), generator, cfg.noise_offset).to(device)
        timesteps = torch.randint(0, len(self.ac), (b,), generator=generator).to(device)
        # Condition dropout (for classifier-free guidance): dropped videos lose both the CLIP context
        # and the reference tokens. They go first, as the reference readers expect.
        dropped = torch.rand(b, generator=generator) < cfg.condition_dropout
        order = torch.cat([torch.nonzero(dropped).flatten(), torch.nonzero(~dropped).flatten()]).to(device)
        n_drop = int(dropped.sum())
        x0, noise, timesteps = x0[order], noise[order], timesteps[order]
        context = context[order]
        context[:n_drop] = 0
        keep = order[n_drop:]

        reference = None
        if len(keep):
            with torch.set_grad_enabled(not self.use_motion and torch.is_grad_enabled()):
                reference = model.reference_tokens(ref_latents[keep], context[n_drop:]).for_batch(n_drop * f)
        poses = batch.poses[order.cpu()].flatten(0, 1).to(device)
        pose_features = model.pose_guider(poses)
        if self.use_motion:
            pose_features = pose_features.detach()
        pose_features = pose_features.reshape(b, f, *pose_features.shape[1:]).permute(0, 2, 1, 3, 4)

        noisy = add_noise(x0, noise, timesteps, self.ac)
        pred = video_forward(model.denoising_unet, noisy, timesteps.repeat_interleave(f), context, pose_features, self.use_motion,
                             reference)
        target = v_target(x0, noise, timesteps, self.ac)
        per_sample = (pred.float() - target.float()).pow(2).flatten(1).mean(1)
        weights = loss_weights(timesteps.cpu(), self.ac.cpu(), cfg.snr_gamma).to(per_sample)
        return (weights * per_sample).mean()


def make_stage(model: AnimateAnyoneModel, config: TrainConfig) -> nn.Module:
    if config.stage in ("vae", "decoder"):
        return VAEStage(model, config)
    return DiffusionStage(model, config, use_motion=config.stage == "motion")


def tie_reference_to_denoising(model: AnimateAnyoneModel) -> None:
    """Start ReferenceNet as a copy of the denoising UNet (the paper starts both from the same SD weights)."""
    state = {k: v for k, v in model.denoising_unet.state_dict().items() if k in model.reference_unet.state_dict()}
    model.reference_unet.load_state_dict(state, strict=True)

