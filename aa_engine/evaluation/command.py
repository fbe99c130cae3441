"""The `evaluate` command: `python -m aa_engine evaluate [--weights DIR] --out DIR` (docs/default_model.md)."""

from __future__ import annotations

import argparse

from aa_engine.evaluation.evaluate import ABLATIONS, EvalConfig


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    d = EvalConfig()
    parser.add_argument("--weights", default=None, help="weights folder to evaluate (default: the shipped default model)")
    parser.add_argument("--checkpoint", default=None,
                        help="instead of --weights: a training checkpoint's model.safetensors (RUN/checkpoints/step_NNNNNN/; "
                             "the architecture comes from RUN/model_config.json), to score a run before it ends")
    parser.add_argument("--vae-config", default=None, help="with --checkpoint of a run that has no model_config.json (older runs, v2 architecture): "
                             "the vae_config.json of the VAE product the run started from")
    parser.add_argument("--out", required=True, help="folder for evaluation.md (table), evaluation.json and contact_sheet.png")
    parser.add_argument("--clips", type=int, default=d.clips, help=f"held-out clips (default {d.clips})")
    parser.add_argument("--frames", type=int, default=d.frames, help=f"frames per clip (default {d.frames})")
    parser.add_argument("--width", type=int, default=d.width, help=f"(default {d.width}: the shipped default model's native size)")
    parser.add_argument("--height", type=int, default=d.height, help=f"(default {d.height})")
    parser.add_argument("--data", default=d.data, help=f"character style of the held-out clips: rich (the shipped 128x192 model's) or flat (the earlier 64x96 model's) (default {d.data})")
    parser.add_argument("--steps", type=int, default=d.steps, help=f"DDIM steps (default {d.steps}; a --preset sets its own)")
    parser.add_argument("--preset", default="custom",
                        help="sampler preset as the engine's (aa_contract.settings.PRESETS): fast (DPM-Solver++ 8 steps, guidance on "
                             "the first half; what scripts/demo.sh uses), quality (DDIM 30), or custom (default: DDIM with --steps)")
    parser.add_argument("--guidance", type=float, default=d.guidance, help=f"CFG scale (default {d.guidance})")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--ablations", default=",".join(ABLATIONS), help=f"comma-separated subset of {','.join(ABLATIONS)}")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")


def _load(weights: str | None, ablations: tuple[str, ...]):
    """The model to evaluate and a description of it. A VAE-only stage product (training/vae_product.py)
    has no UNets: it can give only the rows that need none (vae_ceiling, warp_baseline)."""
    from aa_engine.errors import BadRequest
    from aa_engine.training.vae_product import is_vae_product
    from aa_engine.weights import load_model

    if weights and is_vae_product(weights):
        from aa_engine.models import build_model
        from aa_engine.training.config import v2_model_config
        from aa_engine.training.vae_product import load_vae_into, vae_config

        needs_unets = [a for a in ablations if a not in ("vae_ceiling", "warp_baseline")]
        if needs_unets:
            raise BadRequest(f"{weights} holds only a VAE: it cannot give the row(s) {', '.join(needs_unets)}.",
                             "Use --ablations vae_ceiling,warp_baseline (or a full checkpoint).")
        architecture = v2_model_config()
        architecture.vae = vae_config(weights)
        channels = architecture.vae["latent_channels"]
        architecture.unet = dict(architecture.unet, in_channels=channels, out_channels=channels)
        return load_vae_into(build_model(architecture, seed=0), weights).eval(), f"{weights} (VAE only)"
    model, info = load_model(weights)
    return model, f"{info.source} ({info.kind})"


def run_evaluate(args: argparse.Namespace) -> int:
    import torch

    from aa_engine.device import pick_device
    from aa_engine.errors import BadRequest
    from aa_engine.evaluation.evaluate import evaluate, write_report

    if args.threads:
        torch.set_num_threads(args.threads)
    ablations = tuple(a.strip() for a in args.ablations.split(",") if a.strip())
    unknown = [a for a in ablations if a not in ABLATIONS]
    if unknown or not ablations:
        raise BadRequest(f"Unknown ablation(s): {', '.join(unknown) or '(none given)'}.", f"Use a subset of: {', '.join(ABLATIONS)}.")
    if args.clips < 1 or args.frames < 2:
        raise BadRequest("--clips must be at least 1 and --frames at least 2 (the temporal score compares neighbouring frames).")
    from aa_engine.data.dataset import STYLES

    if args.data not in STYLES:
        raise BadRequest(f"Unknown --data {args.data!r}.", f"Use one of: {', '.join(STYLES)}.")
    from aa_contract.settings import PRESETS, expand_preset

    if args.preset not in PRESETS:
        raise BadRequest(f"Unknown --preset {args.preset!r}.", f"Use one of: {', '.join(PRESETS)}.")
    d = EvalConfig()
    sampling = expand_preset({"preset": args.preset, "sampler": d.sampler, "steps": args.steps, "guidance_interval": d.guidance_interval,
                              "feature_reuse": d.feature_reuse})
    config = EvalConfig(clips=args.clips, frames=args.frames, width=args.width, height=args.height, data=args.data, steps=sampling["steps"],
                        guidance=args.guidance, seed=args.seed, sheet_clips=min(4, args.clips), ablations=ablations,
                        sampler=sampling["sampler"], guidance_interval=sampling["guidance_interval"],
                        feature_reuse=sampling["feature_reuse"])
    if args.checkpoint:
        if args.weights:
            raise BadRequest("--checkpoint and --weights are two ways to name the model: give one.",
                             "e.g. --checkpoint RUN/checkpoints/step_001000/model.safetensors")
        from aa_engine.evaluation.denoiser_probe import load_stage_checkpoint

        model, source = load_stage_checkpoint(args.checkpoint, args.vae_config), f"{args.checkpoint} (training checkpoint)"
    else:
        model, source = _load(args.weights, ablations)
    result = evaluate(model, config, pick_device(args.device))
    paths = write_report(result, args.out)
    print(f"weights: {source}; {config.clips} held-out clips x {config.frames} frames at {config.width}x{config.height} ({config.data} characters), "
          f"{config.sampler} {config.steps} steps, guidance {config.guidance} on the first {config.guidance_interval:.0%} of them"
          + (f", feature reuse {config.feature_reuse}" if config.feature_reuse > 1 else "") + f" (preset {args.preset})")
    print(result.table())
    print(f"table: {paths['table']}  contact sheet: {paths['sheet']}")
    return 0
