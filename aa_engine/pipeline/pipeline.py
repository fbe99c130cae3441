"""The Animate Anyone sampling pipeline.

    reference image --VAE--> latent --ReferenceNet (t=0)--> reference tokens
    reference image --CLIP--> context (unconditional context = zeros)
    skeleton maps --Pose Guider--> features added after conv_in
    noise --[sampler step: every context window (context_batch per UNet call), CFG batch, averaged overlaps]*steps--> latents --VAE--> frames

The steps are separate methods (`prepare`, `initial_latents`, `denoise`, `decode`) so that a job
runner can checkpoint between steps and resume; `__call__` runs them all.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import torch
from PIL import Image

from aa_engine.config import GenerationConfig
from aa_engine.errors import Cancelled
from aa_engine.models.animate_anyone import AnimateAnyoneModel
from aa_engine.models.reference_attention import ReferenceTokens
from aa_engine.pipeline.context_windows import WindowAverage, context_windows
from aa_engine.models.video_unet import DeepCache, video_forward
from aa_engine.pipeline.scheduler import make_scheduler, timesteps_for


@dataclass(frozen=True)
class MemoryOptions:
    """Ways to lower the device's peak memory; none changes the maths (the frames equal the
    default's to float rounding). docs/performance.md has the peak of each combination."""

    # only what each phase uses is on the device: ReferenceNet, the CLIP encoder and the VAE encoder
    # while the reference tokens are written (`prepare`), then back to the CPU, and the denoising
    # UNet comes in (two weight transfers per job)
    offload_reference: bool = False
    # the unconditional and the conditional half of a CFG step as two UNet calls, not one batch
    cfg_sequential: bool = False
    # the VAE decodes each frame in overlapping tiles (diffusers' tiled decode; the frame is blended
    # across tile seams, so it can differ from the untiled decode by a few levels)
    vae_tiling: bool = False


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
    poses: torch.Tensor  # (f, 3, H, W) in [0, 1], on the CPU
    reference: ReferenceTokens | None  # ReferenceNet's tokens; None when reference attention is off
    # (1, c0, f, H/8, W/8): the Pose Guider's features of every frame, computed once per shot (they
    # do not depend on the step or the window); kept on the CPU and moved per window batch
    pose_features: torch.Tensor | None = None
    # DeepCache slots (feature_reuse > 1), one per (window batch, CFG on/off), filled by full steps
    deep_cache: dict = field(default_factory=dict)


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
    """model + device + dtype. compile=True (or the environment variable AA_ENGINE_COMPILE=1) runs
    the denoising UNet through torch.compile: the first call of each shape compiles (minutes on a
    CPU), later ones run faster (docs/performance.md); the output equals eager mode to float
    rounding (~1e-6)."""

    def __init__(self, model: AnimateAnyoneModel, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                 compile: bool | None = None, memory: MemoryOptions = MemoryOptions()):
        self.device = torch.device(device)
        self.dtype = dtype
        self.memory = memory
        self.model = model.to(self.device, dtype).eval()
        self.scheduler = make_scheduler()  # replaced by the sampler of each `denoise` call
        if compile is None:
            compile = os.environ.get("AA_ENGINE_COMPILE", "") not in ("", "0")
        self.forward = torch.compile(video_forward, dynamic=False) if compile else video_forward

    # -- 1. reference and poses ------------------------------------------------------------------
    @torch.no_grad()
    def prepare(self, reference: Image.Image, poses: list[Image.Image], config: GenerationConfig) -> Prepared:
        """Encode the reference (VAE + CLIP), run ReferenceNet once, load the pose maps and run the
        Pose Guider on them (once per shot, in chunks of context_frames to bound its memory).

        config must have its size set (`config.sized_for(model.config)` fills the native size)."""
        config.validate(self.model.config.motion_module.max_frames)
        model = self.model
        self._denoising_parts_to("cpu")
        self._reference_parts_to(self.device)
        ref = torch.from_numpy(image_to_array(reference, config.width, config.height)).permute(2, 0, 1).unsqueeze(0)
        ref = ref.to(self.device, self.dtype) * 2 - 1
        context = model.encode_context(model.clip_pixels(reference).to(self.device, self.dtype))
        reference_tokens = model.reference_tokens(model.encode_latents(ref), context) if config.reference_attention else None
        pose_array = np.stack([image_to_array(p, config.width, config.height) for p in poses])
        pose_tensor = torch.from_numpy(pose_array).permute(0, 3, 1, 2)
        uncond = torch.zeros_like(context) if config.do_cfg else None
        prepared = Prepared(context=context, uncond_context=uncond, poses=pose_tensor, reference=reference_tokens,
                            pose_features=self.shot_pose_features(pose_tensor, config))
        self._reference_parts_to("cpu")
        self._denoising_parts_to(self.device)
        return prepared

    def _reference_parts_to(self, device) -> None:
        """With offload_reference: ReferenceNet, the CLIP encoder and the VAE encoder (only `prepare`
        uses them) to `device`."""
        if self.memory.offload_reference:
            for part in (self.model.reference_unet, self.model.image_encoder, self.model.vae.encoder, self.model.vae.quant_conv):
                if part is not None:
                    part.to(device)

    def _denoising_parts_to(self, device) -> None:
        """With offload_reference: the denoising UNet (with its motion modules) to `device`; the Pose
        Guider and the VAE decoder stay (prepare runs the guider, decode the decoder)."""
        if self.memory.offload_reference:
            self.model.denoising_unet.to(device)

    def shot_pose_features(self, poses: torch.Tensor, config: GenerationConfig) -> torch.Tensor:
        """poses (f, 3, H, W) -> the Pose Guider's features (1, c0, f, H/8, W/8) on the CPU, computed
        in chunks of context_frames (the batch a window would give it)."""
        chunk = config.context_frames
        return torch.cat([
            self.model.pose_features(poses[i : i + chunk].to(self.device, self.dtype)).cpu() for i in range(0, len(poses), chunk)
        ], dim=2)

    def initial_latents(self, num_frames: int, config: GenerationConfig) -> torch.Tensor:
        """Seeded noise (1, 4, f, H/8, W/8), drawn on the CPU so a seed gives the same video on any
        device, times the sampler's initial sigma (1 except for Euler)."""
        generator = torch.Generator().manual_seed(int(config.seed))
        shape = (1, self.model.vae.config.latent_channels, num_frames, config.height // 8, config.width // 8)
        noise = torch.randn(shape, generator=generator, dtype=torch.float32)
        sigma = float(make_scheduler(config.sampler).init_noise_sigma)
        return noise if sigma == 1.0 else noise * sigma

    def timesteps(self, config: GenerationConfig) -> torch.Tensor:
        return timesteps_for(config.sampler, config.steps)

    @staticmethod
    def guided_steps(config: GenerationConfig) -> int:
        """How many of the first steps use classifier-free guidance (guidance_interval of them)."""
        if not config.do_cfg:
            return 0
        return min(config.steps, math.ceil(config.guidance_interval * config.steps - 1e-9))

    def step_index(self, config: GenerationConfig, t: torch.Tensor) -> int:
        return int((self.timesteps(config) == t.cpu()).nonzero()[0, 0])

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
        """Run the sampler's steps start_step..steps-1 on latents (1, 4, f, h, w) (float32, CPU);
        returns the final latents. A multistep sampler (dpm++2m, unipc) resumed at start_step > 0
        restarts its history there (its next step is first order), so a resumed run differs
        slightly from an uninterrupted one; ddim and euler resume exactly.

        should_cancel is polled before every window of every step (so a cancel lands within one
        step); on_step_end(step_index, latents) is called after each step, e.g. to checkpoint.
        """
        scheduler = self.scheduler = make_scheduler(config.sampler)
        scheduler.set_timesteps(config.steps, device="cpu")
        timesteps = scheduler.timesteps
        num_frames = latents.shape[2]
        windows = context_windows(num_frames, config.context_frames, config.context_overlap, config.context_loop)
        latents = latents.to(self.device, torch.float32)
        for i in range(start_step, len(timesteps)):
            t = timesteps[i]
            average = WindowAverage(tuple(latents.shape), self.device)
            model_input = scheduler.scale_model_input(latents, t)  # the identity except for Euler
            for frames, prediction in zip(windows, self.predict_windows(prepared, model_input, t, windows, config, should_cancel)):
                average.add(frames, prediction)  # in window order, whoever computed them: the sum is the same
            latents = scheduler.step(average.result(), t, latents).prev_sample
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

        `config.context_batch` consecutive windows (from the first of `windows`) run as one batch
        through the UNet. The windows are independent given the latents, so any subset of them can
        be computed by another worker with the same weights and device
        (aa_engine/cluster/window_parallel.py, which splits on multiples of context_batch), and
        `denoise` still averages them in window order."""
        latents = latents.to(self.device, torch.float32)
        batch = max(1, int(config.context_batch))
        step = self.step_index(config, t)
        guided = step < self.guided_steps(config)
        uncond_context = prepared.uncond_context if guided else None
        for start in range(0, len(windows), batch):
            group = windows[start : start + batch]
            if should_cancel is not None and should_cancel():
                raise Cancelled()
            if len({len(frames) for frames in group}) != 1:
                raise ValueError("windows batched together must have the same length")
            window_latents = torch.cat([latents[:, :, frames] for frames in group]).to(self.dtype)
            pose_features = torch.cat([prepared.pose_features[:, :, frames] for frames in group]).to(self.device, self.dtype)
            key = tuple(map(tuple, group))
            if uncond_context is not None and self.memory.cfg_sequential:
                cond, _ = self._predict(prepared, window_latents, t, prepared.context, pose_features, prepared.reference, config,
                                        step, (key, "cond"))
                uncond, _ = self._predict(prepared, window_latents, t, uncond_context, pose_features, None, config, step, (key, "uncond"))
            else:
                cond, uncond = self._predict(prepared, window_latents, t, prepared.context, pose_features, prepared.reference, config,
                                             step, (key, guided), uncond_context)
            if uncond is not None:
                cond = uncond + config.guidance * (cond - uncond)
            yield from cond.split(1)

    def _predict(self, prepared, latents, t, context, pose_features, reference, config, step, cache_key, uncond_context=None):
        """One UNet call through model.predict, with its DeepCache slot when feature reuse is on."""
        cache, reuse = None, False
        reuse_every = max(1, int(config.feature_reuse))
        if reuse_every > 1:
            cache = prepared.deep_cache.setdefault(cache_key, DeepCache())
            reuse = step % reuse_every != 0 and cache.features is not None
        return self.model.predict(latents, t.to(self.device), context, pose_features, uncond_context, config.motion_modules,
                                  reference=reference, cache=cache, reuse=reuse, forward=self.forward)

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
            if self.memory.vae_tiling:
                self.model.vae.enable_tiling()
            try:
                images = self.model.decode(batch)
            finally:
                self.model.vae.disable_tiling()
            for index, image in zip(frames, to_uint8(images)):
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
