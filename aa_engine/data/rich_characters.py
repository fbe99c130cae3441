"""Richer procedural characters (the "rich" data style of the v2 default model, docs/default_model.md).

The flat characters of `characters.py` are single-colour shapes on a plain background: an
autoencoder learns them quickly but a model trained on them has never seen shading, texture or
small details. A `RichAppearance` adds what a real reference image has and the animation must keep:

  - shading: every limb and the torso are outlined, shaded away from a per-character light side
    and carry a highlight toward it; a soft shadow on the floor under the feet;
  - patterned clothes: tops (plain, stripes, checks, two halves, dots, diagonal stripes), trousers,
    shorts or a skirt, a belt, sometimes a scarf;
  - hair (bald, short, long, ponytail, spiky, bun) and hats (cap, top hat, beanie, wide brim);
  - a prop in one hand (ball, staff, bag, flag) that follows the wrist;
  - a face (eyes that follow the yaw, a mouth);
  - textured backgrounds (gradient, stripes, tiles, dots, smooth noise) and a floor;
  - a quarter of the characters keep flat colours everywhere, so flat references (like
    examples/reference.png) stay inside what the model has seen.

Body proportions vary more than the flat style's (child-like, tall, stocky: `Proportions.sample_varied`).
Drawing is PIL at 2x, downsampled (antialiasing), back to front: background, shadow, legs, torso,
arms, prop, head.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from aa_engine.data.characters import SKIN_TONES, _colour
from aa_engine.data.motions import INDEX

SUPERSAMPLE = 2
BACKGROUNDS = ("plain", "gradient", "stripes", "tiles", "dots", "noise")
TOPS = ("plain", "h_stripes", "v_stripes", "checks", "halves", "dots", "diagonal")
BOTTOMS = ("trousers", "striped_trousers", "shorts", "skirt")
HAIR = ("bald", "short", "long", "ponytail", "spiky", "bun")
HATS = ("none", "none", "cap", "top_hat", "beanie", "wide_brim")
PROPS = ("none", "none", "ball", "staff", "bag", "flag")

Colour = tuple[int, int, int]


def _shade(colour: Colour, factor: float) -> Colour:
    """Darker (factor < 1) or lighter (factor > 1, toward white) version of a colour."""
    c = np.asarray(colour, dtype=float)
    c = c * factor if factor <= 1 else c + (255 - c) * (factor - 1)
    return tuple(int(v) for v in np.clip(c, 0, 255))


@dataclass
class RichAppearance:
    flat: bool  # no shading, outlines or textures (a quarter of the characters)
    background_kind: str
    background: Colour
    background_2: Colour
    background_seed: int
    background_period: float  # texture period as a fraction of the image height
    floor: Colour
    floor_2: Colour
    skin: Colour
    top: str
    shirt: Colour
    pattern_colour: Colour
    pattern_period: float  # in body-height units
    long_sleeves: bool
    bottom: str
    trousers: Colour
    trousers_2: Colour
    belt: Colour | None
    scarf: Colour | None
    shoes: Colour
    hair_style: str
    hair: Colour
    hat: str
    hat_colour: Colour
    prop: str
    prop_colour: Colour
    prop_side: str
    eye_colour: Colour
    light: float  # +1: light from the image's right, -1: from the left
    outline: float  # outline width in limb widths
    limb_width: float  # in body-height units
    height: float  # standing height as a fraction of the image height
    centre_x: float  # pelvis x as a fraction of the image width

    @classmethod
    def sample(cls, rng: np.random.Generator) -> "RichAppearance":
        pick = lambda options: options[int(rng.integers(len(options)))]  # noqa: E731
        flat = bool(rng.random() < 0.25)
        return cls(
            flat=flat,
            background_kind="plain" if flat else pick(BACKGROUNDS),
            background=_colour(rng), background_2=_colour(rng), background_seed=int(rng.integers(2**31)),
            background_period=float(rng.uniform(0.06, 0.2)),
            floor=_colour(rng), floor_2=_colour(rng),
            skin=SKIN_TONES[int(rng.integers(len(SKIN_TONES)))] if rng.random() < 0.8 else _colour(rng, 40, 256),
            top=pick(TOPS), shirt=_colour(rng), pattern_colour=_colour(rng), pattern_period=float(rng.uniform(0.035, 0.09)),
            long_sleeves=bool(rng.random() < 0.5),
            bottom=pick(BOTTOMS), trousers=_colour(rng), trousers_2=_colour(rng),
            belt=_colour(rng, 0, 200) if rng.random() < 0.4 else None,
            scarf=_colour(rng) if rng.random() < 0.25 else None,
            shoes=_colour(rng, 0, 160),
            hair_style=pick(HAIR), hair=_colour(rng, 0, 256),
            hat=pick(HATS), hat_colour=_colour(rng),
            prop=pick(PROPS), prop_colour=_colour(rng), prop_side=pick(("r", "l")),
            eye_colour=_colour(rng, 0, 90),
            light=float(rng.choice([-1.0, 1.0])),
            outline=0.0 if flat else float(rng.uniform(0.08, 0.18)),
            limb_width=float(rng.uniform(0.04, 0.085)),
            height=float(rng.uniform(0.6, 0.82)),
            centre_x=float(rng.uniform(0.38, 0.62)),
        )


# -- background -------------------------------------------------------------------------------------
def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """(h, w) values in [0, 1]: random values on a coarse grid, bilinearly upsampled (a cheap value noise)."""
    gh, gw = cells + 1, max(2, int(round(cells * w / h)) + 1)
    grid = rng.random((gh, gw))
    small = Image.fromarray((grid * 255).astype(np.uint8))
    return np.asarray(small.resize((w, h), Image.BILINEAR), dtype=np.float32) / 255.0


def background(appearance: RichAppearance, width: int, height: int) -> np.ndarray:
    """The static scene behind the character: (height, width, 3) uint8 (wall + floor), a pure function of the appearance."""
    a = appearance
    rng = np.random.default_rng(a.background_seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    period = max(4.0, a.background_period * height)
    kind = a.background_kind
    if kind == "gradient":
        mix = yy / height
    elif kind == "stripes":
        mix = ((xx + 0.3 * yy) // (period / 2) % 2).astype(np.float32) * 0.6
    elif kind == "tiles":
        mix = (((xx // period) + (yy // period)) % 2).astype(np.float32) * 0.35
        mix = np.maximum(mix, ((xx % period) < 2) | ((yy % period) < 2))  # grout lines
    elif kind == "dots":
        cx = (xx % period) - period / 2
        cy = (yy % period) - period / 2
        mix = (cx * cx + cy * cy < (period * 0.22) ** 2).astype(np.float32)
    elif kind == "noise":
        mix = _smooth_noise(rng, height, width, int(rng.integers(3, 9)))
    else:
        mix = np.zeros_like(yy)
    c1, c2 = np.asarray(a.background, np.float32), np.asarray(a.background_2, np.float32)
    image = c1 * (1 - mix[..., None]) + c2 * mix[..., None]
    floor_top = int(0.9 * height)
    fy = yy[floor_top:] - floor_top
    if a.flat:
        floor = np.broadcast_to(np.asarray(a.floor, np.float32), fy.shape + (3,))
    else:
        # Floor boards converging toward a vanishing point above the image, darker toward the wall.
        boards = (((xx[floor_top:] - width / 2) / (1 + fy / max(1, height - floor_top)) // max(3.0, period * 0.8)) % 2)[..., None]
        f1, f2 = np.asarray(a.floor, np.float32), np.asarray(a.floor_2, np.float32)
        floor = f1 * (1 - 0.35 * boards) + f2 * 0.35 * boards
        floor = floor * (0.8 + 0.2 * fy[..., None] / max(1, height - floor_top))
    image[floor_top:] = floor
    return np.clip(image, 0, 255).astype(np.uint8)


# -- shapes -----------------------------------------------------------------------------------------
def _segment(draw: ImageDraw.ImageDraw, a, b, width: float, colour: Colour) -> None:
    draw.line([tuple(a), tuple(b)], fill=colour, width=max(1, int(round(width))))
    r = width / 2
    for p in (a, b):
        draw.ellipse([p[0] - r, p[1] - r, p[0] + r, p[1] + r], fill=colour)


def _limb(draw: ImageDraw.ImageDraw, a, b, width: float, colour: Colour, look: RichAppearance) -> None:
    """A rounded limb: outline, base colour, a shaded side away from the light and a highlight toward it."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if look.flat:
        _segment(draw, a, b, width, colour)
        return
    _segment(draw, a, b, width * (1 + 2 * look.outline), _shade(colour, 0.35))
    _segment(draw, a, b, width, _shade(colour, 0.75))
    d = b - a
    n = np.array([-d[1], d[0]]) / max(np.linalg.norm(d), 1e-6)
    if n[0] * look.light < 0:
        n = -n
    _segment(draw, a + n * width * 0.12, b + n * width * 0.12, width * 0.7, colour)
    _segment(draw, a + n * width * 0.25, b + n * width * 0.25, width * 0.22, _shade(colour, 1.35))


