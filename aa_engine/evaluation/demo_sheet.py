"""The contact sheet of a rendered shot: what a person looks at to judge the default model on the
bundled rig's demo (docs/default_model.md).

    python -m aa_engine.evaluation.demo_sheet out/demo/demo/v001 docs/default_model_eval/demo_sheet.png
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from aa_engine.evaluation.contact_sheet import grid


def demo_sheet(version: str | Path, count: int = 8, scale: int = 2) -> Image.Image:
    """The contact sheet of one rendered shot version (the add-on's `SHOT/vNNN/` folder, e.g. the
    demo's `out/demo/demo/v001`): the reference, then `count` evenly spaced frames, each under its
    skeleton map (drawn from `poses/keypoints.json` at the frames' size).

    Rows: skeleton maps, frames. The reference heads both rows (scaled to the frames' size)."""
    from aa_contract.keypoints import read_track

    version = Path(version)
    frames = sorted((version / "frames").glob("frame_*.png"))
    if not frames:
        raise FileNotFoundError(f"No frames in {version / 'frames'}: render the shot first (bash scripts/demo.sh).")
    picked = [frames[round(i * (len(frames) - 1) / max(count - 1, 1))] for i in range(min(count, len(frames)))]
    images = [np.asarray(Image.open(p).convert("RGB")) for p in picked]
    h, w = images[0].shape[:2]
    reference = np.asarray(Image.open(version / "reference.png").convert("RGB").resize((w, h), Image.BICUBIC))
    track = read_track(version / "poses" / "keypoints.json").scaled_to(w, h)
    maps = []
    for path in picked:  # frame_00001.png is the track's first frame
        index = int(path.stem.split("_")[1]) - 1
        maps.append(track.draw(index) if 0 <= index < len(track.frames) else np.zeros_like(reference))
    return grid([[reference, *maps], [reference, *images]], labels=["skeleton", "frames"], scale=scale)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m aa_engine.evaluation.demo_sheet",
                                     description="Contact sheet of a rendered shot version: reference, skeleton maps, frames.")
    parser.add_argument("version", help="a shot's version folder, e.g. out/demo/demo/v001")
    parser.add_argument("out", help="the PNG to write")
    parser.add_argument("--count", type=int, default=8, help="frames shown, evenly spaced (default 8)")
    parser.add_argument("--scale", type=int, default=2, help="pixel scale-up, nearest neighbour (default 2)")
    args = parser.parse_args(argv)
    demo_sheet(args.version, args.count, args.scale).save(args.out)
    print(args.out)


if __name__ == "__main__":
    main()
