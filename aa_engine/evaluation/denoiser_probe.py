"""How well the denoising UNet removes noise at fixed timesteps: a quick look into a training run.

For a few held-out frames, the true latent x0 is noised to x_t at each timestep t, the model predicts
v (with its reference and pose conditions, no guidance), and the x0 that v implies is compared with
the true one. t near 0 asks "can it clean a little noise", t = 999 (zero SNR) "can it draw the frame
from the reference and the pose alone". Used in docs/default_model.md to compare v2's stage 1 with
the shipped model.

    python -m aa_engine.evaluation.denoiser_probe --weights aa_engine/default_model --data flat --width 64 --height 96
    python -m aa_engine.evaluation.denoiser_probe --checkpoint out/train_v2/image/checkpoints/step_002000/model.safetensors \\
        --vae-config out/train_v2/v2_vae_wide_4100/vae_config.json --data rich --width 128 --height 192
    python -m aa_engine.evaluation.denoiser_probe --weights out/train_v2/image/model --drift   # + sampling drift
"""

from __future__ import annotations

import argparse
import json

import torch

TIMESTEPS = (50, 250, 500, 750, 999)


def load_stage_checkpoint(path: str, vae_config: str | None = None):
    """A training checkpoint's `model.safetensors` (keys `model.<part>...`) as a model. The architecture
    is the run's model_config.json (RUN/checkpoints/step_N/model.safetensors -> RUN/model_config.json,
    written by the trainer); runs older than that file are the v2 architecture with the VAE of
    `vae_config` (the vae_config.json of the VAE product the run started from)."""
    from pathlib import Path

    from safetensors.torch import load_file

    from aa_engine.config import ModelConfig
    from aa_engine.errors import BadRequest
    from aa_engine.models import build_model
    from aa_engine.training.config import v2_model_config
    from aa_engine.training.trainer import MODEL_CONFIG_FILE
    from aa_engine.weights import load_state_strict

    if not Path(path).is_file():
        run = Path(path).parent.parent
        saved = sorted(p.name for p in run.glob("step_*") if (p / "model.safetensors").is_file()) if run.is_dir() else []
        raise BadRequest(f"No training checkpoint at {path}.",
                         f"This run has {', '.join(saved[-3:])}{' (the newest three)' if len(saved) > 3 else ''}." if saved else
                         "Give RUN/checkpoints/step_NNNNNN/model.safetensors of a run that has saved one (training --checkpoint-every).")
    parents = Path(path).resolve().parents
    run_config = parents[2] / MODEL_CONFIG_FILE if len(parents) > 2 else None
    if run_config is not None and run_config.is_file():
        config = ModelConfig.load(run_config)
    elif vae_config:
        config = v2_model_config()
        config.vae = json.loads(open(vae_config).read())
    else:
        raise BadRequest(f"{path}: its run folder has no {MODEL_CONFIG_FILE}, so the architecture is unknown.",
                         "Pass --vae-config (the vae_config.json of the VAE product the run started from) for a v2 run.")
    model = build_model(config, seed=0)
    state = {k[len("model."):]: v for k, v in load_file(path).items() if k.startswith("model.")}
    load_state_strict(model, state, path)
    model.vae.register_to_config(scaling_factor=config.vae["scaling_factor"])
    return model.eval()


