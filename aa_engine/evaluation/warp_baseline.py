"""A non-diffusion baseline: warp the reference image limb by limb onto the target pose.

Every target pixel is assigned to its nearest body segment (a bone between two keypoints) of the
target pose; its position along and across that segment is carried to the same segment of the
reference pose and the reference is sampled there (bilinear). Pixels far from every segment are
background and get the reference's border colour (median of its edge pixels).
"""

from __future__ import annotations

import numpy as np

# COCO-18 bones used for the assignment: head, arms, legs and the torso's outline and diagonals.
SEGMENTS = ((1, 0), (2, 3), (3, 4), (5, 6), (6, 7), (8, 9), (9, 10), (11, 12), (12, 13), (1, 8), (1, 11), (2, 8), (5, 11), (2, 5), (8, 11))


def _bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    x = np.clip(x, 0, w - 1)
    y = np.clip(y, 0, h - 1)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    img = image.astype(np.float64)
    top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
    bottom = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def warp_reference(reference: np.ndarray, reference_points: np.ndarray, target_points: np.ndarray, reach: float = 0.08) -> np.ndarray:
    """reference (H, W, 3) uint8 with keypoints (18, 3) -> (H, W, 3) uint8 in the pose `target_points`.

    reach: how far from a segment (fraction of the image height) a pixel still belongs to the body.
    """
    h, w = reference.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    p = np.stack([xx.ravel() + 0.5, yy.ravel() + 0.5], axis=1)
    usable = [s for s in SEGMENTS if min(reference_points[s[0], 2], reference_points[s[1], 2], target_points[s[0], 2], target_points[s[1], 2]) > 0]
    a_t = np.array([target_points[i, :2] for i, _ in usable])
    b_t = np.array([target_points[j, :2] for _, j in usable])
    d = b_t - a_t
    length2 = np.maximum((d**2).sum(1), 1e-6)
    u = ((p[:, None, :] - a_t[None]) * d[None]).sum(2) / length2  # (n, s) position along the segment
    closest = a_t[None] + np.clip(u, 0, 1)[..., None] * d[None]
    dist = np.linalg.norm(p[:, None, :] - closest, axis=2)
    k = dist.argmin(1)
    rows = np.arange(len(p))
    normal_t = np.stack([-d[:, 1], d[:, 0]], 1) / np.sqrt(length2)[:, None]
    v = ((p - a_t[k]) * normal_t[k]).sum(1)  # signed distance across the segment, in pixels
    a_r = np.array([reference_points[i, :2] for i, _ in usable])
    b_r = np.array([reference_points[j, :2] for _, j in usable])
    d_r = b_r - a_r
    normal_r = np.stack([-d_r[:, 1], d_r[:, 0]], 1) / np.maximum(np.linalg.norm(d_r, axis=1), 1e-6)[:, None]
    source = a_r[k] + u[rows, k][:, None] * d_r[k] + v[:, None] * normal_r[k]
    out = _bilinear(reference, source[:, 0] - 0.5, source[:, 1] - 0.5)
    edges = np.concatenate([reference[0], reference[-1], reference[:, 0], reference[:, -1]])
    background = np.median(edges, axis=0)
    out[dist[rows, k] > reach * h] = background
    return np.clip(out.reshape(h, w, 3).round(), 0, 255).astype(np.uint8)
