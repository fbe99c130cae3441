"""Procedural 2D characters: a random appearance drawn over the keypoints of `motions.py`.

An `Appearance` is everything that stays fixed while the character moves: colours of skin, shirt
(with a pattern: plain, stripes, checks, two halves), sleeves, trousers, shoes, hair or hat, limb
thickness, background. `render` draws it in one pose with PIL at 2x and downsamples (antialiasing).
Drawing order, back to front: legs, torso, arms, head.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from aa_engine.data.motions import INDEX

SUPERSAMPLE = 2
SKIN_TONES = ((255, 224, 196), (241, 194, 125), (224, 172, 105), (198, 134, 66), (141, 85, 36), (92, 56, 30), (120, 200, 120), (150, 170, 255))
PATTERNS = ("plain", "h_stripes", "v_stripes", "checks", "halves")
HEADWEAR = ("none", "short_hair", "long_hair", "cap", "top_hat")


def _colour(rng: np.random.Generator, lo: int = 0, hi: int = 256) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(lo, hi, 3))


@dataclass
class Appearance:
    background: tuple[int, int, int]
    floor: tuple[int, int, int]
    skin: tuple[int, int, int]
    shirt: tuple[int, int, int]
    shirt_pattern: str
    pattern_colour: tuple[int, int, int]
    pattern_period: float  # in body-height units
    long_sleeves: bool
    trousers: tuple[int, int, int]
    shoes: tuple[int, int, int]
    headwear: str
    hair: tuple[int, int, int]
    limb_width: float  # in body-height units
    height: float  # standing height as a fraction of the image height
    centre_x: float  # pelvis x as a fraction of the image width

    @classmethod
    def sample(cls, rng: np.random.Generator) -> "Appearance":
        return cls(
            background=_colour(rng, 0, 256),
            floor=_colour(rng, 0, 256),
            skin=SKIN_TONES[int(rng.integers(len(SKIN_TONES)))],
            shirt=_colour(rng),
            shirt_pattern=PATTERNS[int(rng.integers(len(PATTERNS)))],
            pattern_colour=_colour(rng),
            pattern_period=float(rng.uniform(0.04, 0.09)),
            long_sleeves=bool(rng.random() < 0.5),
            trousers=_colour(rng),
            shoes=_colour(rng, 0, 120),
            headwear=HEADWEAR[int(rng.integers(len(HEADWEAR)))],
            hair=_colour(rng),
            limb_width=float(rng.uniform(0.045, 0.075)),
            height=float(rng.uniform(0.62, 0.8)),
            centre_x=float(rng.uniform(0.4, 0.6)),
        )


def to_pixels(points: np.ndarray, appearance: Appearance, width: int, height: int) -> np.ndarray:
    """Body-unit keypoints (k, 3) -> pixel keypoints (k, 3): pelvis at (centre_x*W, ~62% of the standing figure)."""
    scale = appearance.height * height
    feet = 0.94 * height  # ankles of the standing pose rest just above the bottom edge
    pelvis_y = feet - 0.45 * scale
    out = points.copy()
    out[:, 0] = appearance.centre_x * width + points[:, 0] * scale
    out[:, 1] = pelvis_y + points[:, 1] * scale
    return out


def _pattern(appearance: Appearance, size: tuple[int, int], scale: float) -> Image.Image:
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    period = max(2.0, appearance.pattern_period * scale)
    kind = appearance.shirt_pattern
    if kind == "h_stripes":
        mask = (yy // (period / 2)) % 2 == 0
    elif kind == "v_stripes":
        mask = (xx // (period / 2)) % 2 == 0
    elif kind == "checks":
        mask = ((yy // (period / 2)) + (xx // (period / 2))) % 2 == 0
    elif kind == "halves":
        mask = yy > h  # replaced below by the torso's own halves
    else:
        mask = np.zeros((h, w), dtype=bool)
    canvas = np.empty((h, w, 3), dtype=np.uint8)
    canvas[:] = appearance.shirt
    canvas[mask] = appearance.pattern_colour
    return Image.fromarray(canvas)


def _limb(draw: ImageDraw.ImageDraw, a, b, width: float, colour) -> None:
    draw.line([tuple(a), tuple(b)], fill=colour, width=max(1, int(round(width))))
    r = width / 2
    for p in (a, b):
        draw.ellipse([p[0] - r, p[1] - r, p[0] + r, p[1] + r], fill=colour)


def render(appearance: Appearance, pixel_points: np.ndarray, head: np.ndarray, width: int, height: int) -> np.ndarray:
    """Draw the character with keypoints `pixel_points` (18, 3) and head centre `head` (pixels) -> (H, W, 3) uint8."""
    s = SUPERSAMPLE
    W, H = width * s, height * s
    scale = appearance.height * height * s
    pts = pixel_points[:, :2] * s
    hc = head * s
    image = Image.new("RGB", (W, H), appearance.background)
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, int(0.9 * H), W, H], fill=appearance.floor)
    limb_w = appearance.limb_width * scale
    p = lambda name: pts[INDEX[name]]  # noqa: E731

    # Legs and shoes.
    for side in ("r", "l"):
        _limb(draw, p(f"{side}_hip"), p(f"{side}_knee"), limb_w * 1.15, appearance.trousers)
        _limb(draw, p(f"{side}_knee"), p(f"{side}_ankle"), limb_w, appearance.trousers)
        a = p(f"{side}_ankle")
        draw.ellipse([a[0] - limb_w * 0.7, a[1] - limb_w * 0.3, a[0] + limb_w * 0.7, a[1] + limb_w * 0.5], fill=appearance.shoes)

    # Torso: a quad from the shoulders to the hips, filled with the shirt pattern.
    rs, ls, rh, lh = p("r_shoulder"), p("l_shoulder"), p("r_hip"), p("l_hip")
    grow = limb_w * 0.45
    centre = (rs + ls + rh + lh) / 4
    quad = [tuple(q + (q - centre) / max(np.linalg.norm(q - centre), 1e-6) * grow) for q in (rs, ls, lh, rh)]
    mask = Image.new("L", (W, H), 0)
    ImageDraw.Draw(mask).polygon(quad, fill=255)
    shirt = _pattern(appearance, (W, H), scale)
    if appearance.shirt_pattern == "halves":
        halves = Image.new("L", (W, H), 0)
        mid_top, mid_bottom = (rs + ls) / 2, (rh + lh) / 2
        ImageDraw.Draw(halves).polygon([tuple(rs), tuple(mid_top), tuple(mid_bottom), tuple(rh), (0, H), (0, 0)], fill=255)
        shirt.paste(appearance.pattern_colour, mask=halves)
    image.paste(shirt, mask=mask)

    # Arms and hands.
    for side in ("r", "l"):
        sleeve = appearance.shirt
        _limb(draw, p(f"{side}_shoulder"), p(f"{side}_elbow"), limb_w, sleeve)
        _limb(draw, p(f"{side}_elbow"), p(f"{side}_wrist"), limb_w * 0.9, sleeve if appearance.long_sleeves else appearance.skin)
        wr = p(f"{side}_wrist")
        r = limb_w * 0.55
        draw.ellipse([wr[0] - r, wr[1] - r, wr[0] + r, wr[1] + r], fill=appearance.skin)

    # Neck, head, face, hair/hat.
    _limb(draw, p("neck"), hc, limb_w * 0.7, appearance.skin)
    hr = float(np.linalg.norm(p("neck") - hc)) * 0.0 + appearance.height * height * s * 0.075
    hr = max(hr, 2.0)
    hair = appearance.hair
    if appearance.headwear == "long_hair":
        draw.rectangle([hc[0] - hr * 1.1, hc[1] - hr * 0.2, hc[0] + hr * 1.1, hc[1] + hr * 1.6], fill=hair)
    draw.ellipse([hc[0] - hr * 0.85, hc[1] - hr, hc[0] + hr * 0.85, hc[1] + hr], fill=appearance.skin)
    if appearance.headwear in ("short_hair", "long_hair"):
        draw.chord([hc[0] - hr * 0.9, hc[1] - hr * 1.1, hc[0] + hr * 0.9, hc[1] + hr * 0.6], 180, 360, fill=hair)
    elif appearance.headwear == "cap":
        draw.chord([hc[0] - hr * 0.9, hc[1] - hr * 1.1, hc[0] + hr * 0.9, hc[1] + hr * 0.5], 180, 360, fill=hair)
        draw.rectangle([hc[0] - hr * 1.3, hc[1] - hr * 0.35, hc[0] + hr * 0.3, hc[1] - hr * 0.15], fill=hair)
    elif appearance.headwear == "top_hat":
        draw.rectangle([hc[0] - hr * 1.2, hc[1] - hr * 0.95, hc[0] + hr * 1.2, hc[1] - hr * 0.7], fill=hair)
        draw.rectangle([hc[0] - hr * 0.7, hc[1] - hr * 2.0, hc[0] + hr * 0.7, hc[1] - hr * 0.8], fill=hair)
    for eye in ("r_eye", "l_eye"):
        e = pts[INDEX[eye]]
        if pixel_points[INDEX[eye], 2] > 0:
            r = max(1.0, hr * 0.16)
            draw.ellipse([e[0] - r, e[1] - r, e[0] + r, e[1] + r], fill=(20, 20, 20))
    return np.asarray(image.resize((width, height), Image.LANCZOS))
