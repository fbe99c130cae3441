"""The keypoint track: a JSON file of 2D keypoints per frame, written next to the skeleton maps.

Format `aa-keypoints/1` (docs/keypoints.md has a worked example):

    {"format": "aa-keypoints/1", "width": 512, "height": 768, "fps": 24.0,
     "frame_start": 1, "frame_end": 48, "body_names": [18 COCO names],
     "source": {"blend_file": ..., "scene": ..., "armature": ..., "bone_map": ..., "camera": ...},
     "frames": [{"frame": 1, "body": [[x, y, c] or null, x18],
                 "hands": {"right": [x21], "left": [x21]},   # optional
                 "face": [x68]}, ...]}                       # optional

x, y are pixels at width x height from the top-left corner; c the confidence (1 = seen, 0 or null
= missing: unmapped, behind the camera or outside the frame). A track can be written by any tool
and redrawn into maps without Blender:

    python -m blender_addon.skeleton.track draw TRACK.json OUT_DIR [--hands] [--face]

bpy-free (numpy + the standard library).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .draw import BODY_NAMES, draw_pose_map
from .errors import BadTrack, OutputNotWritable, PoseExportError
from .png import write_atomic, write_png

FORMAT = "aa-keypoints/1"
HAND_POINTS = 21
FACE_POINTS = 68
MAP_NAME = "pose_{:05d}.png"   # 1-based, in frame order
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

    def draw(self, index: int, hands: bool = True, face: bool = True) -> np.ndarray:
        """The skeleton map of frame `index` (0-based position in the track): (H, W, 3) uint8."""
        return draw_frame(self.width, self.height, self.frames[index], hands=hands, face=face)


def _round(value: float) -> float:
    return round(float(value), DECIMALS)


_round_all = np.vectorize(_round, otypes=[np.float64])


def _zero_missing(points: np.ndarray | None) -> np.ndarray | None:
    """Points at the track file's precision, missing ones as (0, 0, 0): draw.py's hand/face drawing
    truncates x, y before it looks at the confidence, so NaN must not reach it."""
    if points is None:
        return None
    out = _round_all(np.asarray(points, dtype=np.float64))
    missing = ~(np.isfinite(out).all(axis=-1) & (out[..., 2] > 0))
    out[missing] = 0.0
    return out


def draw_frame(width: int, height: int, keypoints: FrameKeypoints, hands: bool = True, face: bool = True) -> np.ndarray:
    """The skeleton map of one frame's keypoints: (height, width, 3) uint8."""
    return draw_pose_map(width, height, _zero_missing(keypoints.body),
                         hands=_zero_missing(keypoints.hands) if hands else None,
                         face=_zero_missing(keypoints.face) if face else None)


# -- writing -------------------------------------------------------------------------------------
def _point_json(p) -> list | None:
    x, y, c = (float(v) for v in p)
    if not (c > 0) or math.isnan(x) or math.isnan(y):
        return None
    return [_round(x), _round(y), _round(c)]


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
    out = np.full((count, 3), np.nan, dtype=np.float64)
    out[:, 2] = 0.0
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


# -- drawing maps from a track -------------------------------------------------------------------
def prepare_output(out_dir: str | Path) -> Path:
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write_test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputNotWritable(f"The folder {out} is not writable ({exc.strerror or exc}).",
                                "Choose another output folder, or fix its permissions.") from None
    return out


def draw_track(track: KeypointTrack, out_dir: str | Path, hands: bool = True, face: bool = True) -> list[Path]:
    """Draw every frame of a track to out_dir/pose_00001.png ...; returns the paths in frame order."""
    out = prepare_output(out_dir)
    paths = []
    for i in range(len(track.frames)):
        path = out / MAP_NAME.format(i + 1)
        write_png(path, track.draw(i, hands=hands, face=face))
        paths.append(path)
    return paths


