"""Pose export speed: a generated Rigify rig, animated, from keyframes to the job's inputs.

    .venv/blender-5.0/bin/python benchmarks/pose_export_bench.py                  # 240 frames, 512x768
    .venv/blender-4.2/bin/python benchmarks/pose_export_bench.py --frames 48 --hands

Measures, in one run on the same scene and frames (best of --repeat runs each, interleaved so a
change of load hits them alike), wall-clock and CPU time (this process, all its threads: steadier
than wall time on a shared machine):
  (a) job-ready inputs: export_shot as the add-on calls it (evaluate + project + write keypoints.json);
  (b) the evaluation floor: scene.frame_set for the same frames, alone;
  (b2) another evaluation: setting scene.frame_current and updating only the view layer's depsgraph
      for the same frames, alone (it does the same work as frame_set: no lower floor);
  (c) the old map-drawing export: the track and a PNG map per frame (drawn in numpy in Blender).
Prints the stages of (a) and (c) and the ratios; the target is (a) within 1.25x of (b).
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


def timed(fn, *args, **kwargs):
    """(wall seconds, CPU seconds, fn's result)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args, **kwargs)
    return time.perf_counter() - wall, time.process_time() - cpu, result


def frame_set_floor(scene, frames: list[int]) -> None:
    """Evaluate the frames with scene.frame_set, nothing else."""
    for f in frames:
        scene.frame_set(f)


def depsgraph_floor(scene, frames: list[int]) -> None:
    """Evaluate the frames by setting the frame and updating the view layer's depsgraph (the
    first with frame_set: subframe 0)."""
    import bpy

    depsgraph = bpy.context.evaluated_depsgraph_get()
    scene.frame_set(frames[0])
    for f in frames[1:]:
        scene.frame_current = f
        depsgraph.update()


def export_once(scene, rig, frames: int, width: int, height: int, hands: bool, maps: bool):
    """One export into a fresh folder: (ExportResult, mean PNG bytes); the add-on's (track only),
    or with maps=True the old one (track and PNG maps)."""
    from blender_addon.skeleton import export

    with tempfile.TemporaryDirectory() as out:
        result = export.export_shot(export.ExportRequest(scene, rig, out, 1, frames, width, height, hands=hands, write_maps=maps))
        png = sum(p.stat().st_size for p in result.map_paths) / max(1, len(result.map_paths))
    return result, png


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=240)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--height", type=int, default=768)
    parser.add_argument("--hands", action="store_true", help="also project (and in the old export draw) the hands")
    parser.add_argument("--repeat", type=int, default=3, help="runs of (a), (b) and (b2) each (the best counts); (c) runs once")
    args = parser.parse_args()

    import bpy
    import numpy as np

    t = time.perf_counter()
    scene, rig, cam = build_scene(args.frames, args.width, args.height)
    build_s = time.perf_counter() - t
    frames = list(range(1, args.frames + 1))
    n, size = args.frames, (args.width, args.height)
    scene.frame_set(1)

    export_once(scene, rig, n, *size, args.hands, maps=False)  # warm-up
    runs: dict[str, list] = {"a": [], "b": [], "b2": []}
    results = []
    for _ in range(max(1, args.repeat)):
        wall, cpu, (result, _) = timed(export_once, scene, rig, n, *size, args.hands, maps=False)
        runs["a"].append((wall, cpu))
        results.append(result)
        runs["b"].append(timed(frame_set_floor, scene, frames)[:2])
        runs["b2"].append(timed(depsgraph_floor, scene, frames)[:2])
    old_wall, old_cpu, (old, png) = timed(export_once, scene, rig, n, *size, args.hands, maps=True)
    best = {k: (min(w for w, _ in v), min(c for _, c in v)) for k, v in runs.items()}
    best["c"] = (old_wall, old_cpu)
    new = results[min(range(len(results)), key=lambda i: runs["a"][i][0])]
    floor_wall, floor_cpu = best["b"]

    print(f"Blender {bpy.app.version_string}; Rigify rig with {len(rig.pose.bones)} pose bones (built in {build_s:.1f} s); "
          f"{n} frames at {args.width}x{args.height}; hands={args.hands}; {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}; best of {args.repeat}; (c) once, mean PNG {png / 1024:.1f} KiB")
    print(f"{'':<56}{'wall s':>8}{'ms/frame':>9}{'x (b)':>7}{'cpu s':>8}{'ms/frame':>9}{'x (b)':>7}")

    def row(name, wall, cpu=None):
        line = f"{name:<56}{wall:>8.3f}{1000 * wall / n:>9.2f}{wall / floor_wall:>7.2f}"
        if cpu is not None:
            line += f"{cpu:>8.3f}{1000 * cpu / n:>9.2f}{cpu / floor_cpu:>7.2f}"
        print(line)

    row("(a) job-ready inputs: export_shot, track only", *best["a"])
    row("      evaluate (scene.frame_set)", new.timings["evaluate"])
    row("      project (mapped bones -> pixels, hidden face pts)", new.timings["project"])
    row("      write keypoints.json", new.timings["write_track"])
    row("(b) evaluation floor: scene.frame_set alone", *best["b"])
    row("(b2) frame_current + depsgraph.update alone", *best["b2"])
    row("(c) old export: track + PNG maps", *best["c"])
    row("      evaluate (scene.frame_set)", old.timings["evaluate"])
    row("      project", old.timings["project"])
    row("      draw (aa_contract.draw, numpy)", old.timings["draw"])
    row("      write PNG (zlib)", old.timings["write_png"])
    print(f"(a) / (b): wall {best['a'][0] / floor_wall:.2f}, cpu {best['a'][1] / floor_cpu:.2f} (target <= 1.25); "
          f"(c) / (a): wall {old_wall / best['a'][0]:.1f}, cpu {old_cpu / best['a'][1]:.1f}")
    same = all(np.array_equal(x.body, y.body, equal_nan=True) for x, y in zip(new.track.frames, old.track.frames))
    print(f"keypoints of (a) and (c) identical: {same}")
    sys.stdout.flush()
    os._exit(0)  # bpy 4.2 can crash at exit after rigify was enabled


if __name__ == "__main__":
    main()