def probe(model, data: str, width: int, height: int, clips: int = 4, timesteps=TIMESTEPS, seed: int = 0) -> list[dict]:
    """Per timestep: v-MSE and the RMS error of the implied x0 on `clips` held-out frames; x0's std."""
    from aa_engine.data.dataset import make_batch
    from aa_engine.models.video_unet import video_forward
    from aa_engine.training.config import TrainConfig
    from aa_engine.training.objectives import add_noise, v_target
    from aa_engine.training.stages import DiffusionStage

    stage = DiffusionStage(model, TrainConfig(stage="image", width=width, height=height), use_motion=False)
    batch = make_batch("heldout", list(range(clips)), 1, width, height, data)
    rows = []
    with torch.no_grad():
        ref_latents, context = stage.conditions(batch, torch.device("cpu"))
        x0 = model.encode_latents(batch.targets.flatten(0, 1)).unsqueeze(2)  # (n, c, 1, h, w)
        reference = model.reference_tokens(ref_latents, context).for_batch(0)
        poses = model.pose_guider(batch.poses.flatten(0, 1)).unsqueeze(2)
        noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
        for t in timesteps:
            ts = torch.full((clips,), t)
            noisy = add_noise(x0, noise, ts, stage.ac)
            v = video_forward(model.denoising_unet, noisy, ts, context, poses, False, reference)
            a = stage.ac[t]
            x0_hat = a.sqrt() * noisy - (1 - a).sqrt() * v
            rows.append({"t": t, "v_mse": float((v - v_target(x0, noise, ts, stage.ac)).pow(2).mean()),
                         "x0_rmse": float((x0_hat - x0).pow(2).mean().sqrt()), "x0_std": float(x0.std())})
    return rows


def sampling_drift(model, data: str, width: int, height: int, clips: int = 4, step_counts=(1, 5, 20), seed: int = 42) -> dict[int, float]:
    """Mean SSIM of the engine's samples (no guidance, no motion modules) against the VAE's own round
    trip of the true frame, per number of DDIM steps.

    A denoiser that is good at high noise but invents detail at mid and low noise gives its best
    picture in one step (the zero-SNR x0 estimate) and a worse one the more steps it takes: v2's
    stage 1 at 3000 steps gave 0.73 in one step and 0.35 in 20 (docs/default_model.md). A healthy
    model gets better, or stays level, with steps.
    """
    import numpy as np

    from aa_engine.data.dataset import make_clip
    from aa_engine.evaluation.evaluate import vae_roundtrip
    from aa_engine.evaluation.generate import generate_clip
    from aa_engine.evaluation.metrics import ssim

    held_out = [make_clip("heldout", i, 1, width, height, data) for i in range(clips)]
    truths = [vae_roundtrip(model, clip.frames) for clip in held_out]
    return {steps: float(np.mean([ssim(generate_clip(model, clip, steps=steps, guidance=1.0, seed=seed, motion_modules=False), truth)
                                  for clip, truth in zip(held_out, truths)]))
            for steps in step_counts}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m aa_engine.evaluation.denoiser_probe", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--weights", help="a model folder (or random-tiny)")
    source.add_argument("--checkpoint", help="a training checkpoint's model.safetensors (RUN/checkpoints/step_N/; the "
                        "architecture comes from RUN/model_config.json)")
    parser.add_argument("--vae-config", help="with --checkpoint of a run without model_config.json: the vae_config.json of its VAE")
    parser.add_argument("--data", default="rich", help="flat or rich held-out characters (default rich)")
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--height", type=int, default=192)
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--drift", action="store_true",
                        help="also sample with 1, 5 and 20 DDIM steps and compare each with the VAE round trip (SSIM)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.checkpoint:
        from aa_engine.errors import BadRequest

        try:
            model = load_stage_checkpoint(args.checkpoint, args.vae_config)
        except BadRequest as error:
            parser.error(f"{error} {error.hint}")
    else:
        from aa_engine.weights import load_model

        model = load_model(args.weights)[0].eval()
    print("| t | v-MSE | x0 RMS error | x0 std |\n|---|---|---|---|")
    for row in probe(model, args.data, args.width, args.height, args.clips):
        print(f"| {row['t']} | {row['v_mse']:.3f} | {row['x0_rmse']:.3f} | {row['x0_std']:.3f} |")
    if args.drift:
        print("\n| DDIM steps | SSIM against the VAE round trip |\n|---|---|")
        for steps, value in sampling_drift(model, args.data, args.width, args.height, args.clips).items():
            print(f"| {steps} | {value:.4f} |")


if __name__ == "__main__":
    main()
