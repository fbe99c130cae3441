"""Image and video metrics on uint8 frames (f, H, W, 3), generated vs ground truth.

  ssim       mean structural similarity (Gaussian window 11, sigma 1.5, per channel; Wang et al. 2004)
  psnr       peak signal-to-noise ratio in dB (range 255), averaged over frames
  l1         mean absolute error in [0, 1]
  temporal   frame-to-frame change error: mean |(g[t+1] - g[t]) - (y[t+1] - y[t])| in [0, 1]; a video
             that flickers or freezes where the ground truth moves smoothly scores worse (lower is better)

and, where the character's keypoints are known (the synthetic held-out clips), SSIM split by region:
  ssim_figure      the SSIM map averaged over the figure's box (visible keypoints' bounding box plus
                   a margin of 1/16 of the frame height, for hair, hats, hands and props)
  ssim_background  the SSIM map averaged over the rest of the frame

No LPIPS: it needs pretrained VGG/AlexNet weights, which cannot be downloaded here.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

C1 = (0.01 * 255) ** 2
C2 = (0.03 * 255) ** 2


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


WINDOW = 11  # SSIM's Gaussian window; the map covers the 'valid' positions, WINDOW // 2 pixels in from each edge


def ssim_map(generated: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per-position SSIM of two (f, H, W, 3) uint8 arrays, averaged over channels: (f, H - 10, W - 10)."""
    x = torch.from_numpy(generated.astype(np.float64)).permute(0, 3, 1, 2)
    y = torch.from_numpy(truth.astype(np.float64)).permute(0, 3, 1, 2)
    c = x.shape[1]
    g = _gaussian_window(WINDOW)
    kx = g.reshape(1, 1, 1, -1).repeat(c, 1, 1, 1)
    ky = g.reshape(1, 1, -1, 1).repeat(c, 1, 1, 1)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, kx, groups=c), ky, groups=c)

    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    value = ((2 * mx * my + C1) * (2 * sxy + C2)) / ((mx * mx + my * my + C1) * (sxx + syy + C2))
    return value.mean(1).numpy()


def ssim(generated: np.ndarray, truth: np.ndarray) -> float:
    """Mean SSIM over frames and channels of two (f, H, W, 3) uint8 arrays ('valid' window positions)."""
    return float(ssim_map(generated, truth).mean())


def figure_mask(keypoints: np.ndarray, height: int, width: int) -> np.ndarray:
    """(f, 18, 3) keypoints (x, y, visibility) -> (f, H, W) bool: each frame's figure box (see the module doc)."""
    margin = max(1, round(height / 16))
    mask = np.zeros((len(keypoints), height, width), dtype=bool)
    for frame, points in zip(mask, keypoints):
        seen = points[points[:, 2] > 0, :2]
        if len(seen):
            x0, y0 = np.floor(seen.min(0)).astype(int) - margin
            x1, y1 = np.ceil(seen.max(0)).astype(int) + margin
            frame[max(0, y0):max(0, y1 + 1), max(0, x0):max(0, x1 + 1)] = True
    return mask


def region_ssim(generated: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """SSIM averaged inside and outside a (f, H, W) mask (NaN for a region with no valid position)."""
    values = ssim_map(generated, truth)
    r = WINDOW // 2
    inside = mask[:, r:mask.shape[1] - r, r:mask.shape[2] - r]

    def mean(where: np.ndarray) -> float:
        return float(values[where].mean()) if where.any() else float("nan")
    return {"ssim_figure": mean(inside), "ssim_background": mean(~inside)}


def psnr(generated: np.ndarray, truth: np.ndarray) -> float:
    diff = generated.astype(np.float64) - truth.astype(np.float64)
    mse = (diff**2).reshape(len(diff), -1).mean(axis=1)
    return float(np.mean(10 * np.log10(255.0**2 / np.maximum(mse, 1e-10))))


def l1(generated: np.ndarray, truth: np.ndarray) -> float:
    return float(np.abs(generated.astype(np.float64) - truth.astype(np.float64)).mean() / 255.0)


def temporal_error(generated: np.ndarray, truth: np.ndarray) -> float:
    if len(generated) < 2:
        raise ValueError("temporal error needs at least 2 frames")
    g = np.diff(generated.astype(np.float64), axis=0)
    y = np.diff(truth.astype(np.float64), axis=0)
    return float(np.abs(g - y).mean() / 255.0)


METRICS = {"ssim": ssim, "psnr": psnr, "l1": l1, "temporal": temporal_error}
HIGHER_IS_BETTER = {"ssim": True, "psnr": True, "l1": False, "temporal": False, "ssim_figure": True, "ssim_background": True}
REGION_METRICS = ("ssim_figure", "ssim_background")


def all_metrics(generated: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    if generated.shape != truth.shape:
        raise ValueError(f"shape mismatch: generated {generated.shape} vs truth {truth.shape}")
    return {name: fn(generated, truth) for name, fn in METRICS.items()}
