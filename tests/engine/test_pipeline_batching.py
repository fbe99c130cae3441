"""Less work per evaluation, same frames: the Pose Guider runs once per shot, several context
windows share one UNet call, and every attention runs through SDPA."""

import numpy as np
import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from aa_engine.config import GenerationConfig
from aa_engine.models.reference_attention import CrossAttention, ReferenceReader, ReferenceWriter
from aa_engine.pipeline import AnimateAnyonePipeline


def _latents(pipe, reference, poses, **knobs):
    config = GenerationConfig(**{"width": 64, "height": 64, "steps": 2, "seed": 5, **knobs})
    prepared = pipe.prepare(reference, poses, config)
    return pipe.denoise(prepared, pipe.initial_latents(len(poses), config), config)


def test_pose_guider_runs_once_per_shot_not_per_window_and_step(tiny_model, reference_image, pose_images):
    calls = []
    tiny_model.pose_guider.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    pipe = AnimateAnyonePipeline(tiny_model)
    _latents(pipe, reference_image, pose_images[:10], context_frames=4, context_overlap=1)
    assert sum(calls) == 10  # every frame once (in chunks of context_frames), whatever the windows and steps
    assert max(calls) <= 4


@pytest.mark.parametrize("batch, guidance", [(3, 3.5), (64, 1.0)])
def test_batched_windows_give_the_same_latents(tiny_model, reference_image, pose_images, batch, guidance):
    """10 frames in windows of 4 (4 windows, the last one shorter-stride): batching 2, 3 or all of
    them per UNet call equals one window per call (to float rounding), with and without CFG."""
    pipe = AnimateAnyonePipeline(tiny_model)
    knobs = dict(context_frames=4, context_overlap=1, guidance=guidance)
    one = _latents(pipe, reference_image, pose_images[:10], **knobs)
    batched = _latents(pipe, reference_image, pose_images[:10], context_batch=batch, **knobs)
    torch.testing.assert_close(batched, one, atol=1e-5, rtol=0)


def test_batched_looped_windows_give_the_same_frames(tiny_model, reference_image, pose_images):
    pipe = AnimateAnyonePipeline(tiny_model)
    config = GenerationConfig(width=64, height=64, steps=2, context_frames=4, context_overlap=2, context_loop=True)
    one = np.stack(pipe(reference_image, pose_images[:9], config))
    import dataclasses

    batched = np.stack(pipe(reference_image, pose_images[:9], dataclasses.replace(config, context_batch=4)))
    assert np.abs(one.astype(int) - batched.astype(int)).max() <= 1


def test_context_batch_is_a_validated_setting_that_does_not_change_the_fingerprint():
    from aa_contract import settings
    from aa_contract.errors import InvalidSetting

    setting = settings.BY_NAME["context_batch"]
    assert setting.default == 1 and not setting.changes_frames and setting.group == "context"
    with pytest.raises(InvalidSetting, match="context_batch"):
        settings.validate({"context_batch": 0})


def test_every_attention_runs_through_sdpa(tiny_model):
    """No attention falls back to diffusers' plain (materialised-matrix) processor: the UNets' and the
    VAE's processors are SDPA ones, and the CLIP encoder uses transformers' sdpa implementation."""
    sdpa = (AttnProcessor2_0, CrossAttention, ReferenceReader, ReferenceWriter)
    processors = {name: type(m.processor) for name, m in tiny_model.named_modules() if isinstance(m, Attention)}
    assert processors and all(issubclass(p, sdpa) for p in processors.values()), processors
    assert any(name.startswith("vae.") for name in processors)  # the VAE's mid-block attention is covered
    assert tiny_model.image_encoder.config._attn_implementation == "sdpa"


def test_memory_options_keep_the_latents(tiny_model, reference_image, pose_images):
    """Offloading the reference parts and running the CFG halves one after the other change where
    and when the work happens, not the result; the offloaded parts are back on the device for the
    next job."""
    from aa_engine.pipeline.pipeline import MemoryOptions

    plain = _latents(AnimateAnyonePipeline(tiny_model), reference_image, pose_images[:3])
    pipe = AnimateAnyonePipeline(tiny_model, memory=MemoryOptions(offload_reference=True, cfg_sequential=True))
    lean = _latents(pipe, reference_image, pose_images[:3])
    torch.testing.assert_close(lean, plain, atol=1e-5, rtol=0)
    again = _latents(pipe, reference_image, pose_images[:3], feature_reuse=2)
    assert torch.isfinite(again).all()


def test_tiled_vae_decode_runs(tiny_model, reference_image, pose_images):
    from aa_engine.pipeline.pipeline import MemoryOptions

    tiny_model.vae.tile_sample_min_size = 32  # tiles smaller than the 64x64 frame, so tiling really happens
    tiny_model.vae.tile_latent_min_size = 4
    config = GenerationConfig(width=64, height=64, steps=1)
    tiled = np.stack(AnimateAnyonePipeline(tiny_model, memory=MemoryOptions(vae_tiling=True))(reference_image, pose_images[:2], config))
    plain = np.stack(AnimateAnyonePipeline(tiny_model)(reference_image, pose_images[:2], config))
    assert tiled.shape == plain.shape and not tiny_model.vae.use_tiling
