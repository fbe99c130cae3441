"""Samplers x steps x guidance interval x feature reuse: cost and quality, side by side in one run.

    nice .venv/engine/bin/python benchmarks/sampler_quality.py                # the table of docs/performance.md
    .venv/engine/bin/python benchmarks/sampler_quality.py --clips 2 --rows ddim:30,dpm++2m:10   # a quick look

On the default model's held-out evaluation clips (aa_engine.evaluation: 12 clips x 8 frames at
the model's native size, seed 42, CFG 3.5, one context window per clip), every row generates every clip with the
engine's own pipeline. For each row: UNet evaluations per clip (a CFG call counts 2, a call that
reuses cached deep features counts as "shallow"), wall time per clip (reference + denoising +
decode), SSIM/PSNR against the ground truth and against the DDIM-30 frames.

The rows run interleaved, clip by clip (every row on clip 1, then every row on clip 2...), so a
change of machine load during the run hits all rows alike. A row is
sampler:steps[:guidance_interval[:feature_reuse]], e.g. dpm++2m:10:0.5:2. "preset:fast" runs the
fast preset as the engine expands it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_ROWS = (
    "ddim:30", "ddim:20", "ddim:10",
    "dpm++2m:20", "dpm++2m:15", "dpm++2m:10", "dpm++2m:8", "dpm++2m:6",
    "unipc:15", "unipc:10", "unipc:8", "unipc:6",
    "euler:20", "euler:10",
    "ddim:30:0.5", "ddim:30:1:2", "ddim:30:0.5:2",
    "dpm++2m:10:0.5", "dpm++2m:10:1:2", "dpm++2m:8:0.5", "unipc:10:0.5", "unipc:8:0.5",
    "preset:fast",
)
BASELINE = "ddim:30"


@dataclass
class Row:
    name: str
    knobs: dict
    seconds: list[float] = field(default_factory=list)
    full_evals: list[int] = field(default_factory=list)
    shallow_evals: list[int] = field(default_factory=list)
    truth: list[dict] = field(default_factory=list)
    versus_baseline: list[dict] = field(default_factory=list)


def parse_row(text: str) -> Row:
    if text.startswith("preset:"):
        return Row(text, {"preset": text.split(":", 1)[1]})
    parts = text.split(":")
    knobs = {"sampler": parts[0], "steps": int(parts[1])}
    if len(parts) > 2:
        knobs["guidance_interval"] = float(parts[2])
    if len(parts) > 3:
        knobs["feature_reuse"] = int(parts[3])
    return Row(text, knobs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default=None, help="default: the shipped default model")
    parser.add_argument("--clips", type=int, default=12)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--guidance", type=float, default=3.5)
    parser.add_argument("--data", default="rich", help="character style of the held-out clips: rich (the shipped 128x192 model's) or flat "
                                                      "(the earlier 64x96 model's)")
    parser.add_argument("--rows", default=",".join(DEFAULT_ROWS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="also write the raw numbers here")
    args = parser.parse_args()

    import numpy as np
    import torch
    from PIL import Image

    from aa_engine.config import GenerationConfig
    from aa_engine.data.dataset import make_clip
    from aa_engine.evaluation.metrics import psnr, ssim
    from aa_engine.pipeline import AnimateAnyonePipeline
    from aa_engine.weights import load_model

    torch.set_num_threads(args.threads)
    model, info = load_model(args.weights)
    width, height = model.config.native_size
    pipe = AnimateAnyonePipeline(model)
    rows = [parse_row(r) for r in args.rows.split(",") if r]
    if rows[0].name != BASELINE:
        rows.insert(0, parse_row(BASELINE))

    counts = {"rows": 0, "deep": 0}
    unet = model.denoising_unet
    unet.conv_in.register_forward_pre_hook(lambda m, a: counts.__setitem__("rows", counts["rows"] + a[0].shape[0]))
    unet.mid_block.resnets[0].register_forward_pre_hook(lambda m, a: counts.__setitem__("deep", counts["deep"] + a[0].shape[0]))

    for i in range(args.clips):
        clip = make_clip("heldout", i, args.frames, width, height, style=args.data)
        reference = Image.fromarray(clip.reference)
        poses = [Image.fromarray(p) for p in clip.poses]
        baseline_video = None
        for row in rows:
            config = GenerationConfig(width=width, height=height, guidance=args.guidance, seed=42, context_frames=args.frames,
                                      context_overlap=0, **row.knobs)
            counts.update(rows=0, deep=0)
            began = time.perf_counter()
            video = np.stack(pipe(reference, poses, config))
            row.seconds.append(time.perf_counter() - began)
            # one "evaluation" = the UNet on one window's frames; a CFG call is two
            row.full_evals.append(counts["deep"] // args.frames)
            row.shallow_evals.append((counts["rows"] - counts["deep"]) // args.frames)
            row.truth.append({"ssim": ssim(video, clip.frames), "psnr": psnr(video, clip.frames)})
            if baseline_video is None:
                baseline_video = video
            row.versus_baseline.append({"ssim": ssim(video, baseline_video), "psnr": psnr(video, baseline_video)})
        print(f"clip {i + 1}/{args.clips} done", file=sys.stderr, flush=True)

    def mean(values):
        return float(np.mean(values))

    base = rows[0]
    base_s, base_ssim, base_psnr = mean(base.seconds), mean([m["ssim"] for m in base.truth]), mean([m["psnr"] for m in base.truth])
    print(f"weights: {info.source} ({info.kind}); {args.clips} held-out clips x {args.frames} frames at {width}x{height}, "
          f"CFG {args.guidance}, seed 42, {args.threads} thread(s)")
    print("| sampler | steps | guidance interval | feature reuse | UNet evals (full + shallow) | s/clip | time vs DDIM-30 "
          "| SSIM vs GT | PSNR vs GT | ΔSSIM | ΔPSNR | SSIM vs DDIM-30 | PSNR vs DDIM-30 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    out = []
    for row in rows:
        resolved = GenerationConfig(**row.knobs).sized_for(model.config)
        s, g_ssim, g_psnr = mean(row.seconds), mean([m["ssim"] for m in row.truth]), mean([m["psnr"] for m in row.truth])
        b_ssim = mean([m["ssim"] for m in row.versus_baseline])
        b_psnr = mean([min(m["psnr"], 99.0) for m in row.versus_baseline])
        full, shallow = mean(row.full_evals), mean(row.shallow_evals)
        label = resolved.sampler + (f" ({row.name})" if row.name.startswith("preset") else "")
        evals = f"{full:.0f}" + (f" + {shallow:.0f}" if shallow else "")
        print(f"| {label} | {resolved.steps} | {resolved.guidance_interval:g} | {resolved.feature_reuse} | {evals} | {s:.2f} | "
              f"{s / base_s:.2f} | {g_ssim:.4f} | {g_psnr:.2f} | {g_ssim - base_ssim:+.4f} | {g_psnr - base_psnr:+.2f} | "
              f"{b_ssim:.4f} | {b_psnr:.2f} |")
        out.append({"row": row.name, "sampler": resolved.sampler, "steps": resolved.steps, "guidance_interval": resolved.guidance_interval,
                    "feature_reuse": resolved.feature_reuse, "full_evals": full, "shallow_evals": shallow, "seconds_per_clip": s,
                    "time_ratio": s / base_s, "ssim_gt": g_ssim, "psnr_gt": g_psnr, "ssim_vs_ddim30": b_ssim, "psnr_vs_ddim30": b_psnr})
    fast = next((r for r in out if r["row"] == "preset:fast"), None)
    if fast is not None:
        ok = fast["time_ratio"] <= 1 / 3 and fast["ssim_gt"] >= base_ssim - 0.01 and fast["psnr_gt"] >= base_psnr - 0.3
        print(f"\nheadline: preset fast = {fast['sampler']} {fast['steps']} steps, guidance interval {fast['guidance_interval']:g}, "
              f"feature reuse {fast['feature_reuse']}: {fast['time_ratio']:.2f}x DDIM-30's wall time, SSIM {fast['ssim_gt'] - base_ssim:+.4f}, "
              f"PSNR {fast['psnr_gt'] - base_psnr:+.2f} dB vs ground truth relative to DDIM-30 -> "
              f"{'meets' if ok else 'MISSES'} the target (<= 1/3 of the time, within 0.01 SSIM and 0.3 dB)")
    if args.json:
        args.json.write_text(json.dumps({"clips": args.clips, "frames": args.frames, "rows": out}, indent=2))


if __name__ == "__main__":
    main()
