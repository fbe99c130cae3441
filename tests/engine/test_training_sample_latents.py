"""Fitting the decoder to the model's own latents: the sampled latents are the pipeline's, and the decoder stage learns them."""

import numpy as np
import pytest
import torch

from aa_engine.config import ModelConfig
from aa_engine.data import make_clip
from aa_engine.errors import BadRequest
from aa_engine.evaluation.generate import generate_clip
from aa_engine.models import build_model
from aa_engine.training.config import TrainConfig
from aa_engine.training.sample_latents import FIRST_CLIP, load_sample_pairs, main
from aa_engine.training.stages import tie_reference_to_denoising
from aa_engine.training.trainer import train
from aa_engine.weights import load_model, save_checkpoint


@pytest.fixture(scope="module")
def sampled(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sample_latents")
    model = build_model(ModelConfig.tiny(), seed=0)
    tie_reference_to_denoising(model)
    save_checkpoint(model, folder / "init")
    assert main(["--weights", str(folder / "init"), "--out", str(folder / "samples"), "--clips", "2", "--frames", "2",
                 "--width", "64", "--height", "64", "--data", "flat", "--preset", "fast"]) == 0
    return folder


def test_sampled_latents_are_the_pipelines_final_latents(sampled):
    model, _ = load_model(str(sampled / "init"))
    latents, truth = load_sample_pairs(sampled / "samples", 64, 64, "flat")
    assert latents.shape[0] == truth.shape[0] == 4 and truth.shape[1:] == (3, 64, 64) and truth.dtype == torch.uint8
    clip = make_clip("train", FIRST_CLIP + 1, 2, 64, 64, "flat")
    assert np.array_equal(truth[2:].permute(0, 2, 3, 1).numpy(), clip.frames)
    # decoding the stored latents of clip 1 gives the frames the pipeline makes of it (its seed is 42 + 1)
    frames = generate_clip(model, clip, steps=8, seed=43, sampler="dpm++2m", guidance_interval=0.5)
    with torch.no_grad():
        decoded = (model.decode(latents[2:]) * 255).round().byte().permute(0, 2, 3, 1).numpy()
    assert np.abs(decoded.astype(int) - frames.astype(int)).max() <= 1


def test_decoder_stage_learns_to_decode_the_sampled_latents(sampled, tmp_path):
    settings = dict(stage="decoder", init=str(sampled / "init"), steps=6, batch_size=2, width=64, height=64, lr=2e-3, warmup=1,
                    checkpoint_every=6, sample_every=0, crop=32, ssim_weight=0.0, cpu=True, sample_latents=str(sampled / "samples"))
    before, _ = load_model(str(sampled / "init"))
    plain = train(TrainConfig(**settings, out=str(tmp_path / "plain"), sample_weight=0.0)).model
    fitted = train(TrainConfig(**settings, out=str(tmp_path / "fitted"), sample_weight=4.0)).model
    latents, truth = load_sample_pairs(sampled / "samples", 64, 64, "flat")

    def error(model):
        with torch.no_grad():
            return float((model.decode(latents) * 255 - truth.float()).abs().mean())

    assert error(fitted) < 0.9 * error(plain)  # the pairs' loss, not the reconstruction alone, did it
    assert torch.equal(before.vae.encoder.conv_in.weight, fitted.vae.encoder.conv_in.weight)  # the encoder stays


def test_sample_latents_refuse_what_does_not_fit(sampled, tmp_path):
    with pytest.raises(BadRequest, match="not rich at 64x64"):
        load_sample_pairs(sampled / "samples", 64, 64, "rich")
    with pytest.raises(BadRequest, match="no latents.safetensors"):
        load_sample_pairs(tmp_path, 64, 64, "flat")
    with pytest.raises(BadRequest, match="--stage decoder"):
        TrainConfig(stage="image", init="x", sample_latents=str(sampled / "samples")).validate()
