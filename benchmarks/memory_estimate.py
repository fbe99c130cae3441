"""Peak device memory of a generation, estimated by tracing live tensor bytes (no GPU needed).

    .venv/engine/bin/python benchmarks/memory_estimate.py             # SD-1.5 size, fp16, 512x768, 24 frames, CFG
    .venv/engine/bin/python benchmarks/memory_estimate.py --validate  # + the check against measured CPU peaks

Method. The model is built on PyTorch's `meta` device (shapes and dtypes, no memory), and each phase
of a generation runs under a dispatch mode that sees every tensor an operation creates: it adds the
bytes of each new storage when it appears and subtracts them when the last tensor using it is freed,
so its maximum is the peak of live tensor bytes, what `torch.cuda.max_memory_allocated` counts. The
phases and what is on the device in each (aa_engine.pipeline.MemoryOptions):
  reference  CLIP + VAE encoder + ReferenceNet on the reference, Pose Guider on one window of maps
  denoise    one UNet call on a 24-frame window (both CFG halves in one batch, or one after the other)
  decode     the VAE decoder on decode_batch frames (whole frames, or tiles)
peak = max over phases of (weights on the device in that phase + tensors kept between phases (the
reference tokens, the latents) + the phase's peak of live activations).

Not counted: kernels' private workspaces (cuDNN convolution workspace, flash-attention scratch),
the caching allocator's rounding and fragmentation, and the CUDA context (~0.3-0.5 GB, outside
max_memory_allocated). benchmarks/gpu_check.py measures the real peak on a GPU.

Validation (--validate): the same trace with real tensors on the CPU, at the medium benchmark size,
next to the process's measured peak resident memory (VmHWM, reset before each phase through
/proc/self/clear_refs), at 8 and 16 frames.
"""

from __future__ import annotations

import argparse
import gc
import sys
import weakref
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from torch.utils._pytree import tree_leaves  # noqa: E402

GB = 2**30


class LiveBytes(TorchDispatchMode):
    """Counts the bytes of the storages created inside the mode while they are alive; `peak` is the
    maximum (relative to entering)."""

    def __init__(self):
        super().__init__()
        self.live = 0
        self.peak = 0
        self._refs: dict[int, int] = {}

    def _free(self, key: int, nbytes: int) -> None:
        self._refs[key] -= 1
        if self._refs[key] == 0:
            del self._refs[key]
            self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        known = {id(t) for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor) or id(t) in known:
                continue
            storage = t.untyped_storage()
            key, nbytes = storage._cdata, storage.nbytes()
            if key not in self._refs:
                self._refs[key] = 0
                self.live += nbytes
                self.peak = max(self.peak, self.live)
            self._refs[key] += 1
            weakref.finalize(t, self._free, key, nbytes)
        return out


def _flash_like_sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **kwargs):
    """Stands in for SDPA while tracing on `meta`: there PyTorch has no fused kernel and falls back
    to the math path, which materialises the (queries x keys) matrix that the GPU's flash and
    memory-efficient kernels never hold. This allocates what those kernels return: the output and
    the per-row log-sum-exp (fp32)."""
    torch.empty(query.shape[:-1], dtype=torch.float32, device=query.device)  # logsumexp, freed at once
    return torch.empty(*query.shape[:-1], value.shape[-1], dtype=query.dtype, device=query.device)


class _fused_attention_on_meta:
    def __init__(self, device):
        self.active = str(device) == "meta"

    def __enter__(self):
        if self.active:
            self.saved = torch.nn.functional.scaled_dot_product_attention
            torch.nn.functional.scaled_dot_product_attention = _flash_like_sdpa

    def __exit__(self, *exc):
        if self.active:
            torch.nn.functional.scaled_dot_product_attention = self.saved


def _bytes(module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters()) + sum(b.numel() * b.element_size() for b in module.buffers())


