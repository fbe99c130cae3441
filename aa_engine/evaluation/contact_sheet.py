"""Image grids for people to look at: training samples and the evaluation contact sheet."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw


def grid(rows: list[list[np.ndarray]], labels: list[str] | None = None, scale: int = 2, gap: int = 2) -> Image.Image:
    """rows of (H, W, 3) uint8 tiles (all the same size) -> one image, tiles scaled up `scale`x (nearest).

    labels: one short text per row, written in a strip on the left.
    """
    h, w = rows[0][0].shape[:2]
    cols = max(len(r) for r in rows)
    label_w = 80 if labels else 0
    sheet = Image.new("RGB", (label_w + cols * (w * scale + gap), len(rows) * (h * scale + gap)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for r, row in enumerate(rows):
        y = r * (h * scale + gap)
        if labels:
            draw.text((4, y + 4), labels[r], fill=(0, 0, 0))
        for c, tile in enumerate(row):
            image = Image.fromarray(tile).resize((w * scale, h * scale), Image.NEAREST)
            sheet.paste(image, (label_w + c * (w * scale + gap), y))
    return sheet
