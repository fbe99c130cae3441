"""Sampling: DDIM + classifier-free guidance + overlapping context windows, then VAE decode."""

from aa_engine.pipeline.pipeline import AnimateAnyonePipeline, Progress

__all__ = ["AnimateAnyonePipeline", "Progress"]
