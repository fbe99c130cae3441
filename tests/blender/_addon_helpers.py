"""Shared pieces of the add-on tests (real bpy, real engine subprocess, real files)."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
REFERENCE = EXAMPLES / "reference.png"
ADDON = "blender_addon"


def engine_python() -> str:
    """The engine env's python: $AA_ENGINE_PYTHON (set by scripts/test.sh) or .venv/engine."""
    path = os.environ.get("AA_ENGINE_PYTHON") or str(ROOT / ".venv" / "engine" / "bin" / "python")
    if not Path(path).is_file():
        pytest.fail(f"No engine environment at {path}: run `bash scripts/setup_env.sh engine` or set AA_ENGINE_PYTHON.")
    return path


def _raise(exc):
    raise exc


def enable_addon():
    import bpy  # noqa: F401 - addon_utils is importable once bpy is
    import addon_utils

    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return addon_utils.enable(ADDON, default_set=True, handle_error=_raise)


def disable_addon():
    import bpy  # noqa: F401 - addon_utils is importable once bpy is
    import addon_utils

    addon_utils.disable(ADDON, default_set=True, handle_error=_raise)


@contextlib.contextmanager
def addon_enabled():
    """A fresh empty file with the add-on enabled (read_factory_settings would disable it, so it
    comes first), disabled again afterwards."""
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    module = enable_addon()
    try:
        yield module
    finally:
        disable_addon()


def set_engine_preferences(python: str, weights: str = "random-tiny", device: str = "cpu"):
    from blender_addon.preferences import get_preferences

    prefs = get_preferences()
    prefs.engine_python = python
    prefs.weights = weights
    prefs.device = device
    return prefs


# A small Mixamo-named rig (metres, facing -Y, towards the camera): name -> (head, tail).
MIXAMO_BONES = {
    "mixamorig:Hips": ((0, 0, 1.0), (0, 0, 1.1)),
    "mixamorig:Spine": ((0, 0, 1.1), (0, 0, 1.45)),
    "mixamorig:Neck": ((0, 0, 1.5), (0, 0, 1.6)),
    "mixamorig:Head": ((0, 0, 1.6), (0, 0, 1.85)),
    "mixamorig:LeftArm": ((0.2, 0, 1.45), (0.45, 0, 1.45)),
    "mixamorig:LeftForeArm": ((0.45, 0, 1.45), (0.7, 0, 1.45)),
    "mixamorig:LeftHand": ((0.7, 0, 1.45), (0.8, 0, 1.45)),
    "mixamorig:RightArm": ((-0.2, 0, 1.45), (-0.45, 0, 1.45)),
    "mixamorig:RightForeArm": ((-0.45, 0, 1.45), (-0.7, 0, 1.45)),
    "mixamorig:RightHand": ((-0.7, 0, 1.45), (-0.8, 0, 1.45)),
    "mixamorig:LeftUpLeg": ((0.1, 0, 1.0), (0.1, 0, 0.55)),
    "mixamorig:LeftLeg": ((0.1, 0, 0.55), (0.1, 0, 0.1)),
    "mixamorig:LeftFoot": ((0.1, 0, 0.1), (0.1, -0.15, 0.0)),
    "mixamorig:RightUpLeg": ((-0.1, 0, 1.0), (-0.1, 0, 0.55)),
    "mixamorig:RightLeg": ((-0.1, 0, 0.55), (-0.1, 0, 0.1)),
    "mixamorig:RightFoot": ((-0.1, 0, 0.1), (-0.1, -0.15, 0.0)),
}


def add_test_rig(scene, frames: int, bones: dict = MIXAMO_BONES, name: str = "Rig"):
    """An armature with `bones`, its left arm keyframed to wave over `frames` frames."""
    import bpy

    rig = bpy.data.objects.new(name, bpy.data.armatures.new(name))
    scene.collection.objects.link(rig)
    if not bones:
        return rig
    bpy.context.view_layer.objects.active = rig
    bpy.ops.object.mode_set(mode='EDIT')
    for bone_name, (head, tail) in bones.items():
        bone = rig.data.edit_bones.new(bone_name)
        bone.head, bone.tail = head, tail
    bpy.ops.object.mode_set(mode='OBJECT')
    arm = rig.pose.bones.get("mixamorig:LeftArm")
    if arm is not None:
        arm.rotation_mode = 'XYZ'
        for frame, angle in ((scene.frame_start, -0.6), (scene.frame_start + max(frames - 1, 1), 0.6)):
            arm.rotation_euler = (0.0, 0.0, angle)
            arm.keyframe_insert("rotation_euler", frame=frame)
    return rig


def simple_shot_scene(tmp_path: Path, camera: bool = True, armature: bool | dict = True, frames: int = 4,
                      width: int = 64, height: int = 96):
    """In the current (fresh) file: a camera looking at a small armature, render size, frame range,
    shot settings pointing at the example reference and a tmp output folder."""
    import bpy

    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = width, height, 100
    scene.frame_start, scene.frame_end = 1, frames
    if camera:
        cam = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
        scene.collection.objects.link(cam)
        cam.location = (0.0, -6.0, 1.0)
        cam.rotation_euler = (1.5708, 0.0, 0.0)
        scene.camera = cam
    if armature:
        add_test_rig(scene, frames, bones=MIXAMO_BONES if armature is True else armature)
    settings = scene.animate_anyone
    settings.reference_path = str(REFERENCE)
    settings.output_dir = str(tmp_path / "out") + os.sep
    settings.steps = 2
    settings.size_source = 'RENDER'  # the tests check frames at the render size (random-tiny's native is 64x64)
    return scene


def example_poses(tmp_path: Path, count: int) -> list[str]:
    """`count` skeleton maps copied from examples/poses (for engine-side tests without a rig)."""
    folder = tmp_path / "poses"
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, src in enumerate(sorted((EXAMPLES / "poses").glob("*.png"))[:count], start=1):
        dst = folder / f"pose_{i:05d}.png"
        shutil.copyfile(src, dst)
        out.append(str(dst))
    return out


def job_message(tmp_path: Path, count: int = 4, width: int = 64, height: int = 64, **extra) -> dict:
    job = {"type": "job", "id": f"test-{tmp_path.name}", "reference": str(REFERENCE), "poses": example_poses(tmp_path, count),
           "output": str(tmp_path / "frames"), "width": width, "height": height, "steps": 2, "guidance": 2.0, "seed": 1,
           "context_frames": 8, "context_overlap": 2}
    job.update(extra)
    return job


def marker_scene(tmp_path: Path, ranges=((1, 2), (3, 4), (5, 6)), width: int = 32, height: int = 48):
    """`simple_shot_scene` over all `ranges`, plus one camera and one camera-bound marker per
    range (marker `Shot N` at the range's first frame, its camera a little further each time)."""
    import bpy

    scene = simple_shot_scene(tmp_path, frames=ranges[-1][1], width=width, height=height)
    scene.frame_start = ranges[0][0]
    for n, (start, _end) in enumerate(ranges, start=1):
        cam = bpy.data.objects.new(f"Cam {n}", bpy.data.cameras.new(f"Cam {n}"))
        scene.collection.objects.link(cam)
        cam.location = (0.0, -6.0 - 0.5 * n, 1.0)
        cam.rotation_euler = (1.5708, 0.0, 0.0)
        marker = scene.timeline_markers.new(f"Shot {n}", frame=start)
        marker.camera = cam
    return scene


def tree_bytes(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (relative path -> bytes): to show a folder is untouched."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}
