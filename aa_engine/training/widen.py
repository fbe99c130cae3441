"""Widen a trained VAE without losing what it learned (a net2net-style warm start).

A VAE-only stage product (training/vae_product.py) with block_out_channels C and one norm group per
level becomes one with 2C channels and two groups: group 1 holds the old channels, unchanged,
group 2 the new ones. Every layer keeps its old weights in the top-left block; the new channels get
fresh random weights as inputs-to-new, and **zero** weights as inputs-to-old:

    W_new = [[W_old, 0     ],      rows: output channels (old, then new)
             [fresh, fresh ]]      columns: input channels (old, then new)

so the old channels never see the new ones and the widened VAE reconstructs exactly as the old one
did (to float rounding), while the zero block still gets gradients (old error x new activation):
training grows the new capacity from the old model's quality instead of from scratch. The mid-block
attention has one head whose width doubles; its query keeps the old logits (old rows x sqrt(2)
against the 1/sqrt(d) scale, new rows zero).

    python -m aa_engine.training.widen stage_products/v2_vae out/train_v2/vae_wide_init
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
from diffusers import AutoencoderKL
from safetensors.torch import load_file

from aa_engine.errors import BadRequest
from aa_engine.training.vae_product import CONFIG_FILE, WEIGHTS_FILE

FACTOR = 2


def widened_config(config: dict) -> dict:
    """The VAE config with every level twice as wide and twice the norm groups (the old channels
    stay one group of their own)."""
    return dict(config, block_out_channels=[c * FACTOR for c in config["block_out_channels"]],
                norm_num_groups=config["norm_num_groups"] * FACTOR)


def _build(config: dict, seed: int) -> AutoencoderKL:
    torch.manual_seed(seed)
    return AutoencoderKL(**{k: v for k, v in config.items() if k not in ("sample_size", "scaling_factor")})


def widen_state(old: dict[str, torch.Tensor], fresh: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Old weights in the top-left block of the fresh (wider) ones; old outputs ignore new inputs.

    old, fresh: state dicts of the narrow and the widened AutoencoderKL (same keys)."""
    if old.keys() != fresh.keys():
        raise BadRequest("The VAE to widen does not have the layers of the widened architecture.")
    state = {}
    for name, new in fresh.items():
        new = new.clone()
        before = old[name]
        if before.shape == new.shape:
            state[name] = before.clone()
            continue
        rows = before.shape[0]
        if new.ndim == 1:
            new[:rows] = before
        else:
            cols = before.shape[1]
            new[:rows, cols:] = 0
            new[:rows, :cols] = before
        state[name] = new
    for name in state:
        # single-head mid attention: the head's width doubles, so the scale 1/sqrt(d) shrinks by
        # sqrt(2); old query rows x sqrt(2) keep the old logits, new query rows 0 add nothing.
        if name.endswith("to_q.weight") or name.endswith("to_q.bias"):
            q = state[name]
            rows = old[name].shape[0]
            if q.shape[0] != rows:
                q[:rows] *= math.sqrt(q.shape[0] / rows)
                q[rows:] = 0
    return state


def widen_vae(folder: str | Path, out: str | Path, seed: int = 0) -> Path:
    """Read a VAE-only product from `folder`, write the widened one to `out` (same layout)."""
    from safetensors.torch import save_file

    folder, out = Path(folder), Path(out)
    if not (folder / WEIGHTS_FILE).is_file() or not (folder / CONFIG_FILE).is_file():
        raise BadRequest(f"{folder} is not a VAE-only product (no {CONFIG_FILE} + {WEIGHTS_FILE}).",
                         "Point it at a vae stage's out/vae folder, e.g. stage_products/v2_vae.")
    config = json.loads((folder / CONFIG_FILE).read_text())
    if config.get("norm_num_groups") != 1:
        raise BadRequest(f"Widening keeps the old channels as one norm group; {folder} has norm_num_groups "
                         f"{config.get('norm_num_groups')} (only 1 is supported).")
    wide = widened_config(config)
    state = widen_state(load_file(str(folder / WEIGHTS_FILE)), _build(wide, seed).state_dict())
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(out / WEIGHTS_FILE))
    (out / CONFIG_FILE).write_text(json.dumps(wide, indent=2))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m aa_engine.training.widen", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="a VAE-only product (vae_config.json + vae.safetensors)")
    parser.add_argument("out", help="where to write the widened product")
    parser.add_argument("--seed", type=int, default=0, help="seed of the new channels' random weights")
    args = parser.parse_args(argv)
    print(widen_vae(args.folder, args.out, args.seed))


if __name__ == "__main__":
    main()
