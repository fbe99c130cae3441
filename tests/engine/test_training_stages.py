"""Training: a few steps lower the loss, stages train only their parts, and resuming is exact."""

import json
import subprocess
import sys

import pytest
import torch

from aa_engine.config import ModelConfig
from aa_engine.data import make_batch
from aa_engine.errors import BadRequest
from aa_engine.models import build_model
from aa_engine.training.config import TrainConfig
from aa_engine.training.stages import make_stage, tie_reference_to_denoising, trainable_parameters
from aa_engine.training.trainer import train
from aa_engine.weights import load_model, save_checkpoint


@pytest.fixture
def tiny_init(tmp_path):
    model = build_model(ModelConfig.tiny(), seed=0)
    tie_reference_to_denoising(model)
    return save_checkpoint(model, tmp_path / "init")


def _config(tmp_path, init, **overrides) -> TrainConfig:
    settings = dict(stage="image", out=str(tmp_path / "run"), init=str(init), steps=4, batch_size=2, frames=1, width=64, height=64,
                    lr=1e-3, warmup=1, checkpoint_every=2, sample_every=0, log_every=1, cpu=True)
    settings.update(overrides)
    return TrainConfig(**settings)


def _fixed_loss(stage, batch, seed=123) -> float:
    with torch.no_grad():
        return float(stage(batch, torch.Generator().manual_seed(seed)))


@pytest.mark.parametrize("stage_name, frames", [("image", 1), ("motion", 3), pytest.param("vae", 1, marks=pytest.mark.slow)])
def test_a_few_steps_lower_the_loss_on_a_fixed_batch(stage_name, frames):
    torch.manual_seed(0)
    model = build_model(ModelConfig.tiny(), seed=0)
    config = TrainConfig(stage=stage_name, init="x", frames=frames, condition_dropout=0.0)
    params = trainable_parameters(model, stage_name)
    stage = make_stage(model, config)
    batch = make_batch("train", [0, 1], frames, 64, 64)
    before = _fixed_loss(stage, batch)
    optimizer = torch.optim.AdamW(params, lr=2e-3)
    for _ in range(8):
        loss = stage(batch, torch.Generator().manual_seed(123))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    after = _fixed_loss(stage, batch)
    assert after < 0.9 * before, f"{stage_name}: loss {before:.4f} -> {after:.4f}"


def test_image_stage_leaves_vae_clip_and_motion_modules_untouched(tmp_path, tiny_init):
    before, _ = load_model(str(tiny_init))
    after = train(_config(tmp_path, tiny_init, steps=2)).model
    frozen = ["vae", "image_encoder"]
    for part in frozen:
        for (name, a), b in zip(getattr(before, part).state_dict().items(), getattr(after, part).state_dict().values()):
            assert torch.equal(a, b), f"{part}.{name} changed"
    for a, b in zip(before.motion_modules(), after.motion_modules()):
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    changed = [not torch.equal(a, b) for a, b in zip(before.pose_guider.parameters(), after.pose_guider.parameters())]
    assert any(changed)
    assert not torch.equal(before.reference_unet.conv_in.weight, after.reference_unet.conv_in.weight)


def test_motion_stage_trains_only_the_motion_modules(tmp_path, tiny_init):
    before, _ = load_model(str(tiny_init))
    after = train(_config(tmp_path, tiny_init, stage="motion", frames=3, steps=2)).model
    motion = {k for k in after.denoising_unet.state_dict() if ".motion_modules." in k}
    for key, value in before.denoising_unet.state_dict().items():
        if key not in motion:
            assert torch.equal(value, after.denoising_unet.state_dict()[key]), f"{key} changed in the motion stage"
    assert any(not torch.equal(before.denoising_unet.state_dict()[k], after.denoising_unet.state_dict()[k]) for k in motion)
    assert all(torch.equal(a, b) for a, b in zip(before.reference_unet.parameters(), after.reference_unet.parameters()))