def trace_phases(model, device, dtype, width: int, height: int, frames: int, cfg_sequential: bool, decode_batch: int,
                 vae_tiling: bool) -> dict:
    """Peak live activation bytes of each phase, and the bytes kept between phases."""
    from aa_engine.models.animate_anyone import AnimateAnyoneModel  # noqa: F401  (the model's methods below)

    with _fused_attention_on_meta(device):
        return _trace_phases(model, device, dtype, width, height, frames, cfg_sequential, decode_batch, vae_tiling)


def _trace_phases(model, device, dtype, width, height, frames, cfg_sequential, decode_batch, vae_tiling) -> dict:
    out = {}
    h, w = height // 8, width // 8
    channels = model.vae.config.latent_channels
    with torch.no_grad():
        clip_size = model.image_encoder.config.image_size
        image = torch.zeros(1, 3, height, width, device=device, dtype=dtype)
        with LiveBytes() as mode:
            context = model.encode_context(torch.zeros(1, 3, clip_size, clip_size, device=device, dtype=dtype))
            reference = model.reference_tokens(model.encode_latents(image), context)
            model.pose_features(torch.zeros(frames, 3, height, width, device=device, dtype=dtype))
        out["reference"] = mode.peak
        kept = sum(t.numel() * t.element_size() for t in reference.tokens.values())
        out["kept"] = kept + frames * channels * h * w * 4 * 3  # tokens; latents, window average, model input (fp32)
        latents = torch.zeros(1, channels, frames, h, w, device=device, dtype=dtype)
        pose = torch.zeros(1, model.denoising_unet.config.block_out_channels[0], frames, h, w, device=device, dtype=dtype)
        t = torch.tensor(500, device=device)
        uncond = torch.zeros_like(context)
        with LiveBytes() as mode:
            if cfg_sequential:
                model.predict(latents, t, context, pose, reference=reference)
                model.predict(latents, t, uncond, pose)
            else:
                model.predict(latents, t, context, pose, uncond, reference=reference)
        out["denoise"] = mode.peak
        batch = torch.zeros(decode_batch, channels, h, w, device=device, dtype=dtype)
        if vae_tiling:
            model.vae.enable_tiling()
        try:
            with LiveBytes() as mode:
                model.decode(batch)
        finally:
            model.vae.disable_tiling()
        out["decode"] = mode.peak
    return out


def estimate(model, device, dtype, width, height, frames, offload_reference, cfg_sequential, decode_batch, vae_tiling) -> dict:
    phases = trace_phases(model, device, dtype, width, height, frames, cfg_sequential, decode_batch, vae_tiling)
    reference_parts = _bytes(model.reference_unet) + _bytes(model.image_encoder) + _bytes(model.vae.encoder) + _bytes(model.vae.quant_conv or torch.nn.Module())
    denoising_parts = _bytes(model.denoising_unet)
    always = _bytes(model.pose_guider) + _bytes(model.vae.decoder) + _bytes(model.vae.post_quant_conv or torch.nn.Module())
    if offload_reference:
        weights = {"reference": reference_parts + always, "denoise": denoising_parts + always, "decode": denoising_parts + always}
    else:
        weights = dict.fromkeys(("reference", "denoise", "decode"), reference_parts + denoising_parts + always)
    kept = {"reference": 0, "denoise": phases["kept"], "decode": phases["kept"]}
    totals = {p: weights[p] + kept[p] + phases[p] for p in ("reference", "denoise", "decode")}
    worst = max(totals, key=totals.get)
    return {"peak": totals[worst], "phase": worst, "totals": totals, "weights": weights, "activations": phases}


COMBINATIONS = [  # (offload_reference, cfg_sequential, decode_batch, vae_tiling)
    (False, False, 4, False),
    (True, False, 4, False),
    (False, True, 4, False),
    (True, True, 4, False),
    (True, True, 1, False),
    (True, True, 1, True),
]


def label(offload, sequential, decode_batch, tiling) -> str:
    parts = (["offload_reference"] if offload else []) + (["cfg_sequential"] if sequential else []) + \
        [f"decode_batch {decode_batch}"] + (["vae_tiling"] if tiling else [])
    return " + ".join(parts)


