"""Keypoint tracks on the add-on's side: drawing a track into map files, rescaling a track to a
reference character, and the command line for both. The format itself is the contract's
(`aa_contract.keypoints`, docs/keypoints.md), and so is the drawing (`aa_contract.draw`):

    python -m blender_addon.skeleton.track draw TRACK.json OUT_DIR [--hands] [--face]
    python -m blender_addon.skeleton.track rescale TRACK.json REFERENCE.json OUT.json

bpy-free (numpy + the standard library).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from ..contract import errors, keypoints, png
from .errors import OutputNotWritable

# The track format is the contract's (aa_contract.keypoints); these names are what the export uses.
FORMAT, TRACK_NAME = keypoints.FORMAT, keypoints.TRACK_NAME
FrameKeypoints, KeypointTrack = keypoints.FrameKeypoints, keypoints.KeypointTrack
read_track, write_track = keypoints.read_track, keypoints.write_track

MAP_NAME = "pose_{:05d}.png"   # 1-based, in frame order


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


def draw_track(track: KeypointTrack, out_dir: str | Path, hands: bool = True, face: bool = True,
               timings: dict | None = None, after_map=None) -> list[Path]:
    """Draw every frame of a track to out_dir/pose_00001.png ...; returns the paths in frame order.
    The maps are drawn from the track at its file's precision, so they equal the maps the engine
    draws from the written keypoints.json. timings (optional): "draw" and "write_png" seconds are
    added to it; after_map() runs after each map."""
    out = prepare_output(out_dir)
    timings = {} if timings is None else timings
    paths = []
    for i in range(len(track.frames)):
        t0 = time.perf_counter()
        image = track.draw(i, hands=hands, face=face)
        t1 = time.perf_counter()
        path = out / MAP_NAME.format(i + 1)
        png.write_png(path, image)
        timings["draw"] = timings.get("draw", 0.0) + t1 - t0
        timings["write_png"] = timings.get("write_png", 0.0) + time.perf_counter() - t1
        paths.append(path)
        if after_map is not None:
            after_map()
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
    except errors.ContractError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return 1
    print(f"wrote {len(paths)} maps ({track.width}x{track.height}) to {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