def _drop_out_of_frame(points: np.ndarray | None, width: int, height: int) -> np.ndarray | None:
    """Points outside the frame marked missing, as the export marks them (a rescaled limb can leave it)."""
    if points is None:
        return None
    out = np.array(points, dtype=np.float64)
    x, y = out[..., 0], out[..., 1]
    with np.errstate(invalid="ignore"):
        outside = ~((x >= 0) & (x <= width) & (y >= 0) & (y <= height))
    out[outside] = (np.nan, np.nan, 0.0)
    return out


def rescale_track(track: KeypointTrack, reference: KeypointTrack, reference_frame: int = 0, align_frame: int = 0) -> KeypointTrack:
    """`track` with its body rescaled to the proportions and placement of `reference`'s frame
    `reference_frame` (see rescale.py); hands follow their wrists and the face its nose.

    The reference's coordinates are brought to the track's pixel grid first (x * W/Wr, y * H/Hr):
    the engine resizes the reference image to the job's size, so this is where it will stand.
    Points the rescaling moves out of the frame are marked missing, as the export marks them.
    """
    from .rescale import follow_anchor, limb_ratios, rescale_body_track

    ref = np.array(reference.frames[reference_frame].body, dtype=np.float64)
    ref[:, 0] *= track.width / reference.width
    ref[:, 1] *= track.height / reference.height
    driving = np.stack([f.body for f in track.frames]).astype(np.float64)
    bodies = rescale_body_track(driving, ref, align_frame)
    _, body_ratio = limb_ratios(driving[align_frame], ref)
    frames = []
    for old, body in zip(track.frames, bodies):
        hands = face = None
        if old.hands is not None:
            hands = np.stack([follow_anchor(old.hands[side], old.body[wrist], body[wrist], body_ratio)
                              for side, wrist in ((0, 4), (1, 7))])
        if old.face is not None:
            face = follow_anchor(old.face, old.body[0], body[0], body_ratio)
        frames.append(FrameKeypoints(old.frame, *(_drop_out_of_frame(p, track.width, track.height) for p in (body, hands, face))))
    source = dict(track.source, rescaled_to={"reference": reference.source, "reference_frame": reference_frame, "align_frame": align_frame})
    return KeypointTrack(track.width, track.height, track.fps, frames, source)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m blender_addon.skeleton.track",
                                     description="Redraw skeleton maps from a keypoint track (aa-keypoints/1).")
    sub = parser.add_subparsers(dest="command", required=True)
    draw = sub.add_parser("draw", help="draw TRACK.json into OUT_DIR/pose_00001.png ...")
    draw.add_argument("track")
    draw.add_argument("out_dir")
    draw.add_argument("--hands", action="store_true", help="also draw hand keypoints (when the track has them)")
    draw.add_argument("--face", action="store_true", help="also draw face keypoints (when the track has them)")
    rescale = sub.add_parser("rescale", help="rescale TRACK.json to the proportions of the character in REFERENCE.json (docs/pose_rescaling.md)")
    rescale.add_argument("track")
    rescale.add_argument("reference", help="a track holding the reference character's keypoints (e.g. the rig posed like the reference image)")
    rescale.add_argument("out", help="the rescaled track (.json)")
    rescale.add_argument("--reference-frame", type=int, default=0, help="which frame of REFERENCE.json (0-based, default 0)")
    rescale.add_argument("--align-frame", type=int, default=0, help="the frame of TRACK.json posed like the reference (0-based, default 0)")
    args = parser.parse_args(argv)
    try:
        track = read_track(args.track)
        if args.command == "rescale":
            write_track(rescale_track(track, read_track(args.reference), args.reference_frame, args.align_frame), args.out)
            print(f"wrote the rescaled track to {args.out}")
            return 0
        paths = draw_track(track, args.out_dir, hands=args.hands, face=args.face)
    except PoseExportError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return 1
    print(f"wrote {len(paths)} maps ({track.width}x{track.height}) to {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
