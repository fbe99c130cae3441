"""One job: inputs -> validated spec -> pipeline -> frames on disk, with resume and events.

Shared by the `animate` command and the `serve` protocol: both call `run_job` and only differ in
what they do with the events (a terminal progress bar, or JSON lines). The output folder layout and
the resume rules are documented in docs/protocol.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from aa_contract import keypoints, protocol
from aa_contract import settings as contract_settings
from aa_contract.keypoints import KeypointTrack
from aa_engine import __version__
from aa_engine.config import GenerationConfig
from aa_engine.errors import Cancelled, InputError, OutOfMemory
from aa_engine.job_folder import FRAME_NAME, JobFolder  # noqa: F401 - FRAME_NAME: the layout, for other modules
from aa_engine.pipeline import AnimateAnyonePipeline, Progress

log = logging.getLogger(__name__)

# Larger images are refused before decoding (PIL itself only warns up to twice this, then refuses):
# a PNG header can claim any size at almost no cost.
MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}
VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".gif"}
Emit = Callable[..., None]  # emit(event_type, **fields)


Poses = Path | list[Path] | KeypointTrack  # a folder of maps or a video file, a list of map files, or a keypoint track


@dataclass
class JobSpec:
    id: str
    reference: Path
    poses: Poses
    output: Path
    config: GenerationConfig
    video: bool = True
    warnings: list[str] = field(default_factory=list)  # for `accepted`: fields ignored and the like

    @classmethod
    def from_message(cls, message: dict) -> "JobSpec":
        """Build from a protocol `job` message (checked by the contract: aa_contract.protocol.parse_job);
        raises InvalidSetting naming the bad field, or BadTrack for a bad keypoint track."""
        request = protocol.parse_job(message)
        if request.keypoints is None:
            poses = [Path(p) for p in request.poses] if isinstance(request.poses, list) else Path(request.poses)
        elif isinstance(request.keypoints, dict):
            poses = keypoints.track_from_dict(request.keypoints, "in the job")
        else:
            poses = keypoints.read_track(request.keypoints)
        config = GenerationConfig(**request.settings)
        return cls(request.id, Path(request.reference), poses, Path(request.output), config, request.video, request.warnings)


# -- inputs ---------------------------------------------------------------------------------------
def load_reference(path: Path) -> Image.Image:
    """The reference image as RGB; InputError (code bad_input, field reference) naming what is wrong."""
    hint = "Pick an existing PNG or JPG of the character."
    if path.is_dir():
        raise InputError(f"The reference image {path} is a folder, not an image file.", hint + " Give the image file inside it.", field="reference")
    if not path.exists():
        raise InputError(f"The reference image {path} does not exist.", hint, field="reference")
    if not path.is_file():
        raise InputError(f"The reference image {path} is not a regular file (a device or pipe?).", hint, field="reference")
    return _open_image(path, "The reference image", "Save it again as PNG or JPG.", field="reference")


def _open_image(path: Path, what: str, hint: str, field: str | None = None) -> Image.Image:
    """An image file as RGB, with PIL's decompression-bomb guard (Image.MAX_IMAGE_PIXELS) as an
    InputError that states the limit; any other failure to decode is an InputError too."""
    try:
        with Image.open(path) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise Image.DecompressionBombError(f"Image size ({image.width * image.height} pixels: {image.width}x{image.height})")
            return image.convert("RGB")
    except Image.DecompressionBombError as exc:
        claimed = re.search(r"\((\d+) pixels", str(exc))
        size = f"{int(claimed.group(1)):,} pixels" if claimed else "a size"
        raise InputError(f"{what} {path} claims {size}; the limit is {MAX_IMAGE_PIXELS:,} (about 9459x9459).",
                         "It may be a decompression bomb; if it is a real image, scale it down first.", field=field) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"{what} {path} cannot be read ({exc}).", hint, field=field) from exc


def pose_files(poses: Path | list[Path]) -> list[Path]:
    """The pose map files of a folder (sorted by name) or list; [] for a video file."""
    if isinstance(poses, list):
        missing = [str(p) for p in poses if not Path(p).is_file()]
        if missing:
            raise InputError(f"{len(missing)} pose map(s) do not exist, e.g. {missing[0]}.", "Export the skeleton maps again.")
        return list(poses)
    if poses.is_dir():
        files = sorted(p for p in poses.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise InputError(f"The pose folder {poses} holds no PNG/JPG skeleton maps.", "Export the skeleton maps into it first.")
        return files
    if poses.is_file() and poses.suffix.lower() in VIDEO_SUFFIXES:
        return []
    raise InputError(f"The poses {poses} are neither a folder of maps nor a video file.", "Give a folder of PNG skeleton maps or an .mp4.")


def _pixel_digest(images: list[Image.Image]) -> bytes:
    """The digest of the maps' pixels (not their files' bytes): the same maps given as PNGs, as a
    video or drawn from a keypoint track are the same job."""
    digest = hashlib.sha256()
    for image in images:
        digest.update(f"{image.width}x{image.height};".encode())
        digest.update(image.tobytes())
    return digest.digest()


def load_poses(poses: Poses, size: tuple[int, int] | None = None) -> tuple[list[Image.Image], bytes]:
    """The pose maps as RGB images, and their pixels' digest (for the job fingerprint).

    A keypoint track is drawn at `size` (the job's width, height): its points are scaled to it,
    so the joints and limbs keep DWPose's pixel sizes, as they were in training.
    """
    if isinstance(poses, KeypointTrack):
        from aa_engine.data.pose_maps import draw_keypoints_cv2

        track = poses.scaled_to(*size) if size else poses
        images = [Image.fromarray(draw_keypoints_cv2(track.width, track.height, frame)) for frame in track.frames]
        return images, _pixel_digest(images)
    files = pose_files(poses)
    images = []
    if files:
        for path in files:
            images.append(_open_image(Path(path), "The pose map", "Export the skeleton maps again.", field="poses"))
        return images, _pixel_digest(images)
    import imageio.v3 as iio

    try:
        for frame in iio.imiter(poses):
            images.append(Image.fromarray(np.asarray(frame)[..., :3]))
    except Exception as exc:  # noqa: BLE001 - any decoder failure is the same user problem
        raise InputError(f"The pose video {poses} cannot be read ({exc}).", "Export the skeleton maps as PNGs instead.") from exc
    if not images:
        raise InputError(f"The pose video {poses} has no frames.")
    return images, _pixel_digest(images)


def fingerprint(reference: Path, pose_digest: bytes, config: GenerationConfig, weights_identity: str, num_frames: int) -> str:
    settings = {**contract_settings.fingerprint_values(asdict(config)), "reference_attention": config.reference_attention}
    digest = hashlib.sha256(reference.read_bytes())
    digest.update(pose_digest)
    digest.update(json.dumps([settings, weights_identity, num_frames], sort_keys=True).encode())
    return digest.hexdigest()[:24]


# -- running it -----------------------------------------------------------------------------------
@dataclass
class CheckedJob:
    """A job whose settings and inputs passed every check: nothing has touched its folder yet."""

    spec: JobSpec
    config: GenerationConfig       # sized for the model, validated
    reference: Image.Image
    poses: list[Image.Image]
    fingerprint: str

    @property
    def frames(self) -> int:
        return len(self.poses)


def check_job(pipe: AnimateAnyonePipeline, weights_identity: str, spec: JobSpec) -> CheckedJob:
    """Everything is checked before the output folder is made or touched, so a refused job leaves
    nothing behind: the settings, the model's limits, then the inputs."""
    config = spec.config.sized_for(pipe.model.config)
    config.validate(pipe.model.config.motion_module.max_frames)
    pipe.model.config.check_size(config.width, config.height)
    native = pipe.model.config.native_size
    if native and (config.width, config.height) != tuple(native):
        log.warning("generating at %dx%d; the model was trained at %dx%d and may look worse at other sizes",
                    config.width, config.height, *native)
    reference = load_reference(spec.reference)
    poses, pose_digest = load_poses(spec.poses, (config.width, config.height))
    if isinstance(spec.poses, KeypointTrack):
        track_aspect, job_aspect = spec.poses.width / spec.poses.height, config.width / config.height
        if abs(track_aspect / job_aspect - 1) > 0.02:
            spec.warnings.append(
                f"The keypoint track is {spec.poses.width}x{spec.poses.height} and the job {config.width}x{config.height}: "
                "the skeleton is stretched to the job's shape. Give the camera the job's aspect ratio, or set width and height.")
    fp = fingerprint(spec.reference, pose_digest, config, weights_identity, len(poses))
    return CheckedJob(spec, config, reference, poses, fp)


def open_folder(job: CheckedJob, weights_identity: str) -> tuple[JobFolder, set[int]]:
    """The job's output folder with its manifest written, and the frames already final in it (a
    folder holding another job — another fingerprint — is cleared first)."""
    folder = JobFolder(job.spec.output)
    same_job = folder.read_manifest().get("fingerprint") == job.fingerprint
    if not same_job:
        folder.clear_frames()
        folder.clear_state()
    folder.write_manifest(
        {"fingerprint": job.fingerprint, "engine_version": __version__, "id": job.spec.id, "frames": job.frames,
         "reference": str(job.spec.reference), "settings": asdict(job.config), "weights": weights_identity}
    )
    done = folder.finished_frames(job.frames, (job.config.width, job.config.height)) if same_job else set()
    return folder, done


@dataclass
class JobEvents:
    """The events of one running job: `progress` lines with the frame count and an ETA from the
    mean denoising step time."""

    emit: Emit
    frames_total: int
    done: set[int]
    started: float = field(default_factory=time.monotonic)
    _step_times: list[float] = field(default_factory=list)
    _last_step: float = field(default_factory=time.monotonic)

    def progress(self, stage: str, step: int, total: int, eta: float | None = None) -> None:
        self.emit("progress", stage=stage, step=step, total=total, frames_done=len(self.done), frames_total=self.frames_total,
                  elapsed_s=round(time.monotonic() - self.started, 3), eta_s=None if eta is None else round(eta, 2))

    def denoise_step(self, event: Progress) -> None:
        now = time.monotonic()
        self._step_times.append(now - self._last_step)
        self._last_step = now
        mean = sum(self._step_times) / len(self._step_times)
        self.progress("denoise", event.step, event.total, (event.total - event.step) * mean)

    def frame(self, index: int, path: Path) -> None:
        self.done.add(index)
        self.emit("frame", index=index + 1, path=str(path))
        self.progress("decode", len(self.done), self.frames_total)


def denoise(pipe: AnimateAnyonePipeline, job: CheckedJob, folder: JobFolder, events: JobEvents,
            should_cancel: Callable[[], bool]) -> torch.Tensor:
    """The final latents: from the checkpoint when denoising already finished, else denoised from
    the last checkpointed step (or from fresh noise), checkpointing after every step."""
    config = job.config
    resume = folder.load_state(job.fingerprint)
    if resume is not None and resume[0] + 1 >= config.steps:
        return resume[1]  # denoising already finished; only decoding was left (no reference pass needed)
    events.progress("prepare", 0, 1)
    prepared = pipe.prepare(job.reference, job.poses, config)
    events.progress("reference", 1, 1)
    if resume is not None:
        start_step, latents = resume[0] + 1, resume[1]
        log.info("resuming job %s at denoising step %d/%d", job.spec.id, start_step + 1, config.steps)
    else:
        start_step, latents = 0, pipe.initial_latents(job.frames, config)
    events.progress("denoise", start_step, config.steps)
    return pipe.denoise(prepared, latents, config, start_step, events.denoise_step, should_cancel,
                        on_step_end=lambda i, lat: folder.save_state(job.fingerprint, i, lat))


def decode(pipe: AnimateAnyonePipeline, job: CheckedJob, latents: torch.Tensor, folder: JobFolder, events: JobEvents,
           should_cancel: Callable[[], bool]) -> None:
    """Decode and write every frame not yet on disk; each is final once written."""
    for index, image in pipe.decode(latents, job.config, skip=events.done):
        if should_cancel():
            raise Cancelled()
        events.frame(index, folder.write_frame(index, image))


def run_job(
    pipe: AnimateAnyonePipeline,
    weights_identity: str,
    spec: JobSpec,
    emit: Emit,
    should_cancel: Callable[[], bool] = lambda: False,
) -> dict:
    """Run one job to completion; returns the `done` fields. Raises UserError subclasses
    (Cancelled when should_cancel() turns true: frames on disk and the checkpoint are kept)."""
    job = check_job(pipe, weights_identity, spec)
    folder, done = open_folder(job, weights_identity)
    events = JobEvents(emit, job.frames, done)
    emit("accepted", frames=job.frames, resumed_frames=len(done), settings=job.config.settings(), warnings=list(spec.warnings))
    try:
        if len(done) < job.frames:
            latents = denoise(pipe, job, folder, events, should_cancel)
            decode(pipe, job, latents, folder, events, should_cancel)
        video = folder.write_video(job.frames, job.config.fps) if spec.video else None
        folder.clear_state()
    except (torch.OutOfMemoryError, MemoryError) as exc:
        raise OutOfMemory(
            f"Out of memory while generating ({exc.__class__.__name__}). {len(done)} of {job.frames} frames are on disk.",
            "Lower the resolution or context_frames, use fp16 on a GPU, or close other programs; rerunning resumes.",
        ) from exc
    return {"frames": job.frames, "output": str(folder.path), "video": None if video is None else str(video),
            "elapsed_s": round(time.monotonic() - events.started, 3)}
