"""The training objective as pure functions: noising, v-prediction targets, min-SNR weights.

The noise schedule is the sampler's own (aa_engine.pipeline.scheduler: linear betas 0.00085..0.012,
zero-terminal-SNR rescale), so the model is trained for exactly the timesteps it is sampled at.
"""

from __future__ import annotations

import torch

from aa_engine.pipeline.scheduler import make_scheduler


def alphas_cumprod() -> torch.Tensor:
    """(1000,) cumulative alphas of the zero-terminal-SNR schedule (the last one is exactly 0)."""
    return make_scheduler().alphas_cumprod.clone().float()


def _expand(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.reshape(-1, *([1] * (like.dim() - 1))).to(like)


def add_noise(x0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor, ac: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(a) x0 + sqrt(1-a) noise, per sample (first axis)."""
    a = _expand(ac[timesteps], x0)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def v_target(x0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor, ac: torch.Tensor) -> torch.Tensor:
    """v = sqrt(a) noise - sqrt(1-a) x0 (what the model predicts)."""
    a = _expand(ac[timesteps], x0)
    return a.sqrt() * noise - (1 - a).sqrt() * x0


def loss_weights(timesteps: torch.Tensor, ac: torch.Tensor, snr_gamma: float) -> torch.Tensor:
    """Per-sample weights: 1 everywhere, or min-SNR-gamma for v-prediction, min(snr, g) / (snr + 1).

    Note min-SNR gives weight 0 at the zero-SNR timestep, where the model must draw the whole frame
    from its conditions alone; we default to plain weights (snr_gamma=0) for that reason.
    """
    if snr_gamma <= 0:
        return torch.ones(timesteps.shape[0])
    a = ac[timesteps]
    snr = a / (1 - a).clamp(min=1e-8)
    return snr.clamp(max=snr_gamma) / (snr + 1)


def sample_noise(shape: tuple[int, ...], generator: torch.Generator, noise_offset: float) -> torch.Tensor:
    """Gaussian noise plus a per-sample, per-channel offset (the "noise offset" trick), shape (b, c, ...)."""
    noise = torch.randn(shape, generator=generator)
    if noise_offset > 0:
        noise = noise + noise_offset * torch.randn((shape[0], shape[1]) + (1,) * (len(shape) - 2), generator=generator)
    return noise