@pytest.mark.slow
def test_resumed_run_reaches_the_same_weights_as_an_uninterrupted_one(tmp_path, tiny_init):
    straight = train(_config(tmp_path / "a", tiny_init)).model
    first = train(_config(tmp_path / "b", tiny_init), stop_after=2)
    assert first.steps == 2
    resumed = train(_config(tmp_path / "b", tiny_init)).model
    a, b = straight.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs after resuming"
    # And the run really moved away from the initial weights.
    init, _ = load_model(str(tiny_init))
    assert not torch.equal(init.denoising_unet.conv_in.weight, resumed.denoising_unet.conv_in.weight)


def test_run_folder_has_log_checkpoints_and_loadable_weights(tmp_path, tiny_init):
    config = _config(tmp_path, tiny_init, steps=2, sample_every=2, sample_steps=2)
    result = train(config)
    run = tmp_path / "run"
    assert (run / "log.jsonl").read_text().count("\n") == 2
    assert (run / "samples" / "step_000002.png").is_file()
    assert (run / "checkpoints" / "step_000002" / "trainer_state.json").is_file()
    model, info = load_model(str(result.model_dir))
    assert info.kind == "checkpoint"
    # the architecture beside the checkpoints, so a checkpoint can be scored before the run ends
    from aa_engine.evaluation.denoiser_probe import load_stage_checkpoint

    scored = load_stage_checkpoint(str(run / "checkpoints" / "step_000002" / "model.safetensors"))
    assert scored.config.to_dict() == model.config.to_dict()
    assert torch.equal(scored.denoising_unet.conv_in.weight, model.denoising_unet.conv_in.weight)


def test_vae_stage_calibrates_the_latent_scale(tmp_path):
    result = train(TrainConfig(stage="vae", arch="tiny", out=str(tmp_path / "vae"), steps=1, batch_size=2, width=64, height=64, sample_every=0, cpu=True))
    model, _ = load_model(str(result.model_dir))
    assert model.scaling_factor != 0.18215
    assert model.config.vae["scaling_factor"] == pytest.approx(model.scaling_factor)


def test_image_stage_without_init_is_a_clear_error(tmp_path):
    with pytest.raises(BadRequest, match="needs --init"):
        train(TrainConfig(stage="image", out=str(tmp_path)))


