"""Generating a synthetic clip with the engine's own pipeline (what users run), for samples and evaluation."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from aa_engine.config import GenerationConfig
from aa_engine.data.dataset import Clip
from aa_engine.models.animate_anyone import AnimateAnyoneModel


def generate_clip(
    model: AnimateAnyoneModel,
    clip: Clip,
    steps: int = 20,
    guidance: float = 3.5,
    seed: int = 42,
    device: str | torch.device = "cpu",
    reference_attention: bool = True,
    motion_modules: bool = True,
    sampler: str = "ddim",
    guidance_interval: float = 1.0,
    feature_reuse: int = 1,
) -> np.ndarray:
    """The clip's reference + skeleton maps -> generated frames (f, H, W, 3) uint8, at the clip's size.

    The whole clip is one context window (as long as the motion modules allow). reference_attention
    and motion_modules switch those parts off for the ablations (the model is not changed).
    """
    from aa_engine.pipeline import AnimateAnyonePipeline

    config = clip_config(model, clip, steps=steps, guidance=guidance, seed=seed, reference_attention=reference_attention,
                         motion_modules=motion_modules, sampler=sampler, guidance_interval=guidance_interval, feature_reuse=feature_reuse)
    pipe = AnimateAnyonePipeline(model, device)
    out = pipe(Image.fromarray(clip.reference), [Image.fromarray(p) for p in clip.poses], config)
    return np.stack(out)


def clip_config(model: AnimateAnyoneModel, clip: Clip, **settings) -> GenerationConfig:
    """The generation settings for a whole synthetic clip at its own size: one context window (as long
    as the motion modules allow), the rest as given (sampler, steps, guidance, seed...)."""
    height, width = clip.reference.shape[:2]
    frames = len(clip.poses)
    window = min(frames, model.config.motion_module.max_frames)
    return GenerationConfig(width=width, height=height, context_frames=window,
                            context_overlap=min(4, window - 1) if frames > window else 0, **settings)
