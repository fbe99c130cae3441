"""Skeleton maps for the synthetic data, drawn by the add-on's own drawing code.

The model must see at training time exactly the maps the add-on draws at inference time, so there
is one implementation: `blender_addon/skeleton/draw.py` (`draw_pose_map`, DWPose style; it needs
only numpy, and `blender_addon` imports without bpy).
"""

from __future__ import annotations

import numpy as np
from blender_addon.skeleton.draw import draw_pose_map as _draw


def draw_pose_map(width: int, height: int, body: np.ndarray) -> np.ndarray:
    """body: (18, 3) pixel x, y, confidence (COCO-18) -> (height, width, 3) uint8 skeleton map."""
    return np.asarray(_draw(width, height, body))
