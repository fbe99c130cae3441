"""Samplers, guidance interval, feature reuse and presets: each lands where it must, and the
defaults stay the release's (DDIM 30, CFG 3.5 on every step, no reuse)."""


import pytest
import torch

from aa_contract import settings
from aa_engine.config import GenerationConfig, ModelConfig
from aa_engine.models.video_unet import DeepCache, video_forward
from aa_engine.pipeline import AnimateAnyonePipeline
from aa_engine.pipeline.scheduler import SAMPLERS, make_scheduler


@pytest.mark.parametrize("sampler", list(SAMPLERS))
@pytest.mark.parametrize("steps", [1, 4, 30])
def test_every_sampler_starts_at_pure_noise_and_lands_on_the_clean_sample(sampler, steps):
    """With an exact v-prediction denoiser (it knows x0), every sampler's last step returns x0:
    the schedule ends at t=0 (alpha 1), the first step is t=999 (zero SNR, trailing spacing)."""
    torch.manual_seed(0)
    x0, noise = torch.randn(1, 4, 2, 8, 8), torch.randn(1, 4, 2, 8, 8)
    scheduler = make_scheduler(sampler)
    scheduler.set_timesteps(steps)
    assert int(scheduler.timesteps[0]) == 999
    assert scheduler.config.prediction_type == "v_prediction" and scheduler.config.rescale_betas_zero_snr
    ac = scheduler.alphas_cumprod
    x = noise * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        seen = scheduler.scale_model_input(x, t)
        a = ac[int(t)]
        eps = (seen - a.sqrt() * x0) / (1 - a).sqrt()
        x = scheduler.step(a.sqrt() * eps - (1 - a).sqrt() * x0, t, x).prev_sample
    tolerance = 1e-3 if (sampler, steps) == ("euler", 1) else 1e-5  # Euler's one step starts from sigma 4096
    torch.testing.assert_close(x, x0, atol=tolerance, rtol=0)


def test_the_defaults_are_the_releases():
    config = GenerationConfig()
    assert (config.sampler, config.steps, config.guidance, config.guidance_interval, config.feature_reuse, config.preset) == \
        ("ddim", 30, 3.5, 1.0, 1, "custom")
    assert config.sized_for(ModelConfig.tiny()).steps == 30


def test_presets_replace_the_sampling_settings():
    fast = GenerationConfig(preset="fast", steps=50).sized_for(ModelConfig.tiny())
    assert {k: getattr(fast, k) for k in settings.PRESETS["fast"]} == settings.PRESETS["fast"]
    quality = GenerationConfig(preset="quality", sampler="unipc", steps=7).sized_for(ModelConfig.tiny())
    assert (quality.sampler, quality.steps, quality.guidance_interval, quality.feature_reuse) == ("ddim", 30, 1.0, 1)
    custom = GenerationConfig(sampler="unipc", steps=7).sized_for(ModelConfig.tiny())
    assert (custom.sampler, custom.steps) == ("unipc", 7)
    with pytest.raises(Exception, match="preset"):
        settings.validate({"preset": "fastest"})
    with pytest.raises(Exception, match="sampler"):
        settings.validate({"sampler": "plms"})


def _unet_rows(pipe, reference_image, pose_images, **knobs):
    """Rows of every denoising-UNet call (2 per frame with CFG, 1 without) and the final latents."""
    rows = []
    handle = pipe.model.denoising_unet.conv_in.register_forward_pre_hook(lambda m, args: rows.append(args[0].shape[0]))
    try:
        config = GenerationConfig(**{"width": 64, "height": 64, "steps": 4, **knobs})
        prepared = pipe.prepare(reference_image, pose_images, config)
        latents = pipe.denoise(prepared, pipe.initial_latents(len(pose_images), config), config)
    finally:
        handle.remove()
    return rows, latents


@pytest.mark.parametrize("sampler", ["dpm++2m", "unipc", "euler"])
def test_each_sampler_runs_the_pipeline(tiny_model, reference_image, pose_images, sampler):
    pipe = AnimateAnyonePipeline(tiny_model)
    rows, latents = _unet_rows(pipe, reference_image, pose_images[:2], sampler=sampler, steps=2)
    assert rows == [4, 4] and torch.isfinite(latents).all()


def test_guidance_interval_guides_only_the_first_steps(tiny_model, reference_image, pose_images):
    pipe = AnimateAnyonePipeline(tiny_model)
    rows, half = _unet_rows(pipe, reference_image, pose_images[:3], guidance_interval=0.5)
    assert rows == [6, 6, 3, 3]  # 3 frames: CFG (6 rows) on steps 1-2, the conditional half only on 3-4
    _, full = _unet_rows(pipe, reference_image, pose_images[:3], guidance_interval=1.0)
    _, default = _unet_rows(pipe, reference_image, pose_images[:3])
    assert torch.equal(full, default)
    assert not torch.equal(half, full)


def test_deep_cache_reuse_with_the_same_inputs_is_the_full_forward(tiny_model):
    """The shallow path on a cache filled with the same inputs recomputes exactly what the full
    forward did: reuse only skips work, it changes nothing else."""
    torch.manual_seed(0)
    unet = tiny_model.denoising_unet
    latents, context = torch.randn(1, 4, 3, 8, 12), torch.randn(1, 1, 32)
    cache = DeepCache()
    with torch.no_grad():
        full = video_forward(unet, latents, torch.tensor(500), context, cache=cache)
        reused = video_forward(unet, latents, torch.tensor(500), context, cache=cache, reuse=True)
        moved = video_forward(unet, latents + 0.5, torch.tensor(500), context, cache=cache, reuse=True)
    assert cache.features is not None
    torch.testing.assert_close(reused, full, atol=1e-6, rtol=0)
    assert (moved - full).abs().max() > 1e-3  # the outermost blocks do see the new latents
    with pytest.raises(ValueError, match="DeepCache"):
        video_forward(unet, latents, torch.tensor(500), context, cache=DeepCache(), reuse=True)


def test_feature_reuse_runs_the_deep_path_every_nth_step(tiny_model, reference_image, pose_images):
    pipe = AnimateAnyonePipeline(tiny_model)
    deep_calls = []
    handle = tiny_model.denoising_unet.mid_block.resnets[0].register_forward_pre_hook(lambda m, args: deep_calls.append(1))
    try:
        _, reused = _unet_rows(pipe, reference_image, pose_images[:3], feature_reuse=2)
    finally:
        handle.remove()
    assert len(deep_calls) == 2  # steps 1 and 3 of 4
    _, full = _unet_rows(pipe, reference_image, pose_images[:3])
    assert not torch.equal(reused, full)
    assert (reused - full).abs().max() < 5 * full.abs().max()  # an approximation, not garbage
