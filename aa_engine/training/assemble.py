"""Combine two checkpoints: every part from --base, the VAE from --vae-from.

The `decoder` stage can run alongside stages 1 and 2 (it only changes the VAE decoder); this puts
its decoder into the final model. The two VAEs' encoders must be identical, or the UNets would be
decoding a latent space they were not trained on:

    python -m aa_engine.training.assemble --base runs/motion/model --vae-from runs/decoder/model --out aa_engine/default_model
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from aa_engine.errors import WeightsError
from aa_engine.weights import load_model, save_checkpoint


def assemble(base: str | Path, vae_from: str | Path, out: str | Path) -> Path:
    model, _ = load_model(str(base))
    donor, _ = load_model(str(vae_from))
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
    return save_checkpoint(model, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aa_engine.training.assemble", description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="checkpoint folder giving everything but the VAE")
    parser.add_argument("--vae-from", required=True, help="checkpoint folder giving the VAE (same encoder)")
    parser.add_argument("--out", required=True, help="folder for the combined checkpoint")
    args = parser.parse_args(argv)
    try:
        out = assemble(args.base, args.vae_from, args.out)
    except WeightsError as exc:
        print(f"error: {exc.message}\nhint: {exc.hint}" if exc.hint else f"error: {exc.message}")
        return 2
    print(f"combined checkpoint in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
