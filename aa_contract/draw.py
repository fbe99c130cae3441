"""Skeleton maps drawn exactly like the DWPose/ControlNet drawing code, with numpy alone.

Models of the Animate Anyone family were trained on maps drawn by `controlnet_aux.dwpose.util`
(`draw_bodypose`, `draw_handpose`, `draw_facepose`), which rasterise with OpenCV. Blender's Python
has numpy but no OpenCV, and shipping OpenCV wheels inside the extension would add ~50 MB per
platform, so this module re-implements the few OpenCV integer rasterisers that drawing uses:
`ellipse2Poly` (integer-degree sine table), `fillConvexPoly` (8-connected outline + scanline fill,
16-bit fixed point), `circle` (filled midpoint circle) and 2-pixel `line` (a filled quad with round
caps). The engine-side test compares it with controlnet-aux pixel for pixel.

It imports only numpy and the standard library: the add-on (in Blender), the training data and
the tests use this one implementation; the engine draws a job's keypoint track with OpenCV
(`aa_engine/data/pose_maps.py`), and tests hold the two to the same pixels.

Conventions: images are (H, W, 3) uint8 in RGB order; keypoints are pixel coordinates at the map's
size with a confidence: body (18, 3) in COCO-18 order, hands (2, 21, 3), face (68, 3). A point with
confidence <= 0 or any NaN is missing and not drawn (neither it nor its limbs).
"""

from __future__ import annotations

import math

import numpy as np

from .keypoints import BODY_NAMES, FrameKeypoints, file_precision, present

__all__ = ["BODY_NAMES", "draw_pose_map", "draw_keypoints"]

# The 17 limbs drawn (0-based keypoint pairs), in drawing order, each with the colour of its index.
BODY_LIMBS = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11), (11, 12),
    (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)
BODY_COLORS = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0), (0, 255, 0),
    (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255),
    (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)
