"""Engine speed and memory: seconds per frame per denoising step, peak memory, and where the time goes.

    .venv/engine/bin/python benchmarks/engine_bench.py                 # tiny + medium on CPU (+ sd15 on CUDA)
    .venv/engine/bin/python benchmarks/engine_bench.py --configs tiny --frames 8 --steps 2
    .venv/engine/bin/python benchmarks/engine_bench.py --waste         # per-evaluation time before/after the waste fixes
    .venv/engine/bin/python benchmarks/engine_bench.py --waste --compile   # ... and with torch.compile (slow to compile)
    .venv/engine/bin/python benchmarks/engine_bench.py --memory        # peak memory at SD-1.5 size per memory option

Each configuration runs in a fresh subprocess so its peak memory is its own. Random weights:
speed does not depend on the values. Prints one table, then ratios against the first row.

--waste runs, in one process and interleaved (before, after, before, after, ... so that a change of
machine load hits both alike), the same shot through the pipeline as it was before the waste fixes
of issue 11 (the Pose Guider run per window per step, one window per UNet call, cross-attention to
the one CLIP token through the full attention) and as it is now (Pose Guider once per shot,
`context_batch` windows per call, the single-token shortcut), and prints the per-evaluation time
of each (reference pass + pose features + denoising, over the UNet evaluations; a CFG call counts
2), their ratio and the largest difference between the two runs' final latents. On the CPU the
time is the process's CPU time (run it with --threads 1): on a shared machine wall time mostly
measures the other processes; on CUDA it is wall time.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

MEDIUM = {
    "unet": {
        "sample_size": 16, "in_channels": 4, "out_channels": 4,
        "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
        "block_out_channels": [64, 128, 256], "layers_per_block": 2, "cross_attention_dim": 256,
        "attention_head_dim": 8, "norm_num_groups": 32,
    },
    "vae": {
        "in_channels": 3, "out_channels": 3, "down_block_types": ["DownEncoderBlock2D"] * 4,
        "up_block_types": ["UpDecoderBlock2D"] * 4, "block_out_channels": [32, 64, 128, 128],
        "layers_per_block": 1, "latent_channels": 4, "norm_num_groups": 32, "sample_size": 128, "scaling_factor": 0.18215,
    },
    "image_encoder": {"hidden_size": 128, "intermediate_size": 512, "num_hidden_layers": 4, "num_attention_heads": 4,
                      "patch_size": 16, "image_size": 224, "projection_dim": 256},
    "name": "medium",
}
# config name -> (default width, height)
SIZES = {"tiny": (64, 64), "medium": (128, 192), "sd15": (512, 768)}


def model_config(name: str):
    from aa_engine.config import ModelConfig

    if name == "tiny":
        return ModelConfig.tiny()
    if name == "medium":
        return ModelConfig.from_dict(MEDIUM)
    return ModelConfig.sd15()


def run_one(name: str, frames: int, steps: int, device: str) -> dict:
    import torch
    from PIL import Image

    from aa_engine.config import GenerationConfig
    from aa_engine.models import build_model
    from aa_engine.pipeline import AnimateAnyonePipeline

    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    width, height = SIZES[name]
    model = build_model(model_config(name), seed=0, randomize_zero_init=True)
    pipe = AnimateAnyonePipeline(model, device, dtype)
    # one window of up to 24 frames (the overlap only matters between windows)
    config = GenerationConfig(width=width, height=height, steps=steps, context_frames=min(frames, 24),
                              context_overlap=min(4, min(frames, 24) - 1))
    reference = Image.new("RGB", (width, height), (200, 80, 60))
    poses = [Image.new("RGB", (width, height)) for _ in range(frames)]

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    # warm-up (allocators, kernels) on one frame
    pipe(reference, poses[:1], GenerationConfig(width=width, height=height, steps=1))
    t0 = time.perf_counter()
    prepared = pipe.prepare(reference, poses, config)
    sync()
    t1 = time.perf_counter()
    latents = pipe.denoise(prepared, pipe.initial_latents(frames, config), config)
    sync()
    t2 = time.perf_counter()
    list(pipe.decode(latents, config))
    sync()
    t3 = time.perf_counter()
    if device.startswith("cuda"):
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    total = t3 - t0
    params = sum(p.numel() for p in model.parameters()) / 1e6
    return {
        "config": name, "device": device, "size": f"{width}x{height}", "frames": frames, "steps": steps, "params_m": round(params, 2),
        "s_per_frame_step": (t2 - t1) / (frames * steps), "total_s": total, "peak_mb": peak_mb,
        "reference_share": (t1 - t0) / total, "unet_share": (t2 - t1) / total, "vae_share": (t3 - t2) / total,
    }


def legacy_pipeline_class():
    """The pipeline as it was before the waste fixes: the Pose Guider on every window at every
    step, one window per UNet call (the rest of the pipeline is today's)."""
    import torch

    from aa_engine.errors import Cancelled
    from aa_engine.pipeline import AnimateAnyonePipeline

    class LegacyPipeline(AnimateAnyonePipeline):
        def shot_pose_features(self, poses, config):
            return None  # not computed up front: per window and step, below

        def predict_windows(self, prepared, latents, t, windows, config, should_cancel=None):
            model = self.model
            latents = latents.to(self.device, torch.float32)
            for frames in windows:
                if should_cancel is not None and should_cancel():
                    raise Cancelled()
                window = latents[:, :, frames].to(self.dtype)
                pose_features = model.pose_features(prepared.poses[frames].to(self.device, self.dtype))
                cond, uncond = model.predict(window, t.to(self.device), prepared.context, pose_features, prepared.uncond_context,
                                             reference=prepared.reference)
                if uncond is not None:
                    cond = uncond + config.guidance * (cond - uncond)
                yield cond

    return LegacyPipeline


def waste_compare(name: str, frames: int, window: int, overlap: int, steps: int, device: str, repeats: int, compile_too: bool,
                  model=None) -> dict:
    """Per-evaluation time before vs after the waste fixes, on one shot (see the module docstring).

    model: an already built model of config `name` on `device` (gpu_check.py passes its SD-1.5-size
    one, which takes minutes to build on a CPU); None builds a seeded random one."""
    import torch
    from PIL import Image

    from aa_engine.config import GenerationConfig
    from aa_engine.models import build_model
    from aa_engine.models.reference_attention import CrossAttention
    from aa_engine.pipeline import AnimateAnyonePipeline
    from aa_engine.pipeline.context_windows import context_windows

    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    width, height = SIZES[name]
    if model is None:
        model = build_model(model_config(name), seed=0, randomize_zero_init=True)
    windows = len(context_windows(frames, window, overlap))
    config = GenerationConfig(width=width, height=height, steps=steps, context_frames=window, context_overlap=overlap)
    after_config = GenerationConfig(width=width, height=height, steps=steps, context_frames=window, context_overlap=overlap,
                                    context_batch=windows)
    reference = Image.new("RGB", (width, height), (200, 80, 60))
    rng = torch.Generator().manual_seed(1)
    poses = [Image.fromarray((torch.rand(height, width, 3, generator=rng) * 255).byte().numpy()) for _ in range(frames)]
    evaluations = steps * windows * (2 if config.do_cfg else 1)
    after_one = GenerationConfig(width=width, height=height, steps=steps, context_frames=window, context_overlap=overlap)
    variants = {
        "before": (legacy_pipeline_class()(model, device, dtype), config, False),
        "after": (AnimateAnyonePipeline(model, device, dtype), after_one, True),
        f"after, context_batch {windows}": (AnimateAnyonePipeline(model, device, dtype), after_config, True),
    }
    if compile_too:
        variants["after+compile"] = (AnimateAnyonePipeline(model, device, dtype, compile=True), after_config, True)

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def run(variant):
        pipe, cfg, shortcut = variants[variant]
        CrossAttention.single_token_shortcut = shortcut
        try:
            sync()
            began, began_cpu = time.perf_counter(), time.process_time()
            prepared = pipe.prepare(reference, poses, cfg)
            latents = pipe.denoise(prepared, pipe.initial_latents(frames, cfg), cfg)
            sync()
            clock = time.perf_counter() - began if device.startswith("cuda") else time.process_time() - began_cpu
            return clock, latents
        finally:
            CrossAttention.single_token_shortcut = True

    times: dict[str, list[float]] = {v: [] for v in variants}
    latents = {}
    first_call = {}
    for variant in variants:  # warm-up (and, for compile, the compilation)
        first_call[variant], _ = run(variant)
    for _ in range(repeats):
        for variant in variants:
            seconds, latents[variant] = run(variant)
            times[variant].append(seconds)
    best = {v: min(t) / evaluations for v, t in times.items()}
    batched = f"after, context_batch {windows}"
    return {
        "config": name, "device": device, "size": f"{width}x{height}", "frames": frames, "windows": windows, "steps": steps,
        "evaluations": evaluations, "per_eval_s": best, "all_s": times, "first_call_s": first_call,
        "ratio": best["before"] / best["after"], "ratio_batched": best["before"] / best[batched],
        "ratio_compile": best["before"] / best["after+compile"] if compile_too else None,
        "max_latent_diff": float((latents["after"] - latents["before"]).abs().max()),
        "max_latent_diff_compile": float((latents["after+compile"] - latents["before"]).abs().max()) if compile_too else None,
    }


def print_waste(r: dict) -> None:
    clock = "wall" if r["device"].startswith("cuda") else "CPU"
    print(f"waste fixes, {r['config']} ({r['size']}, {r['frames']} frames in {r['windows']} windows, {r['steps']} steps, CFG) "
          f"on {r['device']}: {r['evaluations']} UNet evaluations per run, best of {len(r['all_s']['before'])} interleaved runs, {clock} time")
    for variant, seconds in r["per_eval_s"].items():
        runs = ", ".join(f"{t:.2f}" for t in r["all_s"][variant])
        print(f"  {variant:26} {seconds:8.3f} s/evaluation   (runs: {runs} s; first call {r['first_call_s'][variant]:.1f} s)")
    print(f"  ratio before/after: x{r['ratio']:.2f}, with all windows in one call x{r['ratio_batched']:.2f}; "
          f"largest latent difference {r['max_latent_diff']:.1e}")
    if r["ratio_compile"] is not None:
        print(f"  ratio before/after+compile: x{r['ratio_compile']:.2f}; largest latent difference {r['max_latent_diff_compile']:.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default=None, help="comma-separated: tiny, medium, sd15 (default: tiny,medium and sd15 on CUDA)")
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--waste", action="store_true", help="per-evaluation time before vs after the waste fixes (medium config)")
    parser.add_argument("--compile", action="store_true", help="with --waste: also the torch.compile path")
    parser.add_argument("--memory", action="store_true",
                        help="the peak-memory estimate at SD-1.5 size per memory option, and its validation (benchmarks/memory_estimate.py)")
    parser.add_argument("--repeats", type=int, default=3, help="with --waste: interleaved timed runs of each variant")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.memory:
        from memory_estimate import report

        report(24, with_validation=True)
        return
    if args.waste:
        name = (args.configs or "medium").split(",")[0]
        print_waste(waste_compare(name, frames=16, window=8, overlap=4, steps=args.steps, device=args.device, repeats=args.repeats,
                                  compile_too=args.compile))
        return
    if args.one:
        print(json.dumps(run_one(args.one, args.frames, args.steps, args.device)))
        return
    import torch

    runs = [(c, args.device) for c in (args.configs or "tiny,medium").split(",")]
    if args.configs is None and torch.cuda.is_available():
        runs.append(("sd15", "cuda"))
    rows = []
    for name, device in runs:
        cmd = [sys.executable, __file__, "--one", name, "--frames", str(args.frames), "--steps", str(args.steps), "--device", device]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode:
            print(f"{name}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    header = f"{'config':8} {'device':7} {'size':9} {'params(M)':>9} {'frames':>6} {'steps':>5} {'s/frame/step':>12} {'total s':>8} {'peak MB':>8} {'ref%':>5} {'unet%':>6} {'vae%':>5}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['config']:8} {r['device']:7} {r['size']:9} {r['params_m']:9.2f} {r['frames']:6d} {r['steps']:5d} {r['s_per_frame_step']:12.4f} "
              f"{r['total_s']:8.2f} {r['peak_mb']:8.0f} {100 * r['reference_share']:5.1f} {100 * r['unet_share']:6.1f} {100 * r['vae_share']:5.1f}")
    if len(rows) > 1:
        base = rows[0]
        print(f"\nratios vs {base['config']}:")
        for r in rows[1:]:
            print(f"  {r['config']}: s/frame/step x{r['s_per_frame_step'] / base['s_per_frame_step']:.1f}, peak memory x{r['peak_mb'] / base['peak_mb']:.1f}")


if __name__ == "__main__":
    main()
