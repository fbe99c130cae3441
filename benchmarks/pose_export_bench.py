"""Pose export speed: a generated Rigify rig, animated, exported frame by frame (maps + track).

    .venv/blender-5.0/bin/python benchmarks/pose_export_bench.py                  # 240 frames, 512x768
    .venv/blender-4.2/bin/python benchmarks/pose_export_bench.py --frames 48 --hands

Prints one table: per-frame cost of evaluation (scene.frame_set), projection (pose matrices ->
pixels), drawing (draw.py) and PNG writing, the whole export, and for comparison the projection
alone, ours (one foreach_get + numpy) against bpy_extras' world_to_camera_view point by point.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def build_scene(frames: int, width: int, height: int):
    import bpy  # before addon_utils, which only exists once bpy is loaded
    import addon_utils

    bpy.ops.wm.read_factory_settings(use_empty=True)
    addon_utils.enable("rigify", default_set=True)
    try:
        bpy.ops.object.armature_human_metarig_add()
        meta = bpy.context.object
        bpy.ops.pose.rigify_generate()
        rig = bpy.context.object
    finally:
        addon_utils.disable("rigify")
    bpy.data.objects.remove(meta)
    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y = width, height
    scene.frame_start, scene.frame_end = 1, frames
    # A walk-like swing on the FK controls, a key every 6 frames.
    for parent in ("upper_arm_parent.L", "upper_arm_parent.R", "thigh_parent.L", "thigh_parent.R"):
        rig.pose.bones[parent]["IK_FK"] = 1.0
    for frame in range(1, frames + 1, 6):
        phase = 2 * math.pi * frame / 48
        for name, amp, sign in (("thigh_fk.L", 30, 1), ("thigh_fk.R", 30, -1), ("upper_arm_fk.L", 25, -1),
                                ("upper_arm_fk.R", 25, 1), ("forearm_fk.L", 20, 1), ("shin_fk.R", 25, 1)):
            pb = rig.pose.bones[name]
            pb.rotation_mode = 'XYZ'
            pb.rotation_euler = (math.radians(amp * sign * math.sin(phase)), 0, 0)
            pb.keyframe_insert("rotation_euler", frame=frame)
        rig.pose.bones["torso"].location = (0, 0, -0.03 * abs(math.sin(phase)))
        rig.pose.bones["torso"].keyframe_insert("location", frame=frame)
    cam = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    scene.collection.objects.link(cam)
    cam.location, cam.rotation_euler = (0, -6.5, 1.0), (math.radians(90), 0, 0)
    scene.camera = cam
    return scene, rig, cam


def projection_alone(scene, rig, cam, frames: int, width: int, height: int) -> tuple[float, float]:
    """Seconds for the body points of every frame: (KeypointProjector.project, the same points
    one by one with bpy_extras' world_to_camera_view)."""
    from bpy_extras.object_utils import world_to_camera_view

    from blender_addon.skeleton import export
    from blender_addon.skeleton.project import KeypointProjector

    resolved = export.resolve_for_armature(rig)
    projector = KeypointProjector(rig, resolved)
    bones = [(p.bone, p.at) for p in resolved.points[:18] if p is not None and p.bone]
    ours = per_point = 0.0
    for f in range(1, frames + 1):
        scene.frame_set(f)
        t0 = time.perf_counter()
        projector.project(scene, cam, width, height)
        t1 = time.perf_counter()
        for bone, at in bones:
            pb = rig.pose.bones[bone]
            v = world_to_camera_view(scene, cam, rig.matrix_world @ (pb.head if at == "head" else pb.tail))
            _ = (v.x * width, (1 - v.y) * height)
        t2 = time.perf_counter()
        ours += t1 - t0
        per_point += t2 - t1
    return ours, per_point


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=240)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--height", type=int, default=768)
    parser.add_argument("--hands", action="store_true", help="also project and draw the hands")
    args = parser.parse_args()

    import bpy

    from blender_addon.skeleton import export

    t = time.perf_counter()
    scene, rig, cam = build_scene(args.frames, args.width, args.height)
    build_s = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as out:
        t = time.perf_counter()
        result = export.export_shot(scene, rig, out, 1, args.frames, args.width, args.height, hands=args.hands)
        total_s = time.perf_counter() - t
        size = sum(p.stat().st_size for p in result.map_paths) / len(result.map_paths)
    ours_s, point_s = projection_alone(scene, rig, cam, args.frames, args.width, args.height)

    n = args.frames
    print(f"Blender {bpy.app.version_string}; Rigify rig with {len(rig.pose.bones)} pose bones "
          f"(built in {build_s:.1f} s); {n} frames at {args.width}x{args.height}; hands={args.hands}; "
          f"{os.cpu_count()} CPUs; mean PNG {size / 1024:.1f} KiB")
    print(f"{'stage':<44}{'total s':>10}{'ms/frame':>10}")
    rows = [
        ("evaluate (scene.frame_set)", result.timings["evaluate"]),
        ("project (in export: + bookkeeping)", result.timings["project"]),
        ("draw (draw.py)", result.timings["draw"]),
        ("write PNG (zlib)", result.timings["write_png"]),
        ("whole export_shot (incl. track JSON)", total_s),
        ("projection alone: KeypointProjector.project", ours_s),
        ("projection alone: world_to_camera_view/point", point_s),
    ]
    for name, seconds in rows:
        print(f"{name:<44}{seconds:>10.3f}{1000 * seconds / n:>10.2f}")
    sys.stdout.flush()
    os._exit(0)  # bpy 4.2 can crash at exit after rigify was enabled


if __name__ == "__main__":
    main()
