"""Write one synthetic clip to disk as the engine's inputs (and the ground truth), e.g. for a demo:

    python -m aa_engine.data.export --split heldout --index 0 --frames 16 --out examples/synthetic

writes OUT/reference.png, OUT/poses/pose_0001.png ... and OUT/truth/frame_0001.png ..., at the
default model's training size unless --width/--height say otherwise.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from aa_engine.data.dataset import SPLITS, STYLES, make_clip


def export_clip(out: Path, split: str = "heldout", index: int = 0, frames: int = 16, width: int = 64, height: int = 96,
                style: str = "flat") -> Path:
    clip = make_clip(split, index, frames, width, height, style)
    out = Path(out)
    (out / "poses").mkdir(parents=True, exist_ok=True)
    (out / "truth").mkdir(parents=True, exist_ok=True)
    Image.fromarray(clip.reference).save(out / "reference.png")
    for i, (pose, frame) in enumerate(zip(clip.poses, clip.frames), start=1):
        Image.fromarray(pose).save(out / "poses" / f"pose_{i:04d}.png")
        Image.fromarray(frame).save(out / "truth" / f"frame_{i:04d}.png")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aa_engine.data.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", default="heldout", choices=sorted(SPLITS))
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--height", type=int, default=96)
    parser.add_argument("--style", default="flat", choices=STYLES, help="character style: flat (the 64x96 model's data) or rich (v2)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    out = export_clip(args.out, args.split, args.index, args.frames, args.width, args.height, args.style)
    print(f"{args.split} clip {args.index}: {args.frames} frames in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