HAND_EDGES = (
    (0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (0, 9), (9, 10), (10, 11), (11, 12),
    (0, 13), (13, 14), (14, 15), (15, 16), (0, 17), (17, 18), (18, 19), (19, 20),
)
STICK_HALF_WIDTH = 4
JOINT_RADIUS = 4
HAND_JOINT_RADIUS = 4
FACE_RADIUS = 3
LIMB_DIMMING = 0.6
EDGE_EPS = 0.01  # hand/face points at or left of/above this pixel position count as missing (DWPose)

_XY_SHIFT = 16
_XY_ONE = 1 << _XY_SHIFT
# OpenCV's sine table: sin(k degrees) to 7 decimals, stored as float32, k = 0..450.
_SIN_TABLE = [float(np.float32(round(math.sin(math.radians(k)), 7))) for k in range(451)]


def _hand_edge_colors() -> tuple[tuple[int, int, int], ...]:
    """HSV hues evenly spaced over the 20 hand edges at full saturation/value, x255 and rounded to
    nearest-even as OpenCV converts a float colour."""
    colors = []
    for i in range(len(HAND_EDGES)):
        h = i / float(len(HAND_EDGES))
        sector = int(h * 6.0)
        f = h * 6.0 - sector
        q, t = 1.0 * (1.0 - 1.0 * f), 1.0 * (1.0 - 1.0 * (1.0 - f))  # matplotlib's hsv_to_rgb, s = v = 1
        r, g, b = ((1.0, t, 0.0), (q, 1.0, 0.0), (0.0, 1.0, t), (0.0, q, 1.0), (t, 0.0, 1.0), (1.0, 0.0, q))[sector % 6]
        colors.append(tuple(int(np.rint(c * 255)) for c in (r, g, b)))
    return tuple(colors)


HAND_COLORS = _hand_edge_colors()


# -- OpenCV's integer rasterisers ------------------------------------------------------------------
def _tdiv(a: int, b: int) -> int:
    """Integer division truncating toward zero, as C does."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _clip_line(width: int, height: int, x1: int, y1: int, x2: int, y2: int):
    """OpenCV clipLine: the part of the segment inside [0, w-1] x [0, h-1], or None."""
    right, bottom = width - 1, height - 1
    if width <= 0 or height <= 0:
        return None
    c1 = (x1 < 0) + (x1 > right) * 2 + (y1 < 0) * 4 + (y1 > bottom) * 8
    c2 = (x2 < 0) + (x2 > right) * 2 + (y2 < 0) * 4 + (y2 > bottom) * 8
    if (c1 & c2) == 0 and (c1 | c2) != 0:
        if c1 & 12:
            a = 0 if c1 < 8 else bottom
            x1 += _tdiv((a - y1) * (x2 - x1), (y2 - y1))
            y1 = a
            c1 = (x1 < 0) + (x1 > right) * 2
        if c2 & 12:
            a = 0 if c2 < 8 else bottom
            x2 += _tdiv((a - y2) * (x2 - x1), (y2 - y1))
            y2 = a
            c2 = (x2 < 0) + (x2 > right) * 2
        if (c1 & c2) == 0 and (c1 | c2) != 0:
            if c1:
                a = 0 if c1 == 1 else right
                y1 += _tdiv((a - x1) * (y2 - y1), (x2 - x1))
                x1 = a
                c1 = 0
            if c2:
                a = 0 if c2 == 1 else right
                y2 += _tdiv((a - x2) * (y2 - y1), (x2 - x1))
                x2 = a
                c2 = 0
    if (c1 | c2) != 0:
        return None
    return x1, y1, x2, y2


def _line8(img: np.ndarray, x1: int, y1: int, x2: int, y2: int, color) -> None:
    """8-connected Bresenham line (OpenCV's LineIterator, left to right), endpoints included."""
    h, w = img.shape[:2]
    if not (0 <= x1 < w and 0 <= x2 < w and 0 <= y1 < h and 0 <= y2 < h):
        clipped = _clip_line(w, h, x1, y1, x2, y2)
        if clipped is None:
            return
        x1, y1, x2, y2 = clipped
    dx, dy = x2 - x1, y2 - y1
    if dx < 0:  # walk left to right
        x1, y1, dx, dy = x2, y2, -dx, -dy
    sy = -1 if dy < 0 else 1
    dy = abs(dy)
    steep = dy > dx
    if steep:
        dx, dy = dy, dx
    err = dx - 2 * dy
    x, y = x1, y1
    for _ in range(dx + 1):
        img[y, x] = color
        if err < 0:  # a step along both axes
            err += 2 * dx - 2 * dy
            x += 1
            y += sy
        else:  # a step along the major axis only
            err -= 2 * dy
            if steep:
                y += sy
            else:
                x += 1


def _line_fixed(img: np.ndarray, x1: int, y1: int, x2: int, y2: int, color) -> None:
    """OpenCV's Line2: a line between 16.16 fixed-point endpoints."""
    h, w = img.shape[:2]
    clipped = _clip_line(w << _XY_SHIFT, h << _XY_SHIFT, x1, y1, x2, y2)
    if clipped is None:
        return
    x1, y1, x2, y2 = clipped
    dx, dy = x2 - x1, y2 - y1
    ax, ay = abs(dx), abs(dy)
    if ax > ay:
        if dx < 0:
            x1, y1, x2, y2 = x2, y2, x1, y1
            dy = -dy
        x_step, y_step = _XY_ONE, _tdiv(dy << _XY_SHIFT, ax | 1)
        count = (x2 - x1) >> _XY_SHIFT
    else:
        if dy < 0:
            x1, y1, x2, y2 = x2, y2, x1, y1
            dx = -dx
        x_step, y_step = _tdiv(dx << _XY_SHIFT, ay | 1), _XY_ONE
        count = (y2 - y1) >> _XY_SHIFT
    x1 += _XY_ONE >> 1
    y1 += _XY_ONE >> 1

    def put(x: int, y: int) -> None:
        if 0 <= x < w and 0 <= y < h:
            img[y, x] = color

    put((x2 + (_XY_ONE >> 1)) >> _XY_SHIFT, (y2 + (_XY_ONE >> 1)) >> _XY_SHIFT)
    if ax > ay:
        x1 >>= _XY_SHIFT
        while count >= 0:
            put(x1, y1 >> _XY_SHIFT)
            x1 += 1
            y1 += y_step
            count -= 1
    else:
        y1 >>= _XY_SHIFT
        while count >= 0:
            put(x1 >> _XY_SHIFT, y1)
            x1 += x_step
            y1 += 1
            count -= 1


def _hline(img: np.ndarray, y: int, x1: int, x2: int, color) -> None:
    if x1 <= x2:
        img[y, x1 : x2 + 1] = color


def _fill_convex_poly(img: np.ndarray, points: list[tuple[int, int]], color, shift: int = 0) -> None:
    """OpenCV fillConvexPoly (8-connected): outline with lines, then a scanline fill of the interior."""
    h, w = img.shape[:2]
    n = len(points)
    delta = (1 << shift) >> 1
    delta1 = delta2 = _XY_ONE >> 1
    up = _XY_SHIFT - shift
    xs_all = [p[0] for p in points]
    ys_all = [p[1] for p in points]
    imin = min(range(n), key=lambda i: (ys_all[i], i))
    px0, py0 = points[-1][0] << up, points[-1][1] << up
    for x, y in points:
        px, py = x << up, y << up
        if shift == 0:
            _line8(img, px0 >> _XY_SHIFT, py0 >> _XY_SHIFT, px >> _XY_SHIFT, py >> _XY_SHIFT, color)
        else:
            _line_fixed(img, px0, py0, px, py, color)
        px0, py0 = px, py
    xmin = (min(xs_all) + delta) >> shift
    xmax = (max(xs_all) + delta) >> shift
    ymin = (min(ys_all) + delta) >> shift
    ymax = (max(ys_all) + delta) >> shift
    if n < 3 or xmax < 0 or ymax < 0 or xmin >= w or ymin >= h:
        return
    ymax = min(ymax, h - 1)
    # Two edges walk down from the top vertex, one each way round the polygon.
    idx = [imin, imin]
    di = [1, n - 1]
    ye = [ymin, ymin]
    ex = [-_XY_ONE, -_XY_ONE]
    edx = [0, 0]
    edges = n
    y = ymin
    while True:
        for i in (0, 1):
            if y >= ye[i]:
                idx0 = idx[i]
                nxt = idx0 + di[i]
                if nxt >= n:
                    nxt -= n
                while True:
                    edges -= 1
                    if edges < 0:
                        break
                    ty = (ys_all[nxt] + delta) >> shift
                    if ty > y:
                        xs = xs_all[idx0] << up
                        xe = xs_all[nxt] << up
                        ye[i] = ty
                        edx[i] = _tdiv((xe - xs) * 2 + (ty - y), 2 * (ty - y))
                        ex[i] = xs
                        idx[i] = nxt
                        break
                    idx0 = nxt
                    nxt += di[i]
                    if nxt >= n:
                        nxt -= n
        if edges < 0:
            break
        if y >= 0:
            left, right = (1, 0) if ex[0] > ex[1] else (0, 1)
            x1 = (ex[left] + delta1) >> _XY_SHIFT
            x2 = (ex[right] + delta2) >> _XY_SHIFT
            if x2 >= 0 and x1 < w:
                _hline(img, y, max(x1, 0), min(x2, w - 1), color)
        ex[0] += edx[0]
        ex[1] += edx[1]
        y += 1
        if y > ymax:
            break


def _circle(img: np.ndarray, cx: int, cy: int, radius: int, color) -> None:
    """OpenCV's filled midpoint circle (cv2.circle with thickness=-1, LINE_8)."""
    h, w = img.shape[:2]
    err, dx, dy, plus, minus = 0, radius, 0, 1, (radius << 1) - 1
    inside = radius <= cx < w - radius and radius <= cy < h - radius
    while dx >= dy:
        y11, y12, y21, y22 = cy - dy, cy + dy, cy - dx, cy + dx
        x11, x12, x21, x22 = cx - dx, cx + dx, cx - dy, cx + dy
        if inside:
            _hline(img, y11, x11, x12, color)
            _hline(img, y12, x11, x12, color)
            _hline(img, y21, x21, x22, color)
            _hline(img, y22, x21, x22, color)
        elif x11 < w and x12 >= 0 and y21 < h and y22 >= 0:
            x11, x12 = max(x11, 0), min(x12, w - 1)
            if 0 <= y11 < h:
                _hline(img, y11, x11, x12, color)
            if 0 <= y12 < h:
                _hline(img, y12, x11, x12, color)
            if x21 < w and x22 >= 0:
                x21, x22 = max(x21, 0), min(x22, w - 1)
                if 0 <= y21 < h:
                    _hline(img, y21, x21, x22, color)
                if 0 <= y22 < h:
                    _hline(img, y22, x21, x22, color)
        dy += 1
        err += plus
        plus += 2
        mask = -1 if err > 0 else 0  # (err <= 0) - 1
        err -= minus & mask
        dx += mask
        minus -= mask & 2


def _ellipse_polygon(cx: int, cy: int, half_length: int, half_width: int, angle: int) -> list[tuple[int, int]]:
    """OpenCV ellipse2Poly(center, axes, angle, 0, 360, delta=1) with integer output points."""
    while angle < 0:
        angle += 360
    while angle > 360:
        angle -= 360
    cos_a, sin_a = _SIN_TABLE[450 - angle], _SIN_TABLE[angle]
    points: list[tuple[int, int]] = []
    for k in range(361):
        x = half_length * _SIN_TABLE[450 - k]
        y = half_width * _SIN_TABLE[k]
        px = int(np.rint(cx + x * cos_a - y * sin_a))
        py = int(np.rint(cy + x * sin_a + y * cos_a))
        if not points or points[-1] != (px, py):
            points.append((px, py))
    if len(points) == 1:
        points = [(cx, cy), (cx, cy)]
    return points


def _thick_line(img: np.ndarray, x0: int, y0: int, x1: int, y1: int, color, thickness: int = 2) -> None:
    """cv2.line with an even thickness > 1 (LINE_8): a filled quad in 16.16 fixed point plus round caps."""
    p0x, p0y, p1x, p1y = x0 << _XY_SHIFT, y0 << _XY_SHIFT, x1 << _XY_SHIFT, y1 << _XY_SHIFT
    dx = (p0x - p1x) / _XY_ONE
    dy = (p1y - p0y) / _XY_ONE
    r = dx * dx + dy * dy
    odd = thickness & 1
    half = thickness << (_XY_SHIFT - 1)
    if abs(r) > np.finfo(float).eps:
        r = (half + odd * _XY_ONE * 0.5) / math.sqrt(r)
        dpx, dpy = int(np.rint(dy * r)), int(np.rint(dx * r))
        quad = [(p0x + dpx, p0y + dpy), (p0x - dpx, p0y - dpy), (p1x - dpx, p1y - dpy), (p1x + dpx, p1y + dpy)]
        _fill_convex_poly(img, quad, color, shift=_XY_SHIFT)
    cap = (half + (_XY_ONE >> 1)) >> _XY_SHIFT
    for px, py in ((p0x, p0y), (p1x, p1y)):
        _circle(img, (px + (_XY_ONE >> 1)) >> _XY_SHIFT, (py + (_XY_ONE >> 1)) >> _XY_SHIFT, cap, color)


# -- the DWPose drawing ------------------------------------------------------------------------------
def draw_body(canvas: np.ndarray, body: np.ndarray) -> np.ndarray:
    """Draw one or more bodies ((18, 3) or (n, 18, 3), pixels) on canvas; returns the new canvas.

    Limbs are filled ellipses at full colour, then the whole canvas is dimmed to 60% (truncated),
    then the joints are drawn as circles. Like DWPose, this dims whatever was on the canvas.
    """
    height, width = canvas.shape[:2]
    bodies = np.asarray(body, dtype=np.float64).reshape(-1, 18, 3)
    shown = present(bodies)
    # DWPose works on coordinates normalised to [0, 1] and multiplies back by the size; doing the
    # same float operations keeps every truncation identical.
    norm_x = bodies[..., 0] / float(width)
    norm_y = bodies[..., 1] / float(height)
    for limb, (a, b) in enumerate(BODY_LIMBS):
        for person in range(len(bodies)):
            if not (shown[person, a] and shown[person, b]):
                continue
            ys = (norm_x[person, a] * float(width), norm_x[person, b] * float(width))  # DWPose's Y is x
            xs = (norm_y[person, a] * float(height), norm_y[person, b] * float(height))
            mean_x = (xs[0] + xs[1]) / 2  # numpy's mean of two values
            mean_y = (ys[0] + ys[1]) / 2
            length = ((xs[0] - xs[1]) ** 2 + (ys[0] - ys[1]) ** 2) ** 0.5
            angle = math.degrees(math.atan2(xs[0] - xs[1], ys[0] - ys[1]))
            polygon = _ellipse_polygon(int(mean_y), int(mean_x), int(length / 2), STICK_HALF_WIDTH, int(angle))
            _fill_convex_poly(canvas, polygon, BODY_COLORS[limb])
    canvas = (canvas * LIMB_DIMMING).astype(np.uint8)
    for joint in range(18):
        for person in range(len(bodies)):
            if shown[person, joint]:
                x = int(norm_x[person, joint] * width)
                y = int(norm_y[person, joint] * height)
                _circle(canvas, x, y, JOINT_RADIUS, BODY_COLORS[joint])
    return canvas


def draw_hands(canvas: np.ndarray, hands: np.ndarray) -> np.ndarray:
    """Draw hands ((21, 3) or (n, 21, 3), pixels) in place: 2-px coloured edges, blue joints."""
    height, width = canvas.shape[:2]
    hands = np.asarray(hands, dtype=np.float64).reshape(-1, 21, 3)
    shown = present(hands)
    for hand, points in zip(shown, hands):
        xs = [int(v / float(width) * width) if p else 0 for v, p in zip(points[:, 0], hand)]
        ys = [int(v / float(height) * height) if p else 0 for v, p in zip(points[:, 1], hand)]
        ok = [bool(p) and xs[i] > EDGE_EPS and ys[i] > EDGE_EPS for i, p in enumerate(hand)]
        for edge, (a, b) in enumerate(HAND_EDGES):
            if ok[a] and ok[b]:
                _thick_line(canvas, xs[a], ys[a], xs[b], ys[b], HAND_COLORS[edge])
        for i in range(21):
            if ok[i]:
                _circle(canvas, xs[i], ys[i], HAND_JOINT_RADIUS, (0, 0, 255))
    return canvas


def draw_face(canvas: np.ndarray, face: np.ndarray) -> np.ndarray:
    """Draw face landmarks ((68, 3) or (n, 68, 3), pixels) in place as white dots."""
    height, width = canvas.shape[:2]
    faces = np.asarray(face, dtype=np.float64)
    faces = faces.reshape(-1, faces.shape[-2], 3)
    shown = present(faces)
    for marks, points in zip(shown, faces):
        for ok, (px, py, _) in zip(marks, points):
            if not ok:
                continue
            x, y = int(px / float(width) * width), int(py / float(height) * height)
            if x > EDGE_EPS and y > EDGE_EPS:
                _circle(canvas, x, y, FACE_RADIUS, (255, 255, 255))
    return canvas


def draw_pose_map(width: int, height: int, body: np.ndarray, hands: np.ndarray | None = None, face: np.ndarray | None = None) -> np.ndarray:
    """A skeleton map: (height, width, 3) uint8 RGB, black background.

    body: (18, 3) pixel x, y, confidence (COCO-18; several people: (n, 18, 3)); hands: (2, 21, 3)
    (right, left) or None; face: (68, 3) or None. Points with confidence <= 0 or NaN are missing.
    """
    canvas = np.zeros((int(height), int(width), 3), dtype=np.uint8)
    canvas = draw_body(canvas, body)
    if hands is not None:
        canvas = draw_hands(canvas, hands)
    if face is not None:
        canvas = draw_face(canvas, face)
    return canvas


def draw_keypoints(width: int, height: int, keypoints: FrameKeypoints, hands: bool = True, face: bool = True) -> np.ndarray:
    """The skeleton map of one frame's keypoints, drawn at the track file's precision:
    (height, width, 3) uint8."""
    return draw_pose_map(width, height, file_precision(keypoints.body),
                         hands=file_precision(keypoints.hands) if hands else None,
                         face=file_precision(keypoints.face) if face else None)
