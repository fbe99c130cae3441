"""The training loop: one stage, with accelerate (CPU, one GPU or several), resumable.

Output folder layout:
  train_config.json        the settings of the run
  model_config.json        the architecture being trained (what turns a checkpoint into a model:
                           evaluation.denoiser_probe.load_stage_checkpoint)
  log.jsonl                {"step", "loss", "lr", "seconds"} every log_every steps
  checkpoints/step_NNNNNN/ accelerate state (model, optimizer, LR schedule) + trainer_state.json
                           (+ ema.safetensors with --ema-decay: the averaged weights, training/ema.py)
  samples/step_NNNNNN.png  sample grid (reference | skeleton | generated | ground truth), or VAE reconstructions
  model/                   the final weights (config.json + model.safetensors): --init of the next stage,
                           or --weights for the engine (with --ema-decay, the averaged weights)
  vae/                     vae stage only: the VAE alone (training/vae_product.py), a small --init for
                           the image stage

Resuming is exact: the data of step s and its noise/timesteps/dropout are pure functions of
(seed, --first-clip, s, process), so a run stopped after a checkpoint and restarted reaches the same weights as
an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator

from aa_engine.data.dataset import make_batch, make_clip
from aa_engine.models.animate_anyone import AnimateAnyoneModel, build_model
from aa_engine.training.config import ARCHITECTURES, TrainConfig
from aa_engine.training.ema import WeightAverage
from aa_engine.training.stages import make_stage, tie_reference_to_denoising, trainable_parameters
from aa_engine.training.vae_product import is_vae_product, load_vae_into, save_vae, vae_config

log = logging.getLogger(__name__)
STATE_FILE = "trainer_state.json"
MODEL_CONFIG_FILE = "model_config.json"
KEEP_CHECKPOINTS = 2
SAMPLE_CLIPS = (0, 1, 2, 3)  # held-out clips shown in the sample grids


@dataclass
class TrainResult:
    model: AnimateAnyoneModel
    model_dir: Path
    steps: int
    final_loss: float
    seconds: float


def initial_model(config: TrainConfig) -> AnimateAnyoneModel:
    """--init's checkpoint; or --arch from scratch (seeded), with --init's VAE if that is a VAE-only product."""
    if config.init and not is_vae_product(config.init):
        from aa_engine.weights import load_model

        model, _ = load_model(config.init)
        return model
    architecture = ARCHITECTURES[config.arch]()
    if config.init:
        architecture.vae = vae_config(config.init)
    model = build_model(architecture, seed=config.seed)
    tie_reference_to_denoising(model)
    if config.init:
        load_vae_into(model, config.init)
    if config.unets_from:
        warm_start_from(model, config.unets_from)
    return model


def warm_start_from(model: AnimateAnyoneModel, folder: str) -> None:
    """Every part but the VAE from the model in `folder` (same architecture, or a clear error)."""
    from aa_engine.errors import BadRequest
    from aa_engine.models.animate_anyone import PARTS
    from aa_engine.weights import load_model

    donor, _ = load_model(folder)
    for part in PARTS:
        if part == "vae":
            continue
        try:
            getattr(model, part).load_state_dict(getattr(donor, part).state_dict())
        except RuntimeError as error:
            raise BadRequest(f"--unets-from {folder}: its {part} does not fit the --arch being trained ({str(error).splitlines()[0]}).",
                             "Use a model of the same --arch (only the VAE may differ).") from None


def lr_factor(config: TrainConfig, step: int) -> float:
    """Learning-rate multiplier at `step`: linear warmup, then constant or a cosine down to 10% at config.steps."""
    warm = min(1.0, (step + 1) / max(1, config.warmup))
    if config.lr_schedule != "cosine":
        return warm
    progress = min(1.0, max(0.0, (step - config.warmup) / max(1, config.steps - config.warmup)))
    return warm * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))


def step_generator(config: TrainConfig, step: int, process: int) -> torch.Generator:
    return torch.Generator().manual_seed(config.seed * 1_000_003 + step * 101 + process)


def batch_indices(config: TrainConfig, step: int, process: int, processes: int) -> list[int]:
    first = config.first_clip + (step * processes + process) * config.batch_size
    return list(range(first, first + config.batch_size))


def latest_checkpoint(out: Path) -> Path | None:
    found = sorted((out / "checkpoints").glob("step_*"))
    found = [p for p in found if (p / STATE_FILE).is_file()]
    return found[-1] if found else None


def _save_checkpoint(accelerator: Accelerator, out: Path, step: int, ema: WeightAverage | None) -> None:
    folder = out / "checkpoints" / f"step_{step:06d}"
    accelerator.save_state(str(folder))
    if accelerator.is_main_process:
        if ema is not None:
            ema.save(folder)
        (folder / STATE_FILE).write_text(json.dumps({"step": step}))  # last: it marks the checkpoint complete
        for old in sorted((out / "checkpoints").glob("step_*"))[:-KEEP_CHECKPOINTS]:
            shutil.rmtree(old, ignore_errors=True)


def calibrate_latent_scale(model: AnimateAnyoneModel, config: TrainConfig, samples: int = 64) -> float:
    """1 / std of the VAE's latent means on training images, written into the VAE's config (as SD's 0.18215)."""
    batch = make_batch("train", list(range(10_000_000, 10_000_000 + samples)), 1, config.width, config.height, config.data)
    device = next(model.vae.parameters()).device
    with torch.no_grad():
        latents = model.vae.encode(batch.targets.flatten(0, 1).to(device)).latent_dist.mean
    scale = float(1.0 / latents.std())
    model.vae.register_to_config(scaling_factor=scale)
    model.config.vae["scaling_factor"] = scale
    return scale


def write_samples(model: AnimateAnyoneModel, config: TrainConfig, path: Path) -> None:
    """Held-out samples: VAE reconstructions, or a few generated frames with the engine's pipeline."""
    from aa_engine.evaluation.contact_sheet import grid

    was_training = model.training
    device = next(model.parameters()).device
    rows = []
    with torch.no_grad():
        if config.stage in ("vae", "decoder"):
            clips = [make_clip("heldout", i, 4, config.width, config.height, config.data) for i in SAMPLE_CLIPS]
            for clip in clips:
                images = torch.from_numpy(clip.frames).float().div(127.5).sub(1).permute(0, 3, 1, 2).to(device)
                recon = model.decode(model.encode_latents(images))
                recon = (recon * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
                rows.append(list(clip.frames) + list(recon))
        else:
            from aa_engine.evaluation.generate import generate_clip

            frames = max(2, min(config.frames, 4)) if config.stage == "motion" else 3
            for i in SAMPLE_CLIPS:
                clip = make_clip("heldout", i, frames, config.width, config.height, config.data)
                generated = generate_clip(model, clip, steps=config.sample_steps, device=device)
                rows.append([clip.reference] + list(clip.poses) + list(generated) + list(clip.frames))
    model.train(was_training)
    path.parent.mkdir(parents=True, exist_ok=True)
    grid(rows).save(path)


def train(config: TrainConfig, resume: bool = True, stop_after: int | None = None) -> TrainResult:
    """Run (or resume) one stage. stop_after: leave after that many steps of this call (tests of resuming)."""
    config.validate()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    accelerator = Accelerator(cpu=config.cpu)
    model = initial_model(config)
    params = trainable_parameters(model, config.stage)
    stage = make_stage(model, config)
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(config, s))
    stage, optimizer, schedule = accelerator.prepare(stage, optimizer, schedule)
    ema = WeightAverage(model, params, config.ema_decay) if config.ema_decay else None
    if accelerator.is_main_process:
        config.save(out / "train_config.json")
        model.config.save(out / MODEL_CONFIG_FILE)

    start = 0
    checkpoint = latest_checkpoint(out) if resume else None
    if checkpoint is not None:
        accelerator.load_state(str(checkpoint))
        start = json.loads((checkpoint / STATE_FILE).read_text())["step"]
        log.info("resumed from %s (step %d)", checkpoint, start)
        if ema is not None and not ema.load(checkpoint):
            log.info("the weight average (--ema-decay %g) starts at step %d from the weights as they are", config.ema_decay, start)

    began = time.perf_counter()
    loss_value = float("nan")
    window: list[float] = []
    end = config.steps if stop_after is None else min(config.steps, start + stop_after)
    stage.train()
    for step in range(start, end):
        generator = step_generator(config, step, accelerator.process_index)
        batch = make_batch("train", batch_indices(config, step, accelerator.process_index, accelerator.num_processes),
                           config.frames, config.width, config.height, config.data)
        # --mixed-precision bf16: the forward under bfloat16 autocast (weights, gradients and AdamW stay float32).
        # Not Accelerator(mixed_precision=...): its state is one per process, and one process may train twice.
        with torch.autocast(accelerator.device.type, dtype=torch.bfloat16, enabled=config.mixed_precision == "bf16"):
            loss = stage(batch, generator)
        accelerator.backward(loss)
        if config.grad_clip > 0:
            accelerator.clip_grad_norm_(params, config.grad_clip)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            ema.update()
        loss_value = float(loss.detach())
        window.append(loss_value)
        done = step + 1
        if accelerator.is_main_process and (done % config.log_every == 0 or done == config.steps):
            record = {"step": done, "loss": float(np.mean(window)), "lr": schedule.get_last_lr()[0], "seconds": round(time.perf_counter() - began, 2)}
            with open(out / "log.jsonl", "a") as fh:
                fh.write(json.dumps(record) + "\n")
            log.info("step %d/%d loss %.4f", done, config.steps, record["loss"])
            window.clear()
        if done % config.checkpoint_every == 0 or done == config.steps:
            _save_checkpoint(accelerator, out, done, ema)
        if accelerator.is_main_process and config.sample_every > 0 and (done % config.sample_every == 0 or done == config.steps):
            with ema.applied() if ema is not None else contextlib.nullcontext():
                write_samples(accelerator.unwrap_model(stage).model, config, out / "samples" / f"step_{done:06d}.png")

    accelerator.wait_for_everyone()
    model = accelerator.unwrap_model(stage).model
    if ema is not None and end == config.steps:
        ema.copy_to_model()
    model_dir = out / "model"
    if accelerator.is_main_process and end == config.steps:
        from aa_engine.weights import save_checkpoint

        if config.stage == "vae":
            scale = calibrate_latent_scale(model, config)
            log.info("latent scaling factor: %.5f", scale)
        save_checkpoint(model, model_dir)
        if config.stage == "vae":
            save_vae(model, out / "vae")
    return TrainResult(model, model_dir, end, loss_value, time.perf_counter() - began)
