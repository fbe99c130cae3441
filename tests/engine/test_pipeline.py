"""The pipeline's mechanisms, on the tiny random model (diffusers-style fast tests)."""

import numpy as np
import pytest
import torch

from aa_engine.config import GenerationConfig
from aa_engine.errors import Cancelled, InvalidSetting
from aa_engine.pipeline import AnimateAnyonePipeline

from conftest import random_image


def _zero_motion_modules(model):
    for module in model.motion_modules():
        torch.nn.init.zeros_(module.temporal_transformer.proj_out.weight)
        torch.nn.init.zeros_(module.temporal_transformer.proj_out.bias)


def _frames(pipe, reference, poses, **knobs):
    config = GenerationConfig(**{"width": 64, "height": 64, "steps": 2, **knobs})
    return np.stack(pipe(reference, poses, config))


def test_same_seed_same_frames_different_seed_different(tiny_model, reference_image, pose_images):
    pipe = AnimateAnyonePipeline(tiny_model)
    a = _frames(pipe, reference_image, pose_images[:4], seed=1)
    b = _frames(pipe, reference_image, pose_images[:4], seed=1)
    c = _frames(pipe, reference_image, pose_images[:4], seed=2)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_video_with_zero_motion_modules_equals_image_model_frame_by_frame(tiny_model, reference_image, pose_images):
    """With the motion modules' output projections zero (as initialised), the inflated UNet is exactly
    the image UNet run per frame: compare the video prediction with one prediction per frame."""
    _zero_motion_modules(tiny_model)
    pipe = AnimateAnyonePipeline(tiny_model)
    config = GenerationConfig(width=64, height=64, steps=2)
    prepared = pipe.prepare(reference_image, pose_images[:5], config)
    latents = pipe.initial_latents(5, config)
    t = torch.tensor(500)
    with torch.no_grad():
        features = tiny_model.pose_features(prepared.poses)
        ref = prepared.reference
        video, _ = tiny_model.predict(latents, t, prepared.context, features, prepared.uncond_context, reference=ref)
        per_frame = [
            tiny_model.predict(latents[:, :, [i]], t, prepared.context, features[:, :, [i]], prepared.uncond_context, reference=ref)[0]
            for i in range(5)
        ]
        no_motion, _ = tiny_model.predict(latents, t, prepared.context, features, prepared.uncond_context, use_motion=False, reference=ref)
    torch.testing.assert_close(video, torch.cat(per_frame, dim=2), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(video, no_motion, atol=1e-6, rtol=0)


def test_motion_modules_mix_frames_when_not_zero(tiny_model, reference_image, pose_images):
    """The random-tiny model's motion modules are live: a frame's prediction depends on its neighbours."""
    pipe = AnimateAnyonePipeline(tiny_model)
    config = GenerationConfig(width=64, height=64, steps=2)
    prepared = pipe.prepare(reference_image, pose_images[:3], config)
    latents = pipe.initial_latents(3, config)
    with torch.no_grad():
        features = tiny_model.pose_features(prepared.poses)
        video, _ = tiny_model.predict(latents, torch.tensor(500), prepared.context, features, reference=prepared.reference)
        alone, _ = tiny_model.predict(latents[:, :, [0]], torch.tensor(500), prepared.context, features[:, :, [0]], reference=prepared.reference)
    assert (video[:, :, 0] - alone[:, :, 0]).abs().max() > 1e-4


def test_reference_image_changes_output_only_through_reference_attention(tiny_model, pose_images):
    """With the CLIP path made constant, the reference image reaches the output only through
    reference attention: changing it changes the frames with attention on, and not with it off."""
    with torch.no_grad():
        tiny_model.image_encoder.visual_projection.weight.zero_()
    pipe = AnimateAnyonePipeline(tiny_model)
    ref_a, ref_b = random_image(1), random_image(2)
    on_a = _frames(pipe, ref_a, pose_images[:3])
    on_b = _frames(pipe, ref_b, pose_images[:3])
    off_a = _frames(pipe, ref_a, pose_images[:3], reference_attention=False)
    off_b = _frames(pipe, ref_b, pose_images[:3], reference_attention=False)
    assert np.abs(on_a.astype(int) - on_b.astype(int)).mean() > 1.0
    assert np.array_equal(off_a, off_b)


def test_uncond_half_gets_no_reference_tokens(tiny_model, pose_images):
    """CFG: the unconditional prediction must not depend on the reference image (CLIP made constant)."""
    with torch.no_grad():
        tiny_model.image_encoder.visual_projection.weight.zero_()
    pipe = AnimateAnyonePipeline(tiny_model)
    config = GenerationConfig(width=64, height=64, steps=2)
    outs = []
    for seed in (1, 2):
        prepared = pipe.prepare(random_image(seed), pose_images[:2], config)
        latents = pipe.initial_latents(2, config)
        with torch.no_grad():
            features = tiny_model.pose_features(prepared.poses)
            outs.append(tiny_model.predict(latents, torch.tensor(500), prepared.context, features, prepared.uncond_context,
                                           reference=prepared.reference))
    (cond_a, uncond_a), (cond_b, uncond_b) = outs
    torch.testing.assert_close(uncond_a, uncond_b, atol=0, rtol=0)
    assert (cond_a - cond_b).abs().max() > 1e-4


def test_pose_maps_change_the_output(tiny_model, reference_image, pose_images):
    pipe = AnimateAnyonePipeline(tiny_model)
    a = _frames(pipe, reference_image, [pose_images[0]] * 2)
    b = _frames(pipe, reference_image, [pose_images[4]] * 2)
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("guidance", [1.0, 3.5])
def test_overlapping_windows_average_to_the_single_window_result(tiny_model, reference_image, pose_images, guidance):
    """Without motion modules each frame's prediction is window-independent, so any window layout
    must reproduce the one-window result exactly if overlaps are averaged (with and without CFG)."""
    _zero_motion_modules(tiny_model)
    pipe = AnimateAnyonePipeline(tiny_model)
    one = _frames(pipe, reference_image, pose_images[:10], guidance=guidance, context_frames=24)
    windowed = _frames(pipe, reference_image, pose_images[:10], guidance=guidance, context_frames=4, context_overlap=2)
    assert np.abs(one.astype(int) - windowed.astype(int)).max() <= 1


def test_window_settings_do_not_matter_when_the_video_fits_one_window(tiny_model, reference_image, pose_images):
    pipe = AnimateAnyonePipeline(tiny_model)
    a = _frames(pipe, reference_image, pose_images[:8], context_frames=8, context_overlap=4)
    b = _frames(pipe, reference_image, pose_images[:8], context_frames=24, context_overlap=4)
    assert np.array_equal(a, b)


def test_looped_windows_tie_the_first_frame_to_the_last_pose(tiny_model, reference_image, pose_images):
    """One step, 12 frames, windows of 8: without looping frame 1 is denoised only with poses 1-8,
    so changing pose 12 leaves it alone; with looping the last window holds frames 7-12 and 1-2."""
    pipe = AnimateAnyonePipeline(tiny_model)
    poses = pose_images[:12]
    changed = poses[:11] + [pose_images[13]]
    knobs = dict(steps=1, context_frames=8, context_overlap=2)
    plain = [_frames(pipe, reference_image, p, **knobs) for p in (poses, changed)]
    looped = [_frames(pipe, reference_image, p, context_loop=True, **knobs) for p in (poses, changed)]
    assert np.array_equal(plain[0][0], plain[1][0])
    assert not np.array_equal(looped[0][0], looped[1][0])
    assert not np.array_equal(plain[0], looped[0])


def test_context_loop_must_be_a_boolean_in_a_job():
    from aa_engine.jobs import JobSpec

    job = {"type": "job", "id": "j", "reference": "r.png", "poses": "p", "output": "o"}
    assert JobSpec.from_message({**job, "context_loop": True}).config.context_loop is True
    with pytest.raises(InvalidSetting, match="context_loop"):
        JobSpec.from_message({**job, "context_loop": "yes"})


def test_long_video_runs_through_several_windows(tiny_model, reference_image, pose_images):
    pipe = AnimateAnyonePipeline(tiny_model)
    frames = _frames(pipe, reference_image, pose_images * 2, context_frames=8, context_overlap=2)
    assert frames.shape == (32, 64, 64, 3)


@pytest.mark.parametrize("width, height", [(60, 64), (64, 100), (0, 64)])
def test_sizes_must_be_multiples_of_8(tiny_model, reference_image, pose_images, width, height):
    pipe = AnimateAnyonePipeline(tiny_model)
    with pytest.raises(InvalidSetting, match="multiple of 8"):
        pipe(reference_image, pose_images[:2], GenerationConfig(width=width, height=height, steps=1))


def test_context_longer_than_the_position_table_is_refused(tiny_model, reference_image, pose_images):
    pipe = AnimateAnyonePipeline(tiny_model)
    with pytest.raises(InvalidSetting, match="between 1 and 32"):
        pipe(reference_image, pose_images[:2], GenerationConfig(width=64, height=64, steps=1, context_frames=40))
    tiny_model.config.motion_module.max_frames = 16  # a model whose position table is shorter than the contract's bound
    with pytest.raises(InvalidSetting, match="at most 16 frames"):
        pipe(reference_image, pose_images[:2], GenerationConfig(width=64, height=64, steps=1, context_frames=24))


def test_cancel_stops_within_one_step(tiny_model, reference_image, pose_images):
    pipe = AnimateAnyonePipeline(tiny_model)
    steps_done = []
    with pytest.raises(Cancelled):
        pipe(reference_image, pose_images[:4], GenerationConfig(width=64, height=64, steps=20),
             callback=lambda p: steps_done.append(p.step), should_cancel=lambda: len(steps_done) >= 1)
    assert steps_done == [1]


def test_non_square_sizes(tiny_model, reference_image, pose_images):
    pipe = AnimateAnyonePipeline(tiny_model)
    frames = pipe(reference_image, pose_images[:2], GenerationConfig(width=48, height=80, steps=1))
    assert frames[0].shape == (80, 48, 3)


def test_clip_preprocessing_squashes_the_reference_as_the_release_pipeline_does(tiny_model, reference_image):
    """Moore-AnimateAnyone's pose2vid pipeline resizes the whole reference to 224x224, then runs
    CLIPImageProcessor() with its defaults: the default "squash" must match that exactly, and keep
    the top and bottom of a tall (64x96) reference that a centre crop would cut off."""
    from transformers import CLIPImageProcessor

    assert tiny_model.config.clip_resize == "squash"
    assert reference_image.height > reference_image.width
    tiny_model.image_encoder.config.image_size = 224
    ours = tiny_model.clip_pixels(reference_image)
    theirs = CLIPImageProcessor()(reference_image.resize((224, 224)), return_tensors="pt").pixel_values
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)
    plain = CLIPImageProcessor()(reference_image, return_tensors="pt").pixel_values
    assert (ours - plain).abs().max() > 0.1


def test_clip_crop_equals_clip_image_processor_defaults(tiny_model, reference_image):
    """"crop" (how the shipped default model was trained) is CLIPImageProcessor's own resize + centre crop."""
    from transformers import CLIPImageProcessor

    tiny_model.config.clip_resize = "crop"
    tiny_model.image_encoder.config.image_size = 224
    ours = tiny_model.clip_pixels(reference_image)
    theirs = CLIPImageProcessor()(reference_image, return_tensors="pt").pixel_values
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)


def test_size_defaults_to_the_models_native_size(tiny_model, reference_image, pose_images):
    assert tiny_model.config.native_size == (64, 64)
    frames = AnimateAnyonePipeline(tiny_model)(reference_image, pose_images[:1], GenerationConfig(steps=1))
    assert frames[0].shape == (64, 64, 3)


def test_the_shipped_default_model_loads_and_knows_its_size():
    from aa_engine.weights import load_model

    model, info = load_model(None)
    assert info.kind == "checkpoint" and info.path.endswith("default_model")
    assert model.config.native_size == (128, 192)
    assert model.config.clip_resize == "squash"  # as it was trained
    assert model.config.vae["latent_channels"] == 16
