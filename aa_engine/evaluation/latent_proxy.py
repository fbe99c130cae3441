"""Does a latent space suit diffusion? A small, minutes-long proxy to answer before an hours-long run.

Trains the shipped model's small architecture at 64x96 on rich characters, with the latent layout
and VAE regularisers under test: a VAE from scratch, then stage 1 on it, then measures on held-out
frames the VAE ceiling, the SSIM of 1- and 20-step samples against the true frames (a latent the
UNet cannot denoise gets worse with steps), and the denoiser probe's v-MSE per timestep. Used in
docs/default_model.md (v2, third session) to choose the v2 VAE's regularisers:

    python -m aa_engine.evaluation.latent_proxy --out out/proxy/c16 --latent-channels 16
    python -m aa_engine.evaluation.latent_proxy --out out/proxy/c16sn --latent-channels 16 \\
        --scale-equivariance 1 --latent-noise 0.5 --kl-weight 1e-2

Each takes ~15 min on one thread (600 + 600 steps at batch 8). Results are comparable between
settings only at equal step counts and seeds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch


def proxy_model_dir(out: Path, latent_channels: int) -> Path:
    """The small architecture with `latent_channels`, seeded, saved as a full model (the VAE stage's --init)."""
    from aa_engine.models import build_model
    from aa_engine.training.config import small_model_config
    from aa_engine.training.stages import tie_reference_to_denoising
    from aa_engine.weights import save_checkpoint

    config = small_model_config()
    config.vae["latent_channels"] = latent_channels
    config.unet["in_channels"] = config.unet["out_channels"] = latent_channels
    model = build_model(config, seed=0)
    tie_reference_to_denoising(model)
    return save_checkpoint(model, out / "init")


def run_proxy(out: Path, latent_channels: int = 16, vae_steps: int = 600, image_steps: int = 600, scale_equivariance: float = 0.0,
              latent_noise: float = 0.05, kl_weight: float = 1e-4, width: int = 64, height: int = 96, clips: int = 6,
              batch_size: int = 8) -> dict:
    """Train the VAE and stage 1 in `out`, then measure. Returns (and writes to out/result.json) the scores."""
    from aa_engine.data.dataset import make_clip
    from aa_engine.evaluation.denoiser_probe import probe
    from aa_engine.evaluation.evaluate import vae_roundtrip
    from aa_engine.evaluation.generate import generate_clip
    from aa_engine.evaluation.metrics import ssim
    from aa_engine.training.config import TrainConfig
    from aa_engine.training.trainer import train

    common = dict(data="rich", width=width, height=height, batch_size=batch_size, checkpoint_every=100_000, sample_every=0, log_every=50)
    init = proxy_model_dir(out, latent_channels)
    vae = train(TrainConfig(stage="vae", out=str(out / "vae"), init=str(init), steps=vae_steps, lr=1e-3, warmup=50,
                            scale_equivariance=scale_equivariance, latent_noise=latent_noise, kl_weight=kl_weight, **common))
    model = train(TrainConfig(stage="image", out=str(out / "image"), init=str(vae.model_dir), steps=image_steps, lr=5e-4,
                              warmup=50, **common)).model.eval()
    held_out = [make_clip("heldout", i, 2, width, height, "rich") for i in range(clips)]
    result: dict = {"latent_channels": latent_channels, "scale_equivariance": scale_equivariance, "latent_noise": latent_noise,
                    "kl_weight": kl_weight, "latent_scale": float(model.vae.config.scaling_factor)}
    with torch.no_grad():
        result["vae_ceiling"] = float(np.mean([ssim(vae_roundtrip(model, c.frames), c.frames) for c in held_out]))
        for steps in (1, 20):
            result[f"ssim_{steps}_step"] = float(np.mean([ssim(generate_clip(model, c, steps=steps, guidance=1.0, motion_modules=False),
                                                                c.frames) for c in held_out]))
    result["v_mse"] = {row["t"]: row["v_mse"] for row in probe(model, "rich", width, height, clips)}
    (out / "result.json").write_text(json.dumps(result, indent=1))
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m aa_engine.evaluation.latent_proxy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="run folder (init/, vae/, image/, result.json)")
    parser.add_argument("--latent-channels", type=int, default=16)
    parser.add_argument("--vae-steps", type=int, default=600)
    parser.add_argument("--image-steps", type=int, default=600)
    parser.add_argument("--scale-equivariance", type=float, default=0.0)
    parser.add_argument("--latent-noise", type=float, default=0.05)
    parser.add_argument("--kl-weight", type=float, default=1e-4)
    parser.add_argument("--clips", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = run_proxy(Path(args.out), args.latent_channels, args.vae_steps, args.image_steps, args.scale_equivariance,
                       args.latent_noise, args.kl_weight, clips=args.clips)
    print(f"VAE ceiling SSIM {result['vae_ceiling']:.4f}; samples: 1 step {result['ssim_1_step']:.4f}, 20 steps {result['ssim_20_step']:.4f}")
    print("v-MSE by t: " + ", ".join(f"{t}: {v:.3f}" for t, v in result["v_mse"].items()))


if __name__ == "__main__":
    main()
