"""The `train` command: `python -m aa_engine train --stage vae|image|motion --out DIR ...` (docs/default_model.md)."""

from __future__ import annotations

import argparse
import dataclasses
import logging

from aa_engine.training.config import TrainConfig

HELP = {
    "stage": "vae (the small VAE, first), image (stage 1: UNets + pose guider), motion (stage 2: motion modules), decoder (VAE decoder only)",
    "out": "run folder: checkpoints/, samples/, log.jsonl, model/ (the final weights)",
    "init": "checkpoint folder of the previous stage (its out/model), required for image and motion",
    "unets_from": "image stage on a VAE-only --init: take the UNets, ReferenceNet, Pose Guider and CLIP tower from this model "
                  "folder instead of --arch's random ones (a warm start after the VAE's latent space changed)",
    "arch": "architecture when starting from scratch (or from a VAE-only --init): small (the 64x96 default model's), v2 (128x192, 16 latent channels), v2-wide (v2, UNets 64/128 wide) or tiny",
    "data": "synthetic character style: flat (the 64x96 model's data) or rich (shading, textures, hair, props: v2)",
    "lr_schedule": "constant (after warmup) or cosine (down to 10%% of --lr at --steps)",
    "crop": "vae/decoder stages: train on random square crops of this size (multiple of 8; 0 = whole frames)",
    "ssim_weight": "vae/decoder stages: weight of a (1 - SSIM) loss term beside L1 + MSE (0 = off)",
    "scale_equivariance": "vae stage: weight of a term asking the decoder to turn the 2x average-pooled latent into the "
                          "2x average-pooled image; it keeps fine detail out of the latent that the image does not have, "
                          "which makes the latent easier to denoise (0 = off)",
    "sample_latents": "decoder stage: a folder from python -m aa_engine.training.sample_latents (the model's own final "
                      "latents of training clips); the decoder also learns to turn those into the true frames",
    "sample_weight": "decoder stage with --sample-latents: weight of their decoding loss beside the reconstruction loss (default 1)",
    "encode_bf16": "image/motion stages: the frozen VAE encodes the training frames under bfloat16 autocast; on CPUs with "
                   "avx512_bf16 or AMX (and on GPUs) the encoding takes half the time, about 40%% of a v2 stage-1 step, and "
                   "the latents stay within 0.5%% of full precision",
    "ema_decay": "keep an exponential moving average of the trained weights (0.999: over ~1000 steps; 0 = off): each "
                 "checkpoint gets ema.safetensors (evaluate --checkpoint scores it) and model/ holds the average",
    "mixed_precision": "no (float32) or bf16: mixed precision, every forward pass under bfloat16 autocast with "
                       "float32 weights and optimizer; a v2-wide stage-1 step takes ~20%% less time on this CPU (avx512_bf16)",
    "frames": "frames per training sample: 1 for vae/image, a clip length (e.g. 8) for motion",
    "first_clip": "index of the first training clip (default 0). Step s trains on the --batch-size clips from "
                  "FIRST_CLIP + s x batch size, whatever --seed is; a run that goes on from another's weights (a cosine "
                  "tail, a lower learning rate) passes that run's steps x batch size so it sees clips the other never did",
    "snr_gamma": "min-SNR-gamma loss weighting; 0 = off (plain v-prediction MSE)",
    "cpu": "train on the CPU even if a GPU is available",
}


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        value = getattr(defaults, f.name)
        if isinstance(value, bool):
            parser.add_argument(flag, action="store_true", help=HELP.get(f.name, ""))
        else:
            kind = int if isinstance(value, int) else float if isinstance(value, float) else str
            parser.add_argument(flag, type=kind, default=value, required=f.name in ("stage", "out"),
                                help=HELP.get(f.name, f"(default {value})"))
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--no-resume", action="store_true", help="start over even if out/checkpoints/ has a checkpoint")


def run_train(args: argparse.Namespace) -> int:
    import torch

    from aa_engine.training.trainer import train

    if args.threads:
        torch.set_num_threads(args.threads)
    config = TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
    logging.getLogger("aa_engine").setLevel(logging.INFO)
    result = train(config, resume=not args.no_resume)
    print(f"stage {config.stage}: {result.steps} steps in {result.seconds:.0f} s, last loss {result.final_loss:.4f}; weights in {result.model_dir}")
    return 0
