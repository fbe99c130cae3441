"""The bundled rig (rigs/bundled_rig.py) for tests: built by its script, saved as a .blend."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "rigs") not in sys.path:
    sys.path.insert(0, str(ROOT / "rigs"))

import bundled_rig  # noqa: E402


def build_bundled_rig(tmp_path: Path, name: str = "bundled_rig.blend") -> Path:
    """A fresh file with the bundled rig, its camera and demo motion, saved to tmp_path/name."""
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    bundled_rig.build_bundled_rig_scene()
    path = Path(tmp_path) / name
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    return path