def _cloth(kind: str, base: Colour, other: Colour, size: tuple[int, int], period: float) -> np.ndarray:
    """(H, W, 3) uint8 fabric of a pattern kind, at canvas size."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    half = max(1.0, period / 2)
    if kind in ("h_stripes", "striped_trousers"):
        mask = (yy // half) % 2 == 0
    elif kind == "v_stripes":
        mask = (xx // half) % 2 == 0
    elif kind == "checks":
        mask = ((yy // half) + (xx // half)) % 2 == 0
    elif kind == "dots":
        cx, cy = (xx % period) - period / 2, (yy % period) - period / 2
        mask = cx * cx + cy * cy < (period * 0.25) ** 2
    elif kind == "diagonal":
        mask = ((xx + yy) // half) % 2 == 0
    else:
        mask = np.zeros((h, w), dtype=bool)
    canvas = np.empty((h, w, 3), dtype=np.uint8)
    canvas[:] = base
    canvas[mask] = other
    return canvas


def _torso(image: Image.Image, pts, look: RichAppearance, limb_w: float, scale: float) -> None:
    """The shirt: a quad from the shoulders to the hips, patterned, shaded across, outlined."""
    p = lambda name: pts[INDEX[name]]  # noqa: E731
    W, H = image.size
    rs, ls, rh, lh = p("r_shoulder"), p("l_shoulder"), p("r_hip"), p("l_hip")
    grow = limb_w * 0.5
    centre = (rs + ls + rh + lh) / 4
    quad = [tuple(q + (q - centre) / max(np.linalg.norm(q - centre), 1e-6) * grow) for q in (rs, ls, lh, rh)]
    x0 = int(max(0, min(q[0] for q in quad) - 4))
    x1 = int(min(W, max(q[0] for q in quad) + 5))
    y0 = int(max(0, min(q[1] for q in quad) - 4))
    y1 = int(min(H, max(q[1] for q in quad) + 5))
    if x1 <= x0 or y1 <= y0:
        return
    box = (x1 - x0, y1 - y0)
    local = [(q[0] - x0, q[1] - y0) for q in quad]
    fabric = _cloth(look.top, look.shirt, look.pattern_colour, box, max(2.0, look.pattern_period * scale)).astype(np.float32)
    if look.top == "halves":
        halves = Image.new("L", box, 0)
        mt, mb = (rs + ls) / 2 - (x0, y0), (rh + lh) / 2 - (x0, y0)
        ImageDraw.Draw(halves).polygon([tuple(rs - (x0, y0)), tuple(mt), tuple(mb), tuple(rh - (x0, y0)), (0, box[1]), (-box[0], 0)], fill=255)
        m = np.asarray(halves, np.float32)[..., None] / 255
        fabric = fabric * (1 - m) + np.asarray(look.pattern_colour, np.float32) * m
    if not look.flat:
        across = (np.arange(box[0], dtype=np.float32) / max(1, box[0] - 1) - 0.5) * look.light  # -0.5 dark .. 0.5 lit
        fabric = fabric * (0.82 + 0.36 * across)[None, :, None]
    fabric = Image.fromarray(np.clip(fabric, 0, 255).astype(np.uint8))
    mask = Image.new("L", box, 0)
    ImageDraw.Draw(mask).polygon(local, fill=255)
    if not look.flat:
        ImageDraw.Draw(image).polygon(quad, outline=_shade(look.shirt, 0.35), width=max(1, int(round(limb_w * look.outline * 2))))
    image.paste(fabric, (x0, y0), mask=mask)


def _head(draw: ImageDraw.ImageDraw, hc, hr: float, pixel_points, pts, look: RichAppearance) -> None:
    x, y = hc
    hair, style = look.hair, look.hair_style
    ol = 0 if look.flat else max(1, int(round(hr * 0.08)))
    dark = _shade(look.skin, 0.4)
    # Behind the head: long hair, ponytail, bun.
    if style == "long":
        draw.rounded_rectangle([x - hr * 1.1, y - hr * 0.3, x + hr * 1.1, y + hr * 1.7], radius=hr * 0.5, fill=hair)
    elif style == "ponytail":
        tail_x = x - look.light * hr * 1.0
        draw.ellipse([tail_x - hr * 0.45, y - hr * 0.2, tail_x + hr * 0.45, y + hr * 1.3], fill=hair)
    elif style == "bun":
        draw.ellipse([x - hr * 0.5, y - hr * 1.55, x + hr * 0.5, y - hr * 0.6], fill=hair)
    draw.ellipse([x - hr * 0.85 - ol, y - hr - ol, x + hr * 0.85 + ol, y + hr + ol], fill=dark if ol else look.skin)
    draw.ellipse([x - hr * 0.85, y - hr, x + hr * 0.85, y + hr], fill=look.skin)
    if not look.flat:  # cheek shading away from the light
        off = -look.light * hr * 0.45
        draw.chord([x - hr * 0.85, y - hr, x + hr * 0.85, y + hr], 90 + 90 * look.light, 270 + 90 * look.light, fill=_shade(look.skin, 0.85))
        draw.ellipse([x - hr * 0.62 - off * 0.3, y - hr * 0.8, x + hr * 0.62 - off * 0.3, y + hr * 0.85], fill=look.skin)
    # Face: eyes where the keypoints are (they follow the yaw), a mouth under the nose.
    for eye in ("r_eye", "l_eye"):
        if pixel_points[INDEX[eye], 2] > 0:
            e = pts[INDEX[eye]]
            r = max(1.0, hr * 0.17)
            draw.ellipse([e[0] - r * 1.3, e[1] - r * 1.3, e[0] + r * 1.3, e[1] + r * 1.3], fill=(245, 245, 245))
            draw.ellipse([e[0] - r, e[1] - r, e[0] + r, e[1] + r], fill=look.eye_colour)
    if pixel_points[INDEX["nose"], 2] > 0:
        n = pts[INDEX["nose"]]
        draw.line([(n[0] - hr * 0.25, n[1] + hr * 0.3), (n[0] + hr * 0.25, n[1] + hr * 0.3)], fill=(120, 40, 40), width=max(1, int(hr * 0.1)))
    # On top: short/spiky hair, hats.
    if style in ("short", "long", "ponytail", "bun"):
        draw.chord([x - hr * 0.92, y - hr * 1.12, x + hr * 0.92, y + hr * 0.55], 180, 360, fill=hair)
    elif style == "spiky":
        for k in range(5):
            sx = x + (k - 2) * hr * 0.38
            draw.polygon([(sx - hr * 0.25, y - hr * 0.55), (sx + hr * 0.25, y - hr * 0.55), (sx + (k - 2) * hr * 0.1, y - hr * 1.45)], fill=hair)
        draw.chord([x - hr * 0.9, y - hr * 1.05, x + hr * 0.9, y + hr * 0.4], 180, 360, fill=hair)
    hat = look.hat_colour
    band = _shade(hat, 0.5)
    if look.hat == "cap":
        draw.chord([x - hr * 0.95, y - hr * 1.2, x + hr * 0.95, y + hr * 0.45], 180, 360, fill=hat)
        peak = x + hr * 1.45 * look.light  # the visor points toward the light side
        draw.rectangle([min(x, peak), y - hr * 0.4, max(x, peak), y - hr * 0.18], fill=band)
    elif look.hat == "top_hat":
        draw.rectangle([x - hr * 1.25, y - hr * 0.98, x + hr * 1.25, y - hr * 0.72], fill=hat)
        draw.rectangle([x - hr * 0.72, y - hr * 2.1, x + hr * 0.72, y - hr * 0.8], fill=hat)
        draw.rectangle([x - hr * 0.72, y - hr * 1.15, x + hr * 0.72, y - hr * 0.9], fill=band)
    elif look.hat == "beanie":
        draw.chord([x - hr * 0.98, y - hr * 1.3, x + hr * 0.98, y + hr * 0.3], 180, 360, fill=hat)
        draw.ellipse([x - hr * 0.22, y - hr * 1.55, x + hr * 0.22, y - hr * 1.1], fill=band)
    elif look.hat == "wide_brim":
        draw.ellipse([x - hr * 1.7, y - hr * 0.95, x + hr * 1.7, y - hr * 0.55], fill=band)
        draw.chord([x - hr * 0.85, y - hr * 1.6, x + hr * 0.85, y - hr * 0.3], 180, 360, fill=hat)


def _prop(draw: ImageDraw.ImageDraw, elbow, wrist, size: float, look: RichAppearance) -> None:
    d = wrist - elbow
    d = d / max(np.linalg.norm(d), 1e-6)
    c = look.prop_colour
    if look.prop == "ball":
        centre = wrist + d * size * 0.9
        draw.ellipse([centre[0] - size, centre[1] - size, centre[0] + size, centre[1] + size], fill=c, outline=_shade(c, 0.4), width=max(1, int(size * 0.15)))
        draw.line([(centre[0] - size, centre[1]), (centre[0] + size, centre[1])], fill=_shade(c, 0.4), width=max(1, int(size * 0.15)))
    elif look.prop == "staff":
        n = np.array([-d[1], d[0]])
        _segment(draw, wrist - n * size * 2.5, wrist + n * size * 2.5, size * 0.35, c)
    elif look.prop == "bag":
        draw.line([tuple(wrist), (wrist[0], wrist[1] + size * 0.8)], fill=_shade(c, 0.5), width=max(1, int(size * 0.2)))
        draw.rounded_rectangle([wrist[0] - size, wrist[1] + size * 0.7, wrist[0] + size, wrist[1] + size * 2.2], radius=size * 0.3, fill=c)
    elif look.prop == "flag":
        top = wrist + np.array([0.0, -size * 3.2])
        _segment(draw, wrist + np.array([0.0, size * 0.5]), top, size * 0.2, (90, 60, 30))
        draw.polygon([tuple(top), (top[0] + size * 1.8 * look.light, top[1] + size * 0.6), (top[0], top[1] + size * 1.2)], fill=c)


def render(appearance: RichAppearance, pixel_points: np.ndarray, head: np.ndarray, head_radius: float, width: int, height: int,
           scene: np.ndarray | None = None) -> np.ndarray:
    """Draw the character with keypoints `pixel_points` (18, 3), head centre `head` and head radius
    `head_radius` (pixels) -> (H, W, 3) uint8.

    scene: the background at the supersampled size (`background(appearance, 2W, 2H)`); pass it to
    draw many frames of one character without recomputing it.
    """
    look = appearance
    s = SUPERSAMPLE
    W, H = width * s, height * s
    scale = look.height * height * s
    pts = pixel_points[:, :2] * s
    hc = head * s
    image = Image.fromarray(background(look, W, H) if scene is None else scene)
    draw = ImageDraw.Draw(image)
    limb_w = look.limb_width * scale
    p = lambda name: pts[INDEX[name]]  # noqa: E731

    # Shadow on the floor under the feet.
    if not look.flat:
        fx = (p("r_ankle")[0] + p("l_ankle")[0]) / 2
        fy = max(p("r_ankle")[1], p("l_ankle")[1], 0.9 * H) + limb_w * 0.4
        spread = abs(p("r_ankle")[0] - p("l_ankle")[0]) / 2 + limb_w * 1.5
        draw.ellipse([fx - spread, fy - limb_w * 0.35, fx + spread, fy + limb_w * 0.35], fill=_shade(look.floor, 0.55))

    # Legs (trousers, striped trousers, shorts with bare shins, or a skirt over bare legs) and shoes.
    bottom = look.bottom
    for side in ("r", "l"):
        hip, knee, ankle = p(f"{side}_hip"), p(f"{side}_knee"), p(f"{side}_ankle")
        upper = look.skin if bottom == "skirt" else look.trousers
        lower = look.skin if bottom in ("shorts", "skirt") else look.trousers
        if bottom == "striped_trousers":
            upper, lower = look.trousers, look.trousers_2
        _limb(draw, hip, knee, limb_w * 1.15, upper, look)
        _limb(draw, knee, ankle, limb_w, lower, look)
        draw.ellipse([ankle[0] - limb_w * 0.75, ankle[1] - limb_w * 0.3, ankle[0] + limb_w * 0.75, ankle[1] + limb_w * 0.55], fill=look.shoes)
    if bottom == "skirt":
        rh, lh, rk, lk = p("r_hip"), p("l_hip"), p("r_knee"), p("l_knee")
        hem = max(rk[1], lk[1]) - limb_w * 0.5
        spread = max(abs(rk[0] - lk[0]) / 2 + limb_w, abs(rh[0] - lh[0]) / 2 + limb_w * 1.2)
        mid = (rh[0] + lh[0]) / 2
        top_y = min(rh[1], lh[1]) - limb_w * 0.3
        draw.polygon([(mid - abs(rh[0] - lh[0]) / 2 - limb_w * 0.7, top_y), (mid + abs(rh[0] - lh[0]) / 2 + limb_w * 0.7, top_y),
                      (mid + spread * 1.2, hem), (mid - spread * 1.2, hem)], fill=look.trousers,
                     outline=None if look.flat else _shade(look.trousers, 0.4))

    _torso(image, pts, look, limb_w, scale)
    if look.belt is not None:
        rh, lh = p("r_hip"), p("l_hip")
        _segment(draw, rh, lh, limb_w * 0.45, look.belt)

    # Arms, hands, the prop.
    for side in ("r", "l"):
        _limb(draw, p(f"{side}_shoulder"), p(f"{side}_elbow"), limb_w, look.shirt, look)
        _limb(draw, p(f"{side}_elbow"), p(f"{side}_wrist"), limb_w * 0.9, look.shirt if look.long_sleeves else look.skin, look)
        wr = p(f"{side}_wrist")
        r = limb_w * 0.55
        draw.ellipse([wr[0] - r, wr[1] - r, wr[0] + r, wr[1] + r], fill=look.skin)
    if look.prop != "none":
        side = look.prop_side
        _prop(draw, p(f"{side}_elbow"), p(f"{side}_wrist"), limb_w * 1.1, look)

    # Neck, scarf, head.
    _limb(draw, p("neck"), hc, limb_w * 0.7, look.skin, look)
    if look.scarf is not None:
        n = p("neck")
        draw.rounded_rectangle([n[0] - limb_w * 1.1, n[1] - limb_w * 0.55, n[0] + limb_w * 1.1, n[1] + limb_w * 0.25], radius=limb_w * 0.3, fill=look.scarf)
    _head(draw, hc, max(2.0, head_radius * s), pixel_points, pts, look)
    return np.asarray(image.resize((width, height), Image.LANCZOS))
