"""Choosing the device and precision: fp32 on the CPU, fp16 (or bf16) on CUDA, fp16 on Apple MPS."""

from __future__ import annotations

import torch

from aa_engine.errors import BadRequest

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def pick_device(requested: str = "auto") -> torch.device:
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda:0")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise BadRequest("CUDA was requested but this torch has no usable CUDA device.", "Use --device cpu, or install a CUDA build of torch.")
    if requested == "mps" and not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
        raise BadRequest("MPS was requested but is not available here.", "Use --device cpu.")
    if requested not in ("cpu", "mps") and not requested.startswith("cuda"):
        raise BadRequest(f"Unknown device {requested!r}.", "Use auto, cpu, cuda, cuda:N or mps.")
    return torch.device(requested)


def pick_dtype(requested: str, device: torch.device) -> torch.dtype:
    if requested == "auto":
        return torch.float16 if device.type in ("cuda", "mps") else torch.float32
    if requested not in DTYPES:
        raise BadRequest(f"Unknown precision {requested!r}.", "Use auto, fp32, fp16 or bf16.")
    if device.type == "cpu" and requested == "fp16":
        raise BadRequest("fp16 is not supported on the CPU.", "Use fp32 (or bf16) on the CPU.")
    return DTYPES[requested]
