"""Training and evaluation samples: (reference frame, skeleton maps, target frames) of one character.

Everything is a pure function of (split, index): the same call gives the same pixels on any machine,
so training can resume exactly and evaluation sets need no files. The splits never share a seed:

  train    appearances and motion parameters from seed stream 0, motion families TRAIN_MOTIONS
  heldout  seed stream 1 (new characters, new speeds/phases/amplitudes); every third clip uses a
           motion family never seen in training (HELD_OUT_MOTIONS)

The reference is the same character either in a neutral standing pose or at another moment of the
same motion (as the paper samples reference and target from one video).

Two styles of character (`STYLES`): "flat" (characters.py, the shipped 64x96 model's data) and
"rich" (rich_characters.py: shading, textures, hair, props, varied bodies; the v2 model's data).
A rich clip draws from its own seed stream, so rich and flat clip i are unrelated characters, and
the flat style's pixels are exactly what they were before the rich style existed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from aa_engine.data import rich_characters
from aa_engine.data.characters import Appearance, render, to_pixels
from aa_engine.data.motions import (
    HELD_OUT_MOTIONS, TRAIN_MOTIONS, Pose, Proportions, head_centre, keypoints, motion_poses, sample_motion_params,
)
from aa_engine.data.pose_maps import draw_pose_map
from aa_engine.errors import BadRequest

SPLITS = {"train": 0, "heldout": 1}
STYLES = ("flat", "rich")
RICH_STREAM = 2  # extra seed word of the rich style: its characters never repeat the flat ones
FPS = 10.0


@dataclass
class Clip:
    reference: np.ndarray  # (H, W, 3) uint8
    poses: np.ndarray  # (f, H, W, 3) uint8 skeleton maps
    frames: np.ndarray  # (f, H, W, 3) uint8 ground truth
    keypoints: np.ndarray  # (f, 18, 3) pixel x, y, visibility
    reference_keypoints: np.ndarray  # (18, 3)
    motion: str


def _rng(split: str, index: int, style: str = "flat") -> np.random.Generator:
    if split not in SPLITS:
        raise BadRequest(f"Unknown data split {split!r}.", f"Use one of: {', '.join(SPLITS)}.")
    if style not in STYLES:
        raise BadRequest(f"Unknown data style {style!r}.", f"Use one of: {', '.join(STYLES)}.")
    if style == "rich":
        return np.random.default_rng([SPLITS[split], int(index), RICH_STREAM])
    return np.random.default_rng([SPLITS[split], int(index)])


def _motion_name(split: str, index: int, rng: np.random.Generator) -> str:
    if split == "heldout" and index % 3 == 2:
        return HELD_OUT_MOTIONS[int(rng.integers(len(HELD_OUT_MOTIONS)))]
    return TRAIN_MOTIONS[int(rng.integers(len(TRAIN_MOTIONS)))]


def _draw(appearance: Appearance, body: Proportions, pose: Pose, width: int, height: int):
    points = to_pixels(keypoints(pose, body), appearance, width, height)
    head = to_pixels(np.array([[*head_centre(pose, body), 1.0]]), appearance, width, height)[0, :2]
    return render(appearance, points, head, width, height), points


def _reference_pose(rng: np.random.Generator, motion: str, params: dict) -> Pose:
    if rng.random() < 0.5:
        return Pose(r_arm=float(rng.uniform(0.1, 0.5)), l_arm=float(rng.uniform(0.1, 0.5)), yaw=float(rng.uniform(-0.2, 0.2)))
    return motion_poses(motion, params, np.array([float(rng.uniform(0, 4.0))]))[0]


def make_clip(split: str, index: int, num_frames: int, width: int = 64, height: int = 96, style: str = "flat") -> Clip:
    """Clip `index` of `split`: one character, one motion, `num_frames` consecutive frames at FPS."""
    rng = _rng(split, index, style)
    if style == "rich":
        return _make_rich_clip(rng, split, index, num_frames, width, height)
    appearance = Appearance.sample(rng)
    body = Proportions.sample(rng)
    motion = _motion_name(split, index, rng)
    params = sample_motion_params(rng)
    start = float(rng.uniform(0, 2.0))
    times = start + np.arange(num_frames) / FPS
    ref_pose = _reference_pose(rng, motion, params)
    reference, ref_points = _draw(appearance, body, ref_pose, width, height)
    frames, poses, points = [], [], []
    for pose in motion_poses(motion, params, times):
        frame, pts = _draw(appearance, body, pose, width, height)
        frames.append(frame)
        points.append(pts)
        poses.append(draw_pose_map(width, height, pts))
    return Clip(reference, np.stack(poses), np.stack(frames), np.stack(points), ref_points, motion)


def _make_rich_clip(rng: np.random.Generator, split: str, index: int, num_frames: int, width: int, height: int) -> Clip:
    appearance = rich_characters.RichAppearance.sample(rng)
    body = Proportions.sample_varied(rng)
    motion = _motion_name(split, index, rng)
    params = sample_motion_params(rng)
    start = float(rng.uniform(0, 2.0))
    times = start + np.arange(num_frames) / FPS
    ref_pose = _reference_pose(rng, motion, params)
    s = rich_characters.SUPERSAMPLE
    scene = rich_characters.background(appearance, width * s, height * s)
    head_radius = body.head_radius * appearance.height * height

    def draw(pose: Pose) -> tuple[np.ndarray, np.ndarray]:
        points = to_pixels(keypoints(pose, body), appearance, width, height)
        head = to_pixels(np.array([[*head_centre(pose, body), 1.0]]), appearance, width, height)[0, :2]
        return rich_characters.render(appearance, points, head, head_radius, width, height, scene), points

    reference, ref_points = draw(ref_pose)
    frames, poses, points = [], [], []
    for pose in motion_poses(motion, params, times):
        frame, pts = draw(pose)
        frames.append(frame)
        points.append(pts)
        poses.append(draw_pose_map(width, height, pts))
    return Clip(reference, np.stack(poses), np.stack(frames), np.stack(points), ref_points, motion)


# -- tensors for training --------------------------------------------------------------------------
def to_signed(images: np.ndarray) -> torch.Tensor:
    """(..., H, W, 3) uint8 -> (..., 3, H, W) float32 in [-1, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(images)).float().div(127.5).sub(1.0)
    return t.movedim(-1, -3)


def to_unit(images: np.ndarray) -> torch.Tensor:
    """(..., H, W, 3) uint8 -> (..., 3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).float().div(255.0).movedim(-1, -3)


@dataclass
class Batch:
    references: torch.Tensor  # (b, 3, H, W) in [-1, 1]
    poses: torch.Tensor  # (b, f, 3, H, W) in [0, 1]
    targets: torch.Tensor  # (b, f, 3, H, W) in [-1, 1]
    reference_images: np.ndarray  # (b, H, W, 3) uint8, for CLIP preprocessing


def make_batch(split: str, indices: list[int], num_frames: int, width: int, height: int, style: str = "flat") -> Batch:
    clips = [make_clip(split, i, num_frames, width, height, style) for i in indices]
    refs = np.stack([c.reference for c in clips])
    return Batch(
        references=to_signed(refs),
        poses=to_unit(np.stack([c.poses for c in clips])),
        targets=to_signed(np.stack([c.frames for c in clips])),
        reference_images=refs,
    )