@pytest.mark.slow
def test_train_command_runs_through_the_cli(tmp_path, tiny_init):
    out = tmp_path / "cli"
    result = subprocess.run(
        [sys.executable, "-m", "aa_engine", "train", "--stage", "image", "--init", str(tiny_init), "--out", str(out),
         "--steps", "2", "--batch-size", "2", "--width", "64", "--height", "64", "--sample-every", "0", "--cpu"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert (out / "model" / "model.safetensors").is_file()
    bad = subprocess.run([sys.executable, "-m", "aa_engine", "train", "--stage", "motion", "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "needs --init" in bad.stderr


def test_decoder_stage_changes_only_the_decoder_and_can_be_swapped_in(tmp_path, tiny_init):
    from aa_engine.errors import WeightsError
    from aa_engine.training.assemble import assemble

    decoder = train(TrainConfig(stage="decoder", init=str(tiny_init), out=str(tmp_path / "dec"), steps=2, batch_size=2,
                                width=64, height=64, lr=1e-3, warmup=1, sample_every=0, cpu=True))
    before, _ = load_model(str(tiny_init))
    after = decoder.model
    assert torch.equal(before.vae.encoder.conv_in.weight, after.vae.encoder.conv_in.weight)
    assert not torch.equal(before.vae.decoder.conv_out.weight, after.vae.decoder.conv_out.weight)
    combined, _ = load_model(str(assemble(tiny_init, decoder.model_dir, tmp_path / "combined")))
    assert torch.equal(combined.vae.decoder.conv_out.weight, after.vae.decoder.conv_out.weight)
    assert torch.equal(combined.denoising_unet.conv_in.weight, before.denoising_unet.conv_in.weight)
    # --half: a float16 file of about half the size, loaded back as float32 at float16's precision
    half_dir = assemble(tiny_init, decoder.model_dir, tmp_path / "half", half=True)
    halved, _ = load_model(str(half_dir))
    full_size = (tmp_path / "combined" / "model.safetensors").stat().st_size
    assert (half_dir / "model.safetensors").stat().st_size < 0.55 * full_size
    assert halved.denoising_unet.conv_in.weight.dtype == torch.float32
    assert torch.equal(halved.denoising_unet.conv_in.weight, before.denoising_unet.conv_in.weight.half().float())

    other = build_model(ModelConfig.tiny(), seed=5)
    with pytest.raises(WeightsError, match="encoders"):
        assemble(tiny_init, save_checkpoint(other, tmp_path / "other"), tmp_path / "bad")


@pytest.mark.slow
def test_vae_stage_writes_a_vae_only_product_that_starts_the_image_stage(tmp_path):
    vae = train(TrainConfig(stage="vae", arch="tiny", data="rich", out=str(tmp_path / "vae"), steps=1, batch_size=1, width=64, height=64,
                            sample_every=0, cpu=True))
    product = tmp_path / "vae" / "vae"
    assert (product / "vae.safetensors").is_file() and not (product / "model.safetensors").exists()
    image = train(_config(tmp_path, product, steps=1, batch_size=1, arch="tiny", data="rich", out=str(tmp_path / "image")))
    assert image.model.scaling_factor == pytest.approx(vae.model.scaling_factor)
    for key, value in vae.model.vae.state_dict().items():
        assert torch.equal(value, image.model.vae.state_dict()[key]), key
    assert image.model.config.vae == vae.model.config.vae


def test_cosine_schedule_warms_up_then_decays_to_a_tenth():
    from aa_engine.training.trainer import lr_factor

    config = TrainConfig(steps=100, warmup=10, lr_schedule="cosine")
    assert lr_factor(config, 0) == pytest.approx(0.1)
    assert lr_factor(config, 9) == pytest.approx(1.0)
    assert lr_factor(config, 55) == pytest.approx(0.55, abs=0.02)
    assert lr_factor(config, 100) == pytest.approx(0.1)
    assert lr_factor(TrainConfig(steps=100, warmup=10), 90) == 1.0


def test_first_clip_moves_the_data_stream_on_and_a_tail_run_sees_new_clips(tmp_path):
    from aa_engine.training.trainer import batch_indices

    main = TrainConfig(steps=100, batch_size=4)
    assert batch_indices(main, 0, 0, 1) == [0, 1, 2, 3]
    assert batch_indices(main, 99, 0, 1) == [396, 397, 398, 399]
    tail = TrainConfig(steps=10, batch_size=4, first_clip=main.steps * main.batch_size)
    assert batch_indices(tail, 0, 0, 1) == [400, 401, 402, 403]
    assert batch_indices(tail, 2, 1, 2) == [400 + 20, 421, 422, 423]  # process 1 of 2 at step 2
    with pytest.raises(BadRequest, match="--first-clip"):
        train(TrainConfig(stage="vae", first_clip=-1, out=str(tmp_path)))


def test_ssim_loss_term_is_the_evaluation_metric():
    import numpy as np

    from aa_engine.evaluation.metrics import ssim
    from aa_engine.training.stages import ssim_torch

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (2, 40, 32, 3)).astype(np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-40, 40, a.shape), 0, 255).astype(np.uint8)
    signed = lambda x: torch.from_numpy(x).double().div(127.5).sub(1).permute(0, 3, 1, 2)  # noqa: E731
    assert float(ssim_torch(signed(a), signed(b))) == pytest.approx(ssim(a, b), abs=1e-6)


def test_unknown_data_style_or_schedule_is_a_clear_error(tmp_path):
    with pytest.raises(BadRequest, match="--data"):
        train(TrainConfig(stage="vae", data="photo", out=str(tmp_path)))
    with pytest.raises(BadRequest, match="--lr-schedule"):
        train(TrainConfig(stage="vae", lr_schedule="step", out=str(tmp_path)))


def test_random_crops_are_on_the_latent_grid_and_zero_means_whole_frames():
    from aa_engine.training.stages import random_crops

    images = torch.arange(2 * 3 * 48 * 32, dtype=torch.float32).reshape(2, 3, 48, 32)
    assert random_crops(images, 0, torch.Generator().manual_seed(0)) is images
    crops = random_crops(images, 16, torch.Generator().manual_seed(0))
    assert crops.shape == (2, 3, 16, 16)
    for i in range(2):
        flat_index = int(crops[i, 0, 0, 0]) - i * 3 * 48 * 32
        y, x = divmod(flat_index, 32)
        assert y % 8 == 0 and x % 8 == 0
        assert torch.equal(crops[i], images[i, :, y : y + 16, x : x + 16])


def test_scale_equivariance_term_adds_the_coarse_decode_loss_and_trains_the_encoder():
    from aa_engine.training.stages import scale_equivariance_loss

    model = build_model(ModelConfig.tiny(), seed=0)
    batch = make_batch("train", [0], 1, 64, 72)  # a latent of 8 x 9 cells: the odd side is cut to 8
    plain = make_stage(model, TrainConfig(stage="vae", init="x", width=64, height=72))
    with_term = make_stage(model, TrainConfig(stage="vae", init="x", width=64, height=72, scale_equivariance=0.5))
    images = torch.cat([batch.references, batch.targets.flatten(0, 1)])
    mean = model.vae.encode(images).latent_dist.mean
    term = scale_equivariance_loss(model.vae, mean, images)
    assert float(with_term(batch, torch.Generator().manual_seed(1))) == pytest.approx(
        float(plain(batch, torch.Generator().manual_seed(1))) + 0.5 * float(term), rel=1e-5)
    term.backward()
    assert model.vae.encoder.conv_in.weight.grad.abs().sum() > 0
    assert model.vae.decoder.conv_out.weight.grad.abs().sum() > 0
    # the decoder stage keeps the encoder's latent space: the term (which would move it) is refused there
    with pytest.raises(BadRequest, match="--scale-equivariance"):
        TrainConfig(stage="decoder", init="x", scale_equivariance=0.5).validate()


def test_unets_from_warm_starts_every_part_but_the_vae(tmp_path, tiny_init):
    from aa_engine.training.trainer import initial_model

    train(TrainConfig(stage="vae", arch="tiny", data="rich", out=str(tmp_path / "vae"), steps=1, batch_size=1, width=64, height=64,
                      sample_every=0, cpu=True, seed=5))
    product = tmp_path / "vae" / "vae"
    donor, _ = load_model(tiny_init)
    donor.reference_unet.conv_in.weight.data.add_(1.0)  # not what a seeded build gives
    save_checkpoint(donor, tmp_path / "donor")
    model = initial_model(_config(tmp_path, product, arch="tiny", data="rich", unets_from=str(tmp_path / "donor")))
    assert torch.equal(model.reference_unet.conv_in.weight, donor.reference_unet.conv_in.weight)
    assert torch.equal(model.pose_guider.conv_out.weight, donor.pose_guider.conv_out.weight)
    vae_run, _ = load_model(tmp_path / "vae" / "model")
    assert torch.equal(model.vae.encoder.conv_in.weight, vae_run.vae.encoder.conv_in.weight)
    with pytest.raises(BadRequest, match="--unets-from"):
        _config(tmp_path, tiny_init, unets_from=str(tmp_path / "donor")).validate()


def test_encode_bf16_encodes_in_bfloat16_close_to_full_precision_and_only_for_frozen_vae_stages():
    model = build_model(ModelConfig.tiny(), seed=0)
    images = make_batch("train", [0, 1], 1, 64, 64).targets.flatten(0, 1)
    full = make_stage(model, TrainConfig(stage="image", init="x", width=64, height=64)).encode(images)
    half = make_stage(model, TrainConfig(stage="image", init="x", width=64, height=64, encode_bf16=True)).encode(images)
    assert half.dtype == full.dtype == torch.float32
    relative = float((half - full).norm() / full.norm())
    assert 0 < relative < 0.02  # it did run in bfloat16 (not bit-equal), and stays close
    with pytest.raises(BadRequest, match="--encode-bf16"):
        TrainConfig(stage="decoder", init="x", encode_bf16=True).validate()


def test_v2_wide_is_v2_with_unets_twice_as_wide():
    from aa_engine.training.config import ARCHITECTURES

    narrow, wide = ARCHITECTURES["v2"](), ARCHITECTURES["v2-wide"]()
    assert wide.unet["block_out_channels"] == [2 * c for c in narrow.unet["block_out_channels"]]
    assert {k: v for k, v in wide.unet.items() if k != "block_out_channels"} == {
        k: v for k, v in narrow.unet.items() if k != "block_out_channels"}
    assert wide.vae == narrow.vae and wide.native_size == narrow.native_size == (128, 192)
    model = build_model(wide, seed=0)
    assert model.pose_guider.conv_out.out_channels == 64  # the pose features fit the wider conv_in


def test_mixed_precision_bf16_trains_in_bfloat16_with_float32_weights(tmp_path, tiny_init):
    full = train(_config(tmp_path / "full", tiny_init, steps=2)).model
    mixed = train(_config(tmp_path / "mixed", tiny_init, steps=2, mixed_precision="bf16")).model
    init, _ = load_model(str(tiny_init))
    a, b, start = (m.denoising_unet.conv_in.weight.detach() for m in (full, mixed, init))
    assert b.dtype == torch.float32
    assert not torch.equal(a, b)  # the forward really ran under bfloat16 autocast
    # the first step's loss (same weights, same batch) is full precision's to within a percent
    first = [json.loads((tmp_path / run / "run" / "log.jsonl").read_text().splitlines()[0])["loss"] for run in ("full", "mixed")]
    assert first[0] != first[1] and abs(first[1] / first[0] - 1) < 0.01
    # and the two steps went the same way (AdamW's first steps amplify tiny gradients, hence the loose bound)
    assert float((b - a).norm() / (a - start).norm()) < 0.3
    with pytest.raises(BadRequest, match="--mixed-precision"):
        _config(tmp_path, tiny_init, mixed_precision="fp16").validate()


def test_weight_average_warms_up_then_follows_the_decay():
    from aa_engine.training.ema import WeightAverage

    layer = torch.nn.Linear(2, 2)
    with torch.no_grad():
        layer.weight.fill_(0.0)
    params = [layer.weight]
    ema = WeightAverage(layer, params, decay=0.5)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    ema.update()  # rate min(0.5, 1/10): 10% of the old average stays
    assert torch.allclose(ema.shadow[0], torch.full((2, 2), 0.9))
    ema.updates = 100  # past the warm-up the rate is the decay
    ema.update()
    assert torch.allclose(ema.shadow[0], torch.full((2, 2), 0.95))
    with ema.applied():
        assert torch.allclose(layer.weight, torch.full((2, 2), 0.95))
    assert torch.equal(layer.weight, torch.ones(2, 2))


def test_ema_checkpoints_are_scored_like_checkpoints_and_model_holds_the_average(tmp_path, tiny_init):
    from aa_engine.evaluation.denoiser_probe import load_stage_checkpoint

    result = train(_config(tmp_path, tiny_init, steps=4, ema_decay=0.9))
    step = tmp_path / "run" / "checkpoints" / "step_000004"
    averaged = load_stage_checkpoint(str(step / "ema.safetensors"))
    trained = load_stage_checkpoint(str(step / "model.safetensors"))
    model, _ = load_model(str(result.model_dir))
    assert torch.equal(averaged.denoising_unet.conv_in.weight, model.denoising_unet.conv_in.weight)
    assert not torch.equal(averaged.denoising_unet.conv_in.weight, trained.denoising_unet.conv_in.weight)
    assert torch.equal(averaged.vae.encoder.conv_in.weight, trained.vae.encoder.conv_in.weight)  # frozen parts as they are
    with pytest.raises(BadRequest, match="--ema-decay"):
        _config(tmp_path, tiny_init, ema_decay=1.0).validate()


@pytest.mark.slow
def test_a_resumed_run_resumes_its_weight_average_exactly(tmp_path, tiny_init):
    straight = train(_config(tmp_path / "a", tiny_init, ema_decay=0.9)).model
    train(_config(tmp_path / "b", tiny_init, ema_decay=0.9), stop_after=2)
    resumed = train(_config(tmp_path / "b", tiny_init, ema_decay=0.9)).model
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), f"{key} differs after resuming"
    # a checkpoint without an average (a run that turns --ema-decay on when it resumes) starts one
    train(_config(tmp_path / "c", tiny_init), stop_after=2)
    late = train(_config(tmp_path / "c", tiny_init, ema_decay=0.9)).model
    assert not torch.equal(late.denoising_unet.conv_in.weight, straight.denoising_unet.conv_in.weight)
