"""Held-out evaluation with the paper's ablations, in miniature.

Rows of the table (all on the same held-out clips, generated with the engine's pipeline):
  full             the model as shipped (ReferenceNet + CLIP + pose guider + motion modules)
  no_referencenet  reference attention switched off at sampling time: only the CLIP path carries
                   the reference (an inference-time ablation, not a separately trained model)
  no_motion        the motion modules switched off at sampling time: as the modules are residual with
                   a zero-initialised output and stage 2 trains nothing else, this is exactly the
                   stage-1 (image-level) model
  warp_baseline    no diffusion: the reference warped limb by limb onto each target pose
  vae_ceiling      not a model: the ground truth through the VAE (encode, decode), the best any
                   diffusion row can score with this VAE
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from aa_engine.data.dataset import make_clip
from aa_engine.evaluation.contact_sheet import grid
from aa_engine.evaluation.generate import generate_clip
from aa_engine.evaluation.metrics import HIGHER_IS_BETTER, METRICS, REGION_METRICS, all_metrics, figure_mask, region_ssim
from aa_engine.evaluation.warp_baseline import warp_reference
from aa_engine.models.animate_anyone import AnimateAnyoneModel

ABLATIONS = ("full", "no_referencenet", "no_motion", "warp_baseline", "vae_ceiling")


@dataclass
class EvalConfig:
    clips: int = 12
    frames: int = 8
    width: int = 128  # the shipped default model's native size
    height: int = 192
    data: str = "rich"  # character style of the held-out clips (aa_engine.data.STYLES): the model's training data
    steps: int = 20
    guidance: float = 3.5
    sampler: str = "ddim"  # the sampler settings (aa_contract.settings; evaluate --preset sets all four)
    guidance_interval: float = 1.0
    feature_reuse: int = 1
    seed: int = 42
    sheet_clips: int = 4  # rows of the contact sheet
    ablations: tuple[str, ...] = ABLATIONS


@dataclass
class EvalResult:
    config: EvalConfig
    scores: dict[str, dict[str, float]]  # ablation -> metric -> mean over clips
    seconds: dict[str, float] = field(default_factory=dict)
    samples: dict[str, list[np.ndarray]] = field(default_factory=dict)  # ablation -> first sheet_clips videos
    per_clip: dict[str, list[dict[str, float]]] = field(default_factory=dict)  # ablation -> each held-out clip's scores

    def table(self) -> str:
        names = [*METRICS, *REGION_METRICS]
        titles = {"ssim": "SSIM", "psnr": "PSNR", "l1": "L1", "temporal": "temporal err", "ssim_figure": "SSIM figure",
                  "ssim_background": "SSIM background"}
        lines = ["| model | " + " | ".join(f"{titles[n]} {'↑' if HIGHER_IS_BETTER[n] else '↓'}" for n in names) + " | s/clip |",
                 "|---|" + "---|" * (len(names) + 1)]
        for ablation, scores in self.scores.items():
            cells = [("{:.2f}" if n == "psnr" else "{:.4f}").format(scores[n]) for n in names]
            lines.append(f"| {ablation} | " + " | ".join(cells) + f" | {self.seconds.get(ablation, 0.0):.2f} |")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"config": self.config.__dict__ | {"ablations": list(self.config.ablations)}, "scores": self.scores, "seconds_per_clip": self.seconds,
                "per_clip": self.per_clip}


@torch.no_grad()
def vae_roundtrip(model: AnimateAnyoneModel, frames: np.ndarray, device: str | torch.device = "cpu") -> np.ndarray:
    """(f, H, W, 3) uint8 -> the same frames encoded and decoded by the model's VAE."""
    model.to(device)
    images = torch.from_numpy(frames).float().div(127.5).sub(1).permute(0, 3, 1, 2).to(device, next(model.vae.parameters()).dtype)
    decoded = model.decode(model.encode_latents(images))
    return (decoded.float() * 255).round().clamp(0, 255).byte().permute(0, 2, 3, 1).cpu().numpy()


def evaluate(model: AnimateAnyoneModel, config: EvalConfig, device: str | torch.device = "cpu") -> EvalResult:
    clips = [make_clip("heldout", i, config.frames, config.width, config.height, config.data) for i in range(config.clips)]
    scores: dict[str, dict[str, float]] = {}
    seconds: dict[str, float] = {}
    samples: dict[str, list[np.ndarray]] = {}
    every_clip: dict[str, list[dict[str, float]]] = {}
    for ablation in config.ablations:
        per_clip = []
        videos = []
        began = time.perf_counter()
        for clip in clips:
            if ablation == "vae_ceiling":
                video = vae_roundtrip(model, clip.frames, device)
            elif ablation == "warp_baseline":
                video = np.stack([warp_reference(clip.reference, clip.reference_keypoints, k) for k in clip.keypoints])
            else:
                video = generate_clip(model, clip, steps=config.steps, guidance=config.guidance, seed=config.seed, device=device,
                                      reference_attention=ablation != "no_referencenet", motion_modules=ablation != "no_motion",
                                      sampler=config.sampler, guidance_interval=config.guidance_interval,
                                      feature_reuse=config.feature_reuse)
            per_clip.append(all_metrics(video, clip.frames)
                            | region_ssim(video, clip.frames, figure_mask(clip.keypoints, config.height, config.width)))
            if len(videos) < config.sheet_clips:
                videos.append(video)
        seconds[ablation] = (time.perf_counter() - began) / len(clips)
        scores[ablation] = {name: float(np.nanmean([m[name] for m in per_clip])) for name in [*METRICS, *REGION_METRICS]}
        samples[ablation] = videos
        every_clip[ablation] = [{"clip": i} | m for i, m in enumerate(per_clip)]
    return EvalResult(config, scores, seconds, samples, every_clip)


def contact_sheet(result: EvalResult, path: Path, frames_shown: int = 4) -> Path:
    """Per held-out clip: reference | skeleton maps | each ablation's frames | ground truth."""
    config = result.config
    rows, labels = [], []
    for i in range(min(config.sheet_clips, config.clips)):
        clip = make_clip("heldout", i, config.frames, config.width, config.height, config.data)
        shown = np.linspace(0, config.frames - 1, min(frames_shown, config.frames)).round().astype(int)
        blank = np.full_like(clip.reference, 255)
        rows.append([clip.reference] + [clip.poses[j] for j in shown])
        labels.append(f"clip {i}: ref|poses")
        for ablation, videos in result.samples.items():
            rows.append([blank] + [videos[i][j] for j in shown])
            labels.append(ablation)
        rows.append([blank] + [clip.frames[j] for j in shown])
        labels.append("ground truth")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid(rows, labels).save(path)
    return path


def write_report(result: EvalResult, out: Path) -> dict[str, Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluation.json").write_text(json.dumps(result.to_dict(), indent=2))
    (out / "evaluation.md").write_text(result.table() + "\n")
    return {"json": out / "evaluation.json", "table": out / "evaluation.md", "sheet": contact_sheet(result, out / "contact_sheet.png")}
