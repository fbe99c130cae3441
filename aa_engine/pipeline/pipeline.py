"""The Animate Anyone sampling pipeline.

    reference image --VAE--> latent --ReferenceNet (t=0)--> reference tokens
    reference image --CLIP--> context (unconditional context = zeros)
    skeleton maps --Pose Guider--> features added after conv_in
    noise --[DDIM step: every context window, CFG batch, averaged overlaps]*steps--> latents --VAE--> frames

The steps are separate methods (`prepare`, `initial_latents`, `denoise`, `decode`) so that a job
runner can checkpoint between steps and resume; `__call__` runs them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch
from PIL import Image

from aa_engine.config import GenerationConfig
from aa_engine.errors import Cancelled
from aa_engine.models.animate_anyone import AnimateAnyoneModel
from aa_engine.models.reference_attention import ReferenceTokens
from aa_engine.pipeline.context_windows import WindowAverage, context_windows
from aa_engine.pipeline.scheduler import make_scheduler


@dataclass
class Progress:
    stage: str  # "reference", "denoise" or "decode"
    step: int
    total: int
    frames_done: int = 0


@dataclass
class Prepared:
    """Everything the denoising loop needs besides the latents."""

    context: torch.Tensor  # (1, 1, d)
    uncond_context: torch.Tensor | None  # zeros like context when CFG is on
    poses: torch.Tensor  # (f, 3, H, W) in [0, 1], on the CPU (moved per window)
    reference: ReferenceTokens | None  # ReferenceNet's tokens; None when reference attention is off


def image_to_array(image: Image.Image, width: int, height: int) -> np.ndarray:
    """PIL image -> (height, width, 3) float32 in [0, 1], resized with Lanczos when needed."""
    image = image.convert("RGB")
    if image.size != (width, height):
        image = image.resize((width, height), Image.LANCZOS)
    return np.asarray(image, dtype=np.float32) / 255.0


def to_uint8(images: torch.Tensor) -> list[np.ndarray]:
    """(n, 3, H, W) in [0, 1] -> n arrays (H, W, 3) uint8."""
    arrays = (images.float().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return list(arrays)


class AnimateAnyonePipeline:
    def __init__(self, model: AnimateAnyoneModel, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
        self.device = torch.device(device)
        self.dtype = dtype
        self.model = model.to(self.device, dtype).eval()
        self.scheduler = make_scheduler()

    # -- 1. reference and poses ------------------------------------------------------------------
    @torch.no_grad()
    def prepare(self, reference: Image.Image, poses: list[Image.Image], config: GenerationConfig) -> Prepared:
        """Encode the reference (VAE + CLIP), run ReferenceNet once, and load the pose maps.

        config must have its size set (`config.sized_for(model.config)` fills the native size)."""
        config.validate(self.model.config.motion_module.max_frames)
        model = self.model
        ref = torch.from_numpy(image_to_array(reference, config.width, config.height)).permute(2, 0, 1).unsqueeze(0)
        ref = ref.to(self.device, self.dtype) * 2 - 1
        context = model.encode_context(model.clip_pixels(reference).to(self.device, self.dtype))
        reference_tokens = model.reference_tokens(model.encode_latents(ref), context) if config.reference_attention else None
        pose_array = np.stack([image_to_array(p, config.width, config.height) for p in poses])
        pose_tensor = torch.from_numpy(pose_array).permute(0, 3, 1, 2)
        uncond = torch.zeros_like(context) if config.do_cfg else None
        return Prepared(context=context, uncond_context=uncond, poses=pose_tensor, reference=reference_tokens)

    def initial_latents(self, num_frames: int, config: GenerationConfig) -> torch.Tensor:
        """Seeded noise (1, 4, f, H/8, W/8), drawn on the CPU so a seed gives the same video on any device."""
        generator = torch.Generator().manual_seed(int(config.seed))
        shape = (1, self.model.vae.config.latent_channels, num_frames, config.height // 8, config.width // 8)
        return torch.randn(shape, generator=generator, dtype=torch.float32)

    def timesteps(self, config: GenerationConfig) -> torch.Tensor:
        self.scheduler.set_timesteps(config.steps, device="cpu")
        return self.scheduler.timesteps

    # -- 2. denoising ------------------------------------------------------------------------------
    @torch.no_grad()
    def denoise(
        self,
        prepared: Prepared,
        latents: torch.Tensor,
        config: GenerationConfig,
        start_step: int = 0,
        callback: Callable[[Progress], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
        on_step_end: Callable[[int, torch.Tensor], None] | None = None,
    ) -> torch.Tensor:
        """Run DDIM steps start_step..steps-1 on latents (1, 4, f, h, w) (float32, CPU); returns the final latents.

        should_cancel is polled before every window of every step (so a cancel lands within one
        step); on_step_end(step_index, latents) is called after each step, e.g. to checkpoint.
        """
        timesteps = self.timesteps(config)
        num_frames = latents.shape[2]
        windows = context_windows(num_frames, config.context_frames, config.context_overlap, config.context_loop)
        latents = latents.to(self.device, torch.float32)
        for i in range(start_step, len(timesteps)):
            t = timesteps[i]
            average = WindowAverage(tuple(latents.shape), self.device)
            for frames, prediction in zip(windows, self.predict_windows(prepared, latents, t, windows, config, should_cancel)):
                average.add(frames, prediction)  # in window order, whoever computed them: the sum is the same
            latents = self.scheduler.step(average.result(), t, latents).prev_sample
            if on_step_end is not None:
                on_step_end(i, latents)
            if callback is not None:
                callback(Progress("denoise", i + 1, len(timesteps)))
        return latents

    @torch.no_grad()
    def predict_windows(
        self,
        prepared: Prepared,
        latents: torch.Tensor,
        t: torch.Tensor,
        windows: list[list[int]],
        config: GenerationConfig,
        should_cancel: Callable[[], bool] | None = None,
    ) -> Iterator[torch.Tensor]:
        """The guided noise prediction of each window at timestep t, in the order of `windows`:
        (1, 4, len(window), h, w) each, given the step's latents (1, 4, f, h, w).

        The windows are independent given the latents, so any subset of them can be computed by
        another worker with the same weights and device (aa_engine/cluster/window_parallel.py),
        and `denoise` still averages them in window order."""
        model = self.model
        latents = latents.to(self.device, torch.float32)
        for frames in windows:
            if should_cancel is not None and should_cancel():
                raise Cancelled()
            window = latents[:, :, frames].to(self.dtype)
            pose_features = model.pose_features(prepared.poses[frames].to(self.device, self.dtype))
            cond, uncond = model.predict(window, t.to(self.device), prepared.context, pose_features, prepared.uncond_context,
                                         config.motion_modules, reference=prepared.reference)
            if uncond is not None:
                cond = uncond + config.guidance * (cond - uncond)
            yield cond

    # -- 3. decoding -------------------------------------------------------------------------------
    @torch.no_grad()
    def decode(self, latents: torch.Tensor, config: GenerationConfig, skip: set[int] = frozenset()) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (frame_index, (H, W, 3) uint8) for every frame not in `skip`.

        Frames are decoded in fixed groups of `decode_batch` (0..n-1, n..2n-1, ...) whatever is
        skipped, so a frame redone on resume is bit-identical to the first run's.
        """
        num_frames = latents.shape[2]
        for start in range(0, num_frames, config.decode_batch):
            frames = list(range(start, min(start + config.decode_batch, num_frames)))
            if all(i in skip for i in frames):
                continue
            batch = latents[0][:, frames].permute(1, 0, 2, 3).to(self.device, self.dtype)
            for index, image in zip(frames, to_uint8(self.model.decode(batch))):
                if index not in skip:
                    yield index, image

    # -- all of it ---------------------------------------------------------------------------------
    def __call__(
        self,
        reference: Image.Image,
        poses: list[Image.Image],
        config: GenerationConfig,
        callback: Callable[[Progress], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> list[np.ndarray]:
        """reference + f pose maps -> f frames, each (height, width, 3) uint8 (size None = the model's native size)."""
        config = config.sized_for(self.model.config)
        prepared = self.prepare(reference, poses, config)
        latents = self.denoise(prepared, self.initial_latents(len(poses), config), config, 0, callback, should_cancel)
        frames = [image for _, image in self.decode(latents, config)]
        return frames
