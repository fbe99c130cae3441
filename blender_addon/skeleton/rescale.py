"""Pose rescaling: make the driving skeleton's proportions and placement match the reference character.

Animate Anyone is conditioned on skeleton maps; when the driving skeleton has other limb lengths
or stands elsewhere in the frame than the character in the reference image, the model stretches
the character to the skeleton. Rescaling (see docs/pose_rescaling.md) fixes that before drawing:

1. Per-limb ratios. The body is a tree rooted at the neck (neck -> shoulders -> elbows -> wrists,
   neck -> hips -> knees -> ankles, neck -> nose -> eyes -> ears). For every limb,
   ratio = reference length / driving length at the alignment frame (the frame whose pose best
   matches the reference image's pose; the first by default).
2. Rebuild every frame from the root outwards: child = new parent + ratio * (child - parent) in the
   driving frame. Limb directions and the per-frame foreshortening of the driving motion are kept;
   only lengths change.
3. Placement: the neck follows the driving neck's motion relative to the alignment frame, scaled
   by the body ratio (reference height / driving height, neck to mid-ankle), starting from the
   reference's neck: the character keeps its place in the frame and its overall size.
Missing points stay missing; a point whose parent is missing in a frame is placed from the neck
with the body ratio; a limb missing in the reference uses the body ratio.

numpy only: runs in Blender and in the engine's environment.
"""

from __future__ import annotations

import numpy as np

# (parent, child) in the order a tree walk from the neck (1) reaches them.
BODY_TREE = (
    (1, 2), (2, 3), (3, 4), (1, 5), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12),
    (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)
NECK = 1


def _present(points: np.ndarray) -> np.ndarray:
    return np.isfinite(points[..., :2]).all(axis=-1) & (points[..., 2] > 0)


def _height(body: np.ndarray) -> float | None:
    """Neck to the midpoint of the ankles (or of whichever ankle is there), in pixels."""
    ok = _present(body)
    ankles = [i for i in (10, 13) if ok[i]]
    if not ok[NECK] or not ankles:
        return None
    return float(np.linalg.norm(body[ankles, :2].mean(axis=0) - body[NECK, :2]))


def limb_ratios(driving_pose: np.ndarray, reference: np.ndarray) -> tuple[dict[tuple[int, int], float], float]:
    """Per-limb length ratios reference/driving and the body ratio, from two (18, 3) poses."""
    d_ok, r_ok = _present(driving_pose), _present(reference)
    d_height, r_height = _height(driving_pose), _height(reference)
    body = r_height / d_height if d_height and r_height else 1.0
    ratios = {}
    for parent, child in BODY_TREE:
        if d_ok[parent] and d_ok[child] and r_ok[parent] and r_ok[child]:
            d_len = np.linalg.norm(driving_pose[child, :2] - driving_pose[parent, :2])
            r_len = np.linalg.norm(reference[child, :2] - reference[parent, :2])
            ratios[(parent, child)] = float(r_len / d_len) if d_len > 1e-6 else body
        else:
            ratios[(parent, child)] = body
    return ratios, body


def rescale_body_track(driving: np.ndarray, reference: np.ndarray, align_frame: int = 0) -> np.ndarray:
    """Rescale a body track to the reference's proportions and placement.

    driving: (f, 18, 3) pixel x, y, confidence; reference: (18, 3), same convention (its own image
    size may differ from the track's only if both were brought to the same pixel grid first).
    Returns a new (f, 18, 3) array; confidences are copied, missing points stay missing.
    """
    driving = np.asarray(driving, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if driving.ndim != 3 or driving.shape[1:] != (18, 3) or reference.shape != (18, 3):
        raise ValueError(f"expected driving (f, 18, 3) and reference (18, 3), got {driving.shape} and {reference.shape}")
    ratios, body = limb_ratios(driving[align_frame], reference)
    out = np.full_like(driving, np.nan)
    out[..., 2] = 0.0
    align_ok = _present(driving[align_frame])
    ref_ok = _present(reference)
    for f in range(len(driving)):
        frame = driving[f]
        ok = _present(frame)
        if not ok[NECK]:
            continue  # without the root there is nothing to hang the skeleton on
        if align_ok[NECK] and ref_ok[NECK]:
            out[f, NECK, :2] = reference[NECK, :2] + body * (frame[NECK, :2] - driving[align_frame, NECK, :2])
        else:
            out[f, NECK, :2] = frame[NECK, :2]
        out[f, NECK, 2] = frame[NECK, 2]
        placed = {NECK}
        for parent, child in BODY_TREE:
            if not ok[child]:
                continue
            if parent in placed:
                out[f, child, :2] = out[f, parent, :2] + ratios[(parent, child)] * (frame[child, :2] - frame[parent, :2])
            else:  # the parent is missing in this frame: place from the neck
                out[f, child, :2] = out[f, NECK, :2] + body * (frame[child, :2] - frame[NECK, :2])
            out[f, child, 2] = frame[child, 2]
            placed.add(child)
    return out


def follow_anchor(points: np.ndarray, old_anchor: np.ndarray, new_anchor: np.ndarray, scale: float) -> np.ndarray:
    """Move a group of points (a hand around its wrist, a face around the nose) with its anchor,
    scaled about it. points (n, 3); anchors (2,) or (3,). Missing points stay missing."""
    points = np.array(points, dtype=np.float64)
    ok = _present(points)
    points[ok, :2] = np.asarray(new_anchor[:2]) + scale * (points[ok, :2] - np.asarray(old_anchor[:2]))
    return points
