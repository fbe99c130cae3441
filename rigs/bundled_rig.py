"""The bundled rig: a clean humanoid armature whose bones land exactly on the OpenPose keypoints.

Builds, with bpy only, an armature (bone heads/tails at the COCO-18 keypoints: shoulders, elbows,
wrists, hips, knees, ankles, nose, eyes, ears; the neck keypoint is the shoulders' midpoint as
OpenPose defines it), a camera framing it at 512x768, and a keyframed demo motion: a walk in place
with a wave of the left hand in the second half. The .blend is a build output, never committed:

    .venv/blender-5.0/bin/python rigs/bundled_rig.py --out rigs/build/bundled_rig.blend
    blender -b --python rigs/bundled_rig.py -- --out bundled_rig.blend

Blender convention: the character faces -Y, its left side is +X (".L"), its right is -X (".R").
The bone map is rigs/bone_maps/bundled.json.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import bpy

RIG_NAME = "OpenPoseRig"
CAMERA_NAME = "OpenPoseCamera"
FRAME_START, FRAME_END = 1, 48
FPS = 24
RESOLUTION = (512, 768)

# The keypoints of the rest pose (metres): a 1.78 m figure, arms relaxed 20 degrees from the body.
KEYPOINTS = {
    "nose": (0.0, -0.105, 1.645),
    "neck": (0.0, 0.0, 1.45),
    "right_shoulder": (-0.18, 0.0, 1.45),
    "right_elbow": (-0.27, 0.0, 1.19),
    "right_wrist": (-0.35, 0.0, 0.955),
    "left_shoulder": (0.18, 0.0, 1.45),
    "left_elbow": (0.27, 0.0, 1.19),
    "left_wrist": (0.35, 0.0, 0.955),
    "right_hip": (-0.10, 0.0, 0.95),
    "right_knee": (-0.11, 0.0, 0.52),
    "right_ankle": (-0.12, 0.0, 0.09),
    "left_hip": (0.10, 0.0, 0.95),
    "left_knee": (0.11, 0.0, 0.52),
    "left_ankle": (0.12, 0.0, 0.09),
    "right_eye": (-0.035, -0.085, 1.685),
    "left_eye": (0.035, -0.085, 1.685),
    "right_ear": (-0.078, -0.005, 1.665),
    "left_ear": (0.078, -0.005, 1.665),
}

# bone -> (head, tail, parent); heads/tails given as keypoint names or coordinates.
BONES = {
    "hips": ((0.0, 0.0, 0.95), (0.0, 0.0, 1.05), None),
    "spine": ((0.0, 0.0, 1.05), "neck", "hips"),
    "neck": ("neck", (0.0, 0.0, 1.56), "spine"),
    "head": ((0.0, 0.0, 1.56), (0.0, 0.0, 1.78), "neck"),
    "nose": ((0.0, -0.04, 1.645), "nose", "head"),
    "eye.R": ((-0.035, -0.04, 1.685), "right_eye", "head"),
    "eye.L": ((0.035, -0.04, 1.685), "left_eye", "head"),
    "ear.R": ((-0.04, -0.005, 1.665), "right_ear", "head"),
    "ear.L": ((0.04, -0.005, 1.665), "left_ear", "head"),
    "shoulder.R": ("neck", "right_shoulder", "spine"),
    "shoulder.L": ("neck", "left_shoulder", "spine"),
    "upper_arm.R": ("right_shoulder", "right_elbow", "shoulder.R"),
    "upper_arm.L": ("left_shoulder", "left_elbow", "shoulder.L"),
    "forearm.R": ("right_elbow", "right_wrist", "upper_arm.R"),
    "forearm.L": ("left_elbow", "left_wrist", "upper_arm.L"),
    "hand.R": ("right_wrist", (-0.38, 0.0, 0.87), "forearm.R"),
    "hand.L": ("left_wrist", (0.38, 0.0, 0.87), "forearm.L"),
    "thigh.R": ("right_hip", "right_knee", "hips"),
    "thigh.L": ("left_hip", "left_knee", "hips"),
    "shin.R": ("right_knee", "right_ankle", "thigh.R"),
    "shin.L": ("left_knee", "left_ankle", "thigh.L"),
    "foot.R": ("right_ankle", (-0.12, -0.14, 0.02), "shin.R"),
    "foot.L": ("left_ankle", (0.12, -0.14, 0.02), "shin.L"),
}


def _point(value) -> tuple[float, float, float]:
    return KEYPOINTS[value] if isinstance(value, str) else value


def build_armature(scene: bpy.types.Scene) -> bpy.types.Object:
    """The armature in its rest pose, linked to `scene`, every bone's roll 0."""
    data = bpy.data.armatures.new(RIG_NAME)
    rig = bpy.data.objects.new(RIG_NAME, data)
    scene.collection.objects.link(rig)
    view_layer = bpy.context.view_layer
    view_layer.objects.active = rig
    rig.select_set(True)
    bpy.ops.object.mode_set(mode="EDIT")
    for name, (head, tail, _parent) in BONES.items():
        bone = data.edit_bones.new(name)
        bone.head, bone.tail = _point(head), _point(tail)
        bone.roll = 0.0
    for name, (_head, _tail, parent) in BONES.items():
        if parent:
            data.edit_bones[name].parent = data.edit_bones[parent]
            data.edit_bones[name].use_connect = False
    bpy.ops.object.mode_set(mode="OBJECT")
    for bone in rig.pose.bones:
        bone.rotation_mode = "XYZ"
    return rig


