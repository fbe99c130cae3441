"""A VAE-only stage product: the trained VAE of the vae stage, without the (still random) UNets.

The vae stage writes it as `out/vae/` beside `out/model/`. It is what one session hands to the next
when the UNet stages do not fit in the same session: 4 MB for the v2 VAE instead of a whole
checkpoint. `--init` of the image stage accepts it: the model is then built from `--arch` (seeded
random UNets, ReferenceNet a copy of the denoising UNet, as from scratch) with this VAE in it.

Folder layout: vae_config.json (the diffusers AutoencoderKL config, latent scaling factor included)
+ vae.safetensors (the VAE's state dict, fp32).
"""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file, save_file

from aa_engine.errors import WeightsError
from aa_engine.models.animate_anyone import AnimateAnyoneModel

CONFIG_FILE = "vae_config.json"
WEIGHTS_FILE = "vae.safetensors"


def is_vae_product(folder: str | Path) -> bool:
    folder = Path(folder)
    return (folder / WEIGHTS_FILE).is_file() and not (folder / "model.safetensors").is_file()


def save_vae(model: AnimateAnyoneModel, folder: str | Path) -> Path:
    """Write the model's VAE (config with its scaling factor, fp32 weights) to `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.vae.state_dict().items()}, str(folder / WEIGHTS_FILE))
    (folder / CONFIG_FILE).write_text(json.dumps(model.config.vae, indent=2))
    return folder


def vae_config(folder: str | Path) -> dict:
    return json.loads((Path(folder) / CONFIG_FILE).read_text())


def load_vae_into(model: AnimateAnyoneModel, folder: str | Path) -> AnimateAnyoneModel:
    """Replace `model`'s VAE weights by the product's; the architectures must agree (build the model from `vae_config`)."""
    from aa_engine.weights import load_state_strict

    folder = Path(folder)
    saved = vae_config(folder)
    if {k: v for k, v in saved.items() if k != "scaling_factor"} != {k: v for k, v in model.config.vae.items() if k != "scaling_factor"}:
        raise WeightsError(f"The VAE in {folder} has another architecture than the model's.", "Build the model with vae=vae_config(folder).")
    load_state_strict(model.vae, load_file(str(folder / WEIGHTS_FILE)), f"{folder / WEIGHTS_FILE}")
    model.vae.register_to_config(scaling_factor=saved["scaling_factor"])
    model.config.vae["scaling_factor"] = saved["scaling_factor"]
    return model
