"""Regenerate examples/poses/: 16 skeleton maps (128x192) of the bundled rig's demo motion.

    .venv/blender-5.0/bin/python rigs/make_examples.py

Frames 1, 4, 7, ... 46 of the walk + wave, drawn by the add-on's own export, so the bundled
example is exactly what the add-on produces.
"""

import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "rigs")]

import bpy  # noqa: E402

import bundled_rig  # noqa: E402
from blender_addon.skeleton.export import ExportRequest, export_shot  # noqa: E402

OUT = ROOT / "examples" / "poses"
FRAMES = range(1, 48, 3)


def main() -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    rig, _camera = bundled_rig.build_bundled_rig_scene(scene)
    with tempfile.TemporaryDirectory() as tmp:
        result = export_shot(ExportRequest(scene, rig, tmp, 1, 48, 128, 192, write_maps=True))
        for old in OUT.glob("*.png"):
            old.unlink()
        OUT.mkdir(parents=True, exist_ok=True)
        for i, frame in enumerate(FRAMES):
            shutil.copyfile(result.map_paths[frame - 1], OUT / f"pose_{i + 1:04d}.png")
    print(f"wrote {len(FRAMES)} maps to {OUT}")


if __name__ == "__main__":
    main()
    sys.stdout.flush()
    os._exit(0)