def build_camera(scene: bpy.types.Scene) -> bpy.types.Object:
    """A 50 mm camera 3.8 m from the figure, 30 degrees to its left (so the walk shows), framing it
    whole in a 512x768 portrait image."""
    camera = bpy.data.objects.new(CAMERA_NAME, bpy.data.cameras.new(CAMERA_NAME))
    scene.collection.objects.link(camera)
    turn = math.radians(30.0)
    camera.location = (3.8 * math.sin(turn), -3.8 * math.cos(turn), 0.92)
    camera.rotation_euler = (math.radians(90.0), 0.0, turn)
    camera.data.lens = 50.0
    camera.data.clip_start = 0.1
    scene.camera = camera
    scene.render.resolution_x, scene.render.resolution_y = RESOLUTION
    scene.render.resolution_percentage = 100
    scene.render.fps = FPS
    return camera


# The demo motion: Euler angles (radians) per bone as functions of the phase of the walk cycle.
def _walk(phase: float) -> dict[str, tuple[float, float, float]]:
    swing = math.sin(2 * math.pi * phase)
    # Each knee bends while its leg swings forward (the thigh's positive X rotation points it backwards).
    lift_r = max(0.0, -math.cos(2 * math.pi * phase))
    lift_l = max(0.0, math.cos(2 * math.pi * phase))
    return {
        "thigh.R": (0.45 * swing, 0.0, 0.0),
        "thigh.L": (-0.45 * swing, 0.0, 0.0),
        "shin.R": (0.8 * lift_r, 0.0, 0.0),
        "shin.L": (0.8 * lift_l, 0.0, 0.0),
        "upper_arm.R": (-0.5 * swing, 0.0, 0.0),
        "upper_arm.L": (0.5 * swing, 0.0, 0.0),
        "forearm.R": (-0.25 - 0.15 * swing, 0.0, 0.0),  # negative X bends the elbow
        "forearm.L": (-0.25 + 0.15 * swing, 0.0, 0.0),
        "spine": (0.0, 0.0, 0.06 * swing),
        "head": (0.0, 0.0, -0.05 * swing),
    }


def _wave(phase: float) -> dict[str, tuple[float, float, float]]:
    """The left arm raised beside the head, the forearm waving."""
    return {
        "upper_arm.L": (0.0, 0.0, -2.3),
        "forearm.L": (0.0, 0.0, -0.35 - 0.45 * math.sin(4 * math.pi * phase)),
    }


def keyframe_demo_motion(rig: bpy.types.Object, frame_start: int = FRAME_START, frame_end: int = FRAME_END, step: int = 2) -> None:
    """A walk in place (one cycle per 24 frames); from the middle on, the left hand waves.

    Keys every `step` frames with Bezier interpolation, so the motion is smooth between keys.
    """
    wave_from = frame_start + (frame_end - frame_start + 1) // 2
    for frame in range(frame_start, frame_end + 1, step):
        phase = (frame - frame_start) / 24.0
        pose = _walk(phase)
        if frame >= wave_from:
            pose.update(_wave((frame - wave_from) / 24.0))
        bob = 0.02 * math.cos(4 * math.pi * phase)
        rig.pose.bones["hips"].location = (0.0, bob, 0.0)  # hips' local Y is world up
        rig.pose.bones["hips"].keyframe_insert("location", frame=frame)
        for name in ("thigh.R", "thigh.L", "shin.R", "shin.L", "upper_arm.R", "upper_arm.L", "forearm.R", "forearm.L", "spine", "head"):
            bone = rig.pose.bones[name]
            bone.rotation_euler = pose.get(name, (0.0, 0.0, 0.0))
            bone.keyframe_insert("rotation_euler", frame=frame)


def build_bundled_rig_scene(scene: bpy.types.Scene | None = None, motion: bool = True) -> tuple[bpy.types.Object, bpy.types.Object]:
    """Build rig + camera (+ demo motion) into `scene` (default: the current scene); returns (rig, camera)."""
    scene = scene or bpy.context.scene
    rig = build_armature(scene)
    camera = build_camera(scene)
    scene.frame_start, scene.frame_end = FRAME_START, FRAME_END
    if motion:
        keyframe_demo_motion(rig)
    scene.frame_set(FRAME_START)
    return rig, camera


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Build the bundled OpenPose rig, its camera and demo motion into a .blend")
    parser.add_argument("--out", required=True, type=Path, help="where to save the .blend")
    parser.add_argument("--no-motion", action="store_true", help="rest pose only, no keyframes")
    args = parser.parse_args(argv)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    build_bundled_rig_scene(motion=not args.no_motion)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    bpy.ops.wm.save_as_mainfile(filepath=str(args.out.resolve()))
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    argv = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:]
    code = main(argv)
    sys.stdout.flush()
    if bpy.app.background:
        import os

        os._exit(code)  # bpy 4.2/4.5 can crash or hang at interpreter exit