def sd15_table(width=512, height=768, frames=24) -> list[tuple[str, dict]]:
    from aa_engine.config import ModelConfig
    from aa_engine.models import build_model

    with torch.device("meta"):
        model = build_model(ModelConfig.sd15())
    model = model.to(torch.float16)
    return [(label(*c), estimate(model, "meta", torch.float16, width, height, frames, *c)) for c in COMBINATIONS]


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def measured_peak(fn) -> int:
    """Peak resident memory growth while fn() runs (VmHWM after a reset, minus VmRSS before)."""
    import ctypes

    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed heap pages back, so that the call's growth shows
    Path("/proc/self/clear_refs").write_text("5")
    before = _status("VmRSS")
    fn()
    return _status("VmHWM") - before


def validate(frames_list=(8, 16)) -> list[dict]:
    """At the medium benchmark size, fp32 on the CPU: the trace's denoise activations on meta and
    on real tensors, and the measured peak resident growth of the same call."""
    from engine_bench import SIZES, model_config

    from aa_engine.models import build_model

    width, height = SIZES["medium"]
    real = build_model(model_config("medium"), seed=0)
    with torch.device("meta"):
        meta = build_model(model_config("medium"))
    rows = []
    for frames in frames_list:
        traced_meta = trace_phases(meta, "meta", torch.float32, width, height, frames, False, 4, False)["denoise"]
        traced_real = trace_phases(real, "cpu", torch.float32, width, height, frames, False, 4, False)["denoise"]
        context = torch.zeros(1, 1, real.image_encoder.config.projection_dim)
        latents = torch.zeros(1, 4, frames, height // 8, width // 8)
        pose = torch.zeros(1, real.denoising_unet.config.block_out_channels[0], frames, height // 8, width // 8)
        reference = real.reference_tokens(torch.zeros(1, 4, height // 8, width // 8), context)

        def call():
            with torch.no_grad():
                real.predict(latents, torch.tensor(500), context, pose, torch.zeros_like(context), reference=reference)

        call()  # warm-up: oneDNN primitives, thread pools
        measured = min(measured_peak(call) for _ in range(2))
        rows.append({"frames": frames, "trace_meta": traced_meta, "trace_cpu": traced_real, "measured": measured})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--validate", action="store_true")
    parser.add_argument("--frames", type=int, default=24)
    args = parser.parse_args()
    torch.set_num_threads(1)
    report(args.frames, args.validate)


def report(frames: int = 24, with_validation: bool = True) -> None:
    """Print the estimate table (and the validation table)."""
    args = argparse.Namespace(frames=frames, validate=with_validation)
    print(f"SD-1.5 size, fp16, 512x768, one {args.frames}-frame window with CFG: estimated peak device memory "
          "(live tensors; + CUDA context and kernel workspaces, see the docstring)")
    print("| memory options | peak GB | in phase | weights GB (that phase) | activations GB (that phase) |")
    print("|---|---|---|---|---|")
    for name, e in sd15_table(frames=args.frames):
        phase = e["phase"]
        print(f"| {name} | {e['peak'] / GB:.2f} | {phase} | {e['weights'][phase] / GB:.2f} | {e['activations'][phase] / GB:.2f} |")
    if args.validate:
        print("\nvalidation, medium size (128x192), fp32 on the CPU, one UNet call with CFG:")
        print("| frames | traced on meta MB | traced on CPU tensors MB | measured peak RSS growth MB | measured / traced |")
        print("|---|---|---|---|---|")
        for r in validate():
            print(f"| {r['frames']} | {r['trace_meta'] / 2**20:.0f} | {r['trace_cpu'] / 2**20:.0f} | {r['measured'] / 2**20:.0f} | "
                  f"{r['measured'] / r['trace_cpu']:.2f} |")


if __name__ == "__main__":
    main()
