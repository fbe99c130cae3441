"""Evaluating a model on held-out synthetic clips: metrics, ablations, contact sheet (docs/default_model.md).

metrics.py        SSIM, PSNR, L1, temporal error; SSIM in the figure's box and in the background
warp_baseline.py  the non-diffusion baseline (reference warped limb by limb)
generate.py       one clip through the engine's pipeline
evaluate.py       the ablation table and the contact sheet
command.py        the `evaluate` command's flags
"""

from aa_engine.evaluation.command import add_evaluate_arguments, run_evaluate

__all__ = ["add_evaluate_arguments", "run_evaluate"]
