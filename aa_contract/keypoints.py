"""The keypoint track: 2D keypoints per frame, the job's pose input (format `aa-keypoints/1`).

docs/keypoints.md has a worked example:

    {"format": "aa-keypoints/1", "width": 512, "height": 768, "fps": 24.0,
     "frame_start": 1, "frame_end": 48, "body_names": [18 COCO names],
     "source": {"blend_file": ..., "scene": ..., "armature": ..., "bone_map": ..., "camera": ...},
     "frames": [{"frame": 1, "body": [[x, y, c] or null, x18],
                 "hands": {"right": [x21], "left": [x21]},   # optional
                 "face": [x68]}, ...]}                       # optional

x, y are pixels at width x height from the top-left corner; c the confidence.

**Missing points** have one definition, here: a point is present when x and y are finite and its
confidence is > 0 (`present`). In memory a missing point is (NaN, NaN, 0); in the file it is
`null`. Unmapped bones, points behind the camera or outside the frame, and face points on a head
turned away from the camera are all missing.

numpy + the standard library only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import BadTrack
from .png import write_atomic

FORMAT = "aa-keypoints/1"
# COCO-18: nose, neck, R shoulder, R elbow, R wrist, L shoulder, L elbow, L wrist, R hip, R knee,
# R ankle, L hip, L knee, L ankle, R eye, L eye, R ear, L ear ("R" is the character's right).
BODY_NAMES = (
    "nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
    "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
    "right_eye", "left_eye", "right_ear", "left_ear",
)
HAND_POINTS = 21
FACE_POINTS = 68
# Coordinates and confidences are written with this many decimals, and maps are drawn from values
# rounded the same way: the drawing truncates to whole pixels, so a point at 100.9996 px would
# otherwise be drawn at 100 by the export and at 101 when the track file is redrawn.
DECIMALS = 3
TRACK_NAME = "keypoints.json"


@dataclass
class FrameKeypoints:
    """One frame's keypoints in pixels: body (18, 3), hands (2, 21, 3) right then left, face (68, 3).
    Missing points have x = y = NaN and confidence 0."""

    frame: int
    body: np.ndarray
    hands: np.ndarray | None = None
    face: np.ndarray | None = None


@dataclass
class KeypointTrack:
    width: int
    height: int
    fps: float
    frames: list[FrameKeypoints]
    source: dict = field(default_factory=dict)

    @property
    def frame_start(self) -> int:
        return self.frames[0].frame if self.frames else 0

    @property
    def frame_end(self) -> int:
        return self.frames[-1].frame if self.frames else -1

    def scaled_to(self, width: int, height: int) -> "KeypointTrack":
        """The same track on a width x height pixel grid (x * width/self.width, y likewise)."""
        if (width, height) == (self.width, self.height):
            return self
        factor = np.array([width / self.width, height / self.height, 1.0])

        def scale(points):
            return None if points is None else np.asarray(points, dtype=np.float64) * factor

        frames = [FrameKeypoints(f.frame, scale(f.body), scale(f.hands), scale(f.face)) for f in self.frames]
        return KeypointTrack(width, height, self.fps, frames, dict(self.source))

    def draw(self, index: int, hands: bool = True, face: bool = True) -> np.ndarray:
        """The skeleton map of frame `index` (0-based position in the track): (H, W, 3) uint8."""
        from .draw import draw_keypoints

        return draw_keypoints(self.width, self.height, self.frames[index], hands=hands, face=face)


def _round(value: float) -> float:
    return round(float(value), DECIMALS)


_round_all = np.vectorize(_round, otypes=[np.float64])


def present(points: np.ndarray) -> np.ndarray:
    """Which points are present: (...,) bool from (..., 3) x, y, confidence."""
    points = np.asarray(points, dtype=np.float64)
    return np.isfinite(points).all(axis=-1) & (points[..., 2] > 0)


def missing_points(count: int) -> np.ndarray:
    """(count, 3) points, all missing."""
    out = np.full((count, 3), np.nan, dtype=np.float64)
    out[:, 2] = 0.0
    return out


def file_precision(points: np.ndarray | None) -> np.ndarray | None:
    """Points at the track file's precision, missing ones as (0, 0, 0): maps are drawn from these,
    so a map drawn in memory equals one redrawn from the written file (and the hand/face drawing
    truncates x, y before it looks at the confidence, so NaN must not reach it)."""
    if points is None:
        return None
    out = _round_all(np.asarray(points, dtype=np.float64))
    out[~present(out)] = 0.0
    return out


# -- writing -------------------------------------------------------------------------------------
def _point_json(p) -> list | None:
    if not present(p):
        return None
    return [_round(float(v)) for v in p]


def track_to_dict(track: KeypointTrack) -> dict:
    frames = []
    for f in track.frames:
        entry = {"frame": int(f.frame), "body": [_point_json(p) for p in f.body]}
        if f.hands is not None:
            entry["hands"] = {"right": [_point_json(p) for p in f.hands[0]], "left": [_point_json(p) for p in f.hands[1]]}
        if f.face is not None:
            entry["face"] = [_point_json(p) for p in f.face]
        frames.append(entry)
    return {
        "format": FORMAT, "width": int(track.width), "height": int(track.height), "fps": float(track.fps),
        "frame_start": track.frame_start, "frame_end": track.frame_end, "body_names": list(BODY_NAMES),
        "source": dict(track.source), "frames": frames,
    }


def write_track(track: KeypointTrack, path: str | Path) -> Path:
    """Write the track as JSON (atomically; one field and one frame per line so diffs stay readable)."""
    data = track_to_dict(track)
    frames = data.pop("frames")
    head = ",\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in data.items())
    lines = ",\n  ".join(json.dumps(f, separators=(",", ":")) for f in frames)
    text = f'{{\n{head},\n "frames": [\n  {lines}\n ]\n}}\n' if frames else f'{{\n{head},\n "frames": []\n}}\n'
    path = Path(path)
    write_atomic(path, text.encode("utf-8"))
    return path


# -- reading -------------------------------------------------------------------------------------
def _points(value, count: int, where: str) -> np.ndarray:
    if not isinstance(value, list) or len(value) != count:
        raise ValueError(f"{where} must list {count} points ([x, y, confidence] or null)")
    out = missing_points(count)
    for i, p in enumerate(value):
        if p is None:
            continue
        if not (isinstance(p, list) and len(p) in (2, 3) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in p)):
            raise ValueError(f"{where}[{i}] must be [x, y, confidence] or null, not {p!r}")
        out[i] = (p[0], p[1], p[2] if len(p) == 3 else 1.0)
    return out


def track_from_dict(data: dict, where: str = "track") -> KeypointTrack:
    """A KeypointTrack from decoded JSON; raises BadTrack naming the faulty field."""
    hint = "See docs/keypoints.md ('Keypoint track') for the format."
    try:
        if not isinstance(data, dict):
            raise ValueError("the file must hold a JSON object")
        if data.get("format") != FORMAT:
            raise ValueError(f"\"format\" must be \"{FORMAT}\", not {data.get('format')!r}")
        width, height = data.get("width"), data.get("height")
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (width, height)):
            raise ValueError(f"\"width\" and \"height\" must be positive integers (pixels), not {width!r} x {height!r}")
        fps = data.get("fps", 24.0)
        if not isinstance(fps, (int, float)) or fps <= 0:
            raise ValueError(f"\"fps\" must be a positive number, not {fps!r}")
        names = data.get("body_names", list(BODY_NAMES))
        if list(names) != list(BODY_NAMES):
            raise ValueError(f"\"body_names\" must be the COCO-18 order {list(BODY_NAMES)}")
        raw_frames = data.get("frames")
        if not isinstance(raw_frames, list) or not raw_frames:
            raise ValueError("\"frames\" must be a non-empty list")
        frames = []
        for n, f in enumerate(raw_frames):
            if not isinstance(f, dict) or not isinstance(f.get("frame"), int):
                raise ValueError(f"frames[{n}] must be an object with an integer \"frame\"")
            if frames and f["frame"] <= frames[-1].frame:
                raise ValueError(f"frames[{n}]: frame numbers must increase ({f['frame']} after {frames[-1].frame})")
            body = _points(f.get("body"), len(BODY_NAMES), f"frames[{n}].body")
            hands = None
            if f.get("hands") is not None:
                h = f["hands"]
                if not isinstance(h, dict):
                    raise ValueError(f"frames[{n}].hands must be {{\"right\": [...], \"left\": [...]}}")
                empty = [None] * HAND_POINTS
                hands = np.stack([_points(h.get(side, empty), HAND_POINTS, f"frames[{n}].hands.{side}") for side in ("right", "left")])
            face = _points(f["face"], FACE_POINTS, f"frames[{n}].face") if f.get("face") is not None else None
            frames.append(FrameKeypoints(frame=f["frame"], body=body, hands=hands, face=face))
    except ValueError as exc:
        raise BadTrack(f"The keypoint track {where} is not valid: {exc}.", hint) from None
    return KeypointTrack(width=width, height=height, fps=float(fps), frames=frames, source=dict(data.get("source") or {}))


def read_track(path: str | Path) -> KeypointTrack:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadTrack(f"The keypoint track {path} does not exist.", "Export the poses first, or check the path.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadTrack(f"The keypoint track {path} cannot be read ({exc}).", "Check the file's permissions.") from None
    except json.JSONDecodeError as exc:
        raise BadTrack(f"The keypoint track {path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}).",
                       "Fix the JSON syntax, or export the poses again.") from None
    return track_from_dict(data, str(path))
