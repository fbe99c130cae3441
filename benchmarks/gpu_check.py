"""GPU check at the released model's size: speed, peak memory per memory option, SDPA kernel, fp16 error.

    .venv/engine/bin/python benchmarks/gpu_check.py            # on a machine with a CUDA GPU (< 8 min on an H100)
    .venv/engine/bin/python benchmarks/gpu_check.py --frames 8 --steps 1   # a quicker look

SD-1.5-size random weights with the released checkpoints' architecture and key layout
(tests/engine/test_model_keys.py checks the keys), fp16 on CUDA, 512x768, one 24-frame window with
CFG 3.5, 2 DDIM steps. Prints:
  - s/frame/step of the denoising loop;
  - torch.cuda.max_memory_allocated for each memory option (aa_engine.pipeline.MemoryOptions) and
    decode_batch, next to the estimate of benchmarks/engine_bench.py --memory;
  - the SDPA kernels the UNet's attentions ran (flash, memory-efficient, cuDNN or math);
  - the same run in fp32 on CUDA and the fp16 run's largest latent and pixel difference from it;
  - the waste fixes of docs/performance.md section 2 on the GPU (engine_bench.py --waste's
    comparison: Pose Guider per window and step, one window per UNet call, vs today's pipeline and
    all windows in one call), on a 64-frame shot in three 24-frame windows, 1 step; with
    --compile also the torch.compile path (minutes of compiling).
Without a CUDA device it prints "not measured" and exits 0.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OPTIONS = {  # name -> (MemoryOptions fields, decode_batch)
    "none": ({}, 4),
    "offload_reference": ({"offload_reference": True}, 4),
    "offload_reference+cfg_sequential": ({"offload_reference": True, "cfg_sequential": True}, 4),
    "offload_reference+cfg_sequential+decode_batch 1": ({"offload_reference": True, "cfg_sequential": True}, 1),
    "all + vae_tiling": ({"offload_reference": True, "cfg_sequential": True, "vae_tiling": True}, 1),
}


def random_model(device, dtype, config=None):
    """The SD-1.5-size model (or `config`'s) with random weights, initialised on `device` (on a GPU:
    seconds, not the minutes of torch's default init on a CPU). Weights ~ N(0, 1/fan_in), 1-D
    weights (norms) 1, biases 0: activations stay O(1), so fp16 neither overflows nor underflows."""
    import torch

    from aa_engine.config import ModelConfig
    from aa_engine.models import build_model

    with torch.device("meta"):
        model = build_model(config or ModelConfig.sd15())
    model = model.to_empty(device=device)
    generator = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1:
                p.fill_(1.0) if name.endswith("weight") else p.zero_()
            else:
                p.normal_(0.0, p[0].numel() ** -0.5, generator=generator)
        for module in model.modules():  # buffers (the motion modules' position tables) were left empty by to_empty
            if hasattr(module, "pe") and module.__class__.__name__ == "PositionalEncoding":
                fresh = type(module)(module.pe.shape[-1], module.pe.shape[1])
                module.pe.copy_(fresh.pe)
        for name, buffer in model.named_buffers():
            if "position_ids" in name:
                buffer.copy_(torch.arange(buffer.shape[-1], device=device).expand_as(buffer))
    return model.to(dtype).eval()


def sdpa_kernels(model, run) -> list[str]:
    """Names of the SDPA kernels the profiler sees while `run()` executes."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        run()
    names = sorted({e.key for e in prof.key_averages() if "scaled_dot_product" in e.key or "flash" in e.key.lower()
                    or "efficient_attention" in e.key or "cudnn_attention" in e.key})
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--height", type=int, default=768)
    parser.add_argument("--skip-fp32", action="store_true")
    parser.add_argument("--skip-waste", action="store_true", help="skip the before/after waste-fix comparison")
    parser.add_argument("--compile", action="store_true", help="also time the torch.compile path in the waste comparison")
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here: not measured (run it on a machine with a GPU).")
        return
    from PIL import Image

    from aa_engine.config import GenerationConfig
    from aa_engine.pipeline import AnimateAnyonePipeline
    from aa_engine.pipeline.pipeline import MemoryOptions

    device = torch.device("cuda:0")
    print(f"device: {torch.cuda.get_device_name(device)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    began_all = time.perf_counter()
    reference = Image.new("RGB", (args.width, args.height), (200, 80, 60))
    rng = torch.Generator().manual_seed(1)
    poses = [Image.fromarray((torch.rand(args.height, args.width, 3, generator=rng) * 255).byte().numpy()) for _ in range(args.frames)]
    base = dict(width=args.width, height=args.height, steps=args.steps, context_frames=args.frames, context_overlap=0, seed=42)

    def run(pipe, config):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        prepared = pipe.prepare(reference, poses, config)
        torch.cuda.synchronize()
        t1 = time.perf_counter()
        latents = pipe.denoise(prepared, pipe.initial_latents(args.frames, config), config)
        torch.cuda.synchronize()
        t2 = time.perf_counter()
        frames = [image for _, image in pipe.decode(latents, config)]
        torch.cuda.synchronize()
        t3 = time.perf_counter()
        return {"latents": latents.float().cpu(), "frames": frames, "prepare_s": t1 - t0, "denoise_s": t2 - t1, "decode_s": t3 - t2,
                "peak_gb": torch.cuda.max_memory_allocated() / 2**30}

    model = random_model(device, torch.float16)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"SD-1.5-size random model: {params:.0f} M parameters, fp16 weights {params * 2 / 1024:.2f} GB; "
          f"{args.width}x{args.height}, {args.frames} frames (one window), CFG 3.5, {args.steps} DDIM steps")
    print(f"{'memory option':52} {'peak GB':>8} {'s/frame/step':>12} {'prepare s':>9} {'decode s':>8}")
    results = {}
    for name, (fields, decode_batch) in OPTIONS.items():
        pipe = AnimateAnyonePipeline(model, device, torch.float16, memory=MemoryOptions(**fields))
        config = GenerationConfig(**base, decode_batch=decode_batch)
        run(pipe, config)  # warm-up: kernels, cuDNN autotuning, allocator
        r = results[name] = run(pipe, config)
        print(f"{name:52} {r['peak_gb']:8.2f} {r['denoise_s'] / (args.frames * args.steps):12.3f} {r['prepare_s']:9.2f} {r['decode_s']:8.2f}",
              flush=True)
    pipe = AnimateAnyonePipeline(model, device, torch.float16)
    config = GenerationConfig(**{**base, "steps": 1})
    prepared = pipe.prepare(reference, poses, config)
    latents = pipe.initial_latents(args.frames, config)
    kernels = sdpa_kernels(model, lambda: pipe.denoise(prepared, latents, config))
    print(f"SDPA kernels in the denoising UNet: {', '.join(kernels) or '(none seen)'}")
    if not args.skip_fp32:
        import numpy as np

        model32 = model.float()
        pipe32 = AnimateAnyonePipeline(model32, device, torch.float32)
        r32 = run(pipe32, GenerationConfig(**base))
        r16 = results["none"]
        pixel = max(int(np.abs(a.astype(int) - b.astype(int)).max()) for a, b in zip(r16["frames"], r32["frames"]))
        print(f"fp32 on CUDA: {r32['denoise_s'] / (args.frames * args.steps):.3f} s/frame/step, peak {r32['peak_gb']:.2f} GB; "
              f"fp16 vs fp32: largest latent difference {float((r16['latents'] - r32['latents']).abs().max()):.2e}, "
              f"largest pixel difference {pixel} levels")
    if not args.skip_waste:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from engine_bench import print_waste, waste_compare

        model = model.half()
        torch.cuda.empty_cache()
        print_waste(waste_compare("sd15", frames=64, window=24, overlap=4, steps=1, device="cuda:0", repeats=3,
                                  compile_too=args.compile, model=model))
    print(f"total {time.perf_counter() - began_all:.0f} s")


if __name__ == "__main__":
    main()
