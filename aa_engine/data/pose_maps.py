"""Skeleton maps for the synthetic data, drawn by the add-on's own drawing code.

The model must see at training time exactly the maps the add-on draws at inference time, so there
is one implementation: `blender_addon/skeleton/draw.py` (`draw_pose_map`, DWPose style; it needs
only numpy, and `blender_addon` imports without bpy).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


@lru_cache(maxsize=1)
def _drawer():
    try:
        from blender_addon.skeleton.draw import draw_pose_map as drawer
    except ImportError:
        return None
    return drawer


def draw_pose_map(width: int, height: int, body: np.ndarray) -> np.ndarray:
    """body: (18, 3) pixel x, y, confidence (COCO-18) -> (height, width, 3) uint8 skeleton map."""
    drawer = _drawer()
    if drawer is None:
        return _interim_draw(width, height, body)
    return np.asarray(drawer(width, height, body))


# TEMPORARY until blender_addon/skeleton/draw.py lands on main: same limb/colour layout, not pixel-exact.
_LIMBS = [(1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17)]
_COLOURS = [(255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0), (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85)]


def _interim_draw(width: int, height: int, body: np.ndarray) -> np.ndarray:
    import math

    import cv2

    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    for i, (a, b) in enumerate(_LIMBS):
        if body[a, 2] <= 0 or body[b, 2] <= 0:
            continue
        x = (body[a, 0], body[b, 0])
        y = (body[a, 1], body[b, 1])
        length = math.hypot(x[0] - x[1], y[0] - y[1])
        angle = math.degrees(math.atan2(y[0] - y[1], x[0] - x[1]))
        poly = cv2.ellipse2Poly((int(np.mean(x)), int(np.mean(y))), (int(length / 2), 4), int(angle), 0, 360, 1)
        cv2.fillConvexPoly(canvas, poly, _COLOURS[i])
    canvas = (canvas * 0.6).astype(np.uint8)
    for i in range(18):
        if body[i, 2] > 0:
            cv2.circle(canvas, (int(body[i, 0]), int(body[i, 1])), 4, _COLOURS[i], thickness=-1)
    return canvas
