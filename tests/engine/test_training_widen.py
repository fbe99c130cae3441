"""Widening a trained VAE: the wider one reconstructs exactly as the old one, then trains further."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from aa_engine.errors import BadRequest
from aa_engine.training.vae_product import CONFIG_FILE, WEIGHTS_FILE
from aa_engine.training.widen import _build, main, widen_vae

# the v2 layout (one norm group, 16 latent channels), narrower so the test is quick
NARROW = {
    "in_channels": 3, "out_channels": 3, "down_block_types": ["DownEncoderBlock2D"] * 3, "up_block_types": ["UpDecoderBlock2D"] * 3,
    "block_out_channels": [8, 16, 16], "layers_per_block": 1, "latent_channels": 16, "norm_num_groups": 1, "sample_size": 32,
    "scaling_factor": 0.8,
}


def _product(folder, config=NARROW, seed=3):
    vae = _build(config, seed)
    with torch.no_grad():  # trained-looking weights: nothing at its init value
        for p in vae.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, str(folder / WEIGHTS_FILE))
    (folder / CONFIG_FILE).write_text(json.dumps(config))
    return folder


def _load(folder):
    vae = _build(json.loads((folder / CONFIG_FILE).read_text()), 0)
    vae.load_state_dict(load_file(str(folder / WEIGHTS_FILE)))
    return vae.eval()


def test_widened_vae_reconstructs_like_the_old_one(tmp_path):
    old = _load(_product(tmp_path / "old"))
    wide = _load(widen_vae(tmp_path / "old", tmp_path / "wide"))
    assert list(wide.config.block_out_channels) == [16, 32, 32]
    assert wide.config.norm_num_groups == 2 and wide.config.latent_channels == 16
    assert json.loads((tmp_path / "wide" / CONFIG_FILE).read_text())["scaling_factor"] == 0.8
    images = torch.rand(2, 3, 32, 24) * 2 - 1
    with torch.no_grad():
        latents = old.encode(images).latent_dist.mean
        assert torch.allclose(wide.encode(images).latent_dist.mean, latents, atol=1e-5)
        assert torch.allclose(wide.decode(latents).sample, old.decode(latents).sample, atol=1e-5)
    assert sum(p.numel() for p in wide.parameters()) > 3 * sum(p.numel() for p in old.parameters())


def test_new_channels_get_gradients(tmp_path):
    """The zero blocks (old outputs from new inputs) must learn, or the new capacity stays unused."""
    wide = _load(widen_vae(_product(tmp_path / "old"), tmp_path / "wide"))
    images = torch.rand(2, 3, 32, 24) * 2 - 1
    loss = (wide.decode(wide.encode(images).latent_dist.mean).sample - images).pow(2).mean()
    loss.backward()
    conv_out = wide.decoder.conv_out.weight  # (3, 2 * 8, 3, 3): its new input columns start at zero
    assert torch.all(conv_out[:, 8:] == 0) and conv_out.grad[:, 8:].abs().sum() > 0


def test_widen_refuses_what_it_cannot_preserve(tmp_path, capsys):
    with pytest.raises(BadRequest, match="not a VAE-only product"):
        widen_vae(tmp_path, tmp_path / "out")
    _product(tmp_path / "grouped", dict(NARROW, norm_num_groups=8))
    with pytest.raises(BadRequest, match="norm_num_groups 8"):
        widen_vae(tmp_path / "grouped", tmp_path / "out")
    main([str(_product(tmp_path / "old")), str(tmp_path / "cli")])
    assert (tmp_path / "cli" / WEIGHTS_FILE).is_file() and str(tmp_path / "cli") in capsys.readouterr().out


def test_a_widened_decoder_is_swapped_into_a_trained_model(tmp_path):
    """The v2 route: the UNets train on the narrow VAE's latents while the widened VAE's decoder
    alone is trained; assemble puts that wider VAE into the final model, checking the encoder."""
    import dataclasses

    from aa_engine.config import ModelConfig
    from aa_engine.errors import WeightsError
    from aa_engine.models import build_model
    from aa_engine.training.assemble import assemble
    from aa_engine.training.vae_product import load_vae_into, save_vae, vae_config
    from aa_engine.weights import load_model, save_checkpoint

    tiny = ModelConfig.tiny()
    config = dataclasses.replace(tiny, vae=dict(tiny.vae, norm_num_groups=1))
    base = build_model(config, seed=0)
    base_dir = save_checkpoint(base, tmp_path / "base")
    wide_product = widen_vae(save_vae(base, tmp_path / "narrow"), tmp_path / "wide")
    donor = build_model(dataclasses.replace(config, vae=vae_config(wide_product)), seed=0)
    load_vae_into(donor, wide_product)
    with torch.no_grad():  # "decoder training"
        donor.vae.decoder.conv_out.weight.add_(0.1)
    combined, _ = load_model(str(assemble(base_dir, save_checkpoint(donor, tmp_path / "donor"), tmp_path / "combined")))
    assert combined.config.vae["block_out_channels"] == [32, 64, 64, 64]
    assert torch.equal(combined.vae.decoder.conv_out.weight, donor.vae.decoder.conv_out.weight)
    assert torch.equal(combined.denoising_unet.conv_in.weight, base.denoising_unet.conv_in.weight)

    with torch.no_grad():  # an encoder that moved: its latents are not the ones the UNets learned
        donor.vae.encoder.conv_in.weight.add_(0.1)
    with pytest.raises(WeightsError, match="encoder gives other latents"):
        assemble(base_dir, save_checkpoint(donor, tmp_path / "moved"), tmp_path / "bad")
