"""The latent-space proxy: a VAE of the asked layout, stage 1 on it, and the scores."""

import json

import pytest

from aa_engine.evaluation.latent_proxy import run_proxy
from aa_engine.weights import load_model


@pytest.mark.slow
def test_proxy_trains_the_asked_latent_layout_and_writes_every_score(tmp_path):
    result = run_proxy(tmp_path, latent_channels=8, vae_steps=2, image_steps=2, scale_equivariance=1.0, latent_noise=0.3,
                       width=64, height=64, clips=1, batch_size=1)
    model, _ = load_model(tmp_path / "image" / "model")
    assert model.vae.config.latent_channels == 8 and model.denoising_unet.config.in_channels == 8
    assert json.loads((tmp_path / "result.json").read_text()).keys() == result.keys()
    assert set(result["v_mse"]) == {50, 250, 500, 750, 999}
    assert 0 < result["vae_ceiling"] <= 1 and -1 <= result["ssim_20_step"] <= 1 and result["latent_noise"] == 0.3
