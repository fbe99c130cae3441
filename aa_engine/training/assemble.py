"""Combine two checkpoints: every part from --base, the VAE from --vae-from.

The `decoder` stage can run alongside stages 1 and 2 (it only changes the VAE decoder); this puts
its decoder into the final model. The two VAEs' encoders must be identical, or the UNets would be
decoding a latent space they were not trained on. A VAE widened by `training.widen` (and then only
its decoder trained) has another architecture but the same encoder *function*: that is checked by
encoding test frames with both (largest latent difference at most 1e-4), and the combined
checkpoint takes the donor's VAE architecture:

    python -m aa_engine.training.assemble --base runs/motion/model --vae-from runs/decoder/model --out aa_engine/default_model

--half stores the weights as float16: half the file (the v2-wide model is 12 M parameters, 48 MB in
float32, over the 30 MB a shipped checkpoint may take); the engine loads them back as float32.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from aa_engine.errors import WeightsError
from aa_engine.weights import load_model, save_checkpoint


ENCODER_TOLERANCE = 1e-4
WIDTH_KEYS = ("block_out_channels", "norm_num_groups")  # what training.widen changes


def _without_widths(vae_config: dict) -> dict:
    return {k: v for k, v in vae_config.items() if k not in WIDTH_KEYS}


def same_encoder_function(base: torch.nn.Module, donor: torch.nn.Module, width: int, height: int) -> float:
    """Largest difference between the two VAEs' latent means on test frames (synthetic held-out
    characters at width x height, and noise)."""
    from aa_engine.data.dataset import make_clip

    frames = make_clip("heldout", 0, 2, width, height, "rich").frames
    images = torch.from_numpy(frames).float().div(127.5).sub(1).permute(0, 3, 1, 2)
    images = torch.cat([images, torch.rand(images.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1])
    with torch.no_grad():
        return float((base.encode(images).latent_dist.mean - donor.encode(images).latent_dist.mean).abs().max())


def assemble(base: str | Path, vae_from: str | Path, out: str | Path, half: bool = False) -> Path:
    dtype = torch.float16 if half else None
    model, _ = load_model(str(base))
    donor, _ = load_model(str(vae_from))
    if donor.config.vae != model.config.vae and _without_widths(donor.config.vae) == _without_widths(model.config.vae):
        width, height = model.config.native_size or (64, 64)
        difference = same_encoder_function(model.vae, donor.vae, width, height)
        if difference > ENCODER_TOLERANCE:
            raise WeightsError(
                f"The VAE of {vae_from} is wider than {base}'s and its encoder gives other latents (largest difference {difference:.2e}).",
                "Only a VAE widened with training.widen whose decoder alone was trained (--stage decoder) can be swapped in.",
            )
        model.vae = donor.vae
        model.config.vae = dict(donor.config.vae)
        return save_checkpoint(model, out, dtype)
    ours = {k: v for k, v in model.vae.state_dict().items() if k.startswith(("encoder.", "quant_conv."))}
    theirs = donor.vae.state_dict()
    changed = [k for k, v in ours.items() if not torch.equal(v, theirs[k])]
    if changed:
        raise WeightsError(
            f"The VAE encoders of {base} and {vae_from} differ ({len(changed)} tensors, e.g. {changed[0]}).",
            "Only a decoder trained with --stage decoder from the same VAE can be swapped in.",
        )
    if donor.scaling_factor != model.scaling_factor:
        raise WeightsError(f"Latent scaling factors differ ({model.scaling_factor} vs {donor.scaling_factor}).")
    model.vae.load_state_dict(theirs)
    return save_checkpoint(model, out, dtype)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aa_engine.training.assemble", description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="checkpoint folder giving everything but the VAE")
    parser.add_argument("--vae-from", required=True, help="checkpoint folder giving the VAE (same encoder)")
    parser.add_argument("--out", required=True, help="folder for the combined checkpoint")
    parser.add_argument("--half", action="store_true", help="store the weights as float16 (half the size; loaded as float32)")
    args = parser.parse_args(argv)
    try:
        out = assemble(args.base, args.vae_from, args.out, args.half)
    except WeightsError as exc:
        print(f"error: {exc.message}\nhint: {exc.hint}" if exc.hint else f"error: {exc.message}")
        return 2
    print(f"combined checkpoint in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
