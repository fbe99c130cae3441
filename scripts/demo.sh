#!/usr/bin/env bash
# The main job on a fresh machine, set-up included:
#   environments (engine: torch CPU + diffusers; Blender 5.0 as the bpy module)
#   -> a shot .blend with a keyframed rig and a camera
#   -> the add-on's command-line render: skeleton maps -> engine subprocess (random-tiny weights)
#      -> frames + video.mp4 -> ONE image-sequence strip in the VSE of a saved .blend.
# Extra arguments go to the command-line render (docs/addon.md), e.g. --steps 8 --weights PATH.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
engine="$(bash scripts/setup_env.sh engine)"
blender="$(bash scripts/setup_env.sh blender-5.0)"
out="$root/out/demo"
rm -rf "$out"
mkdir -p "$out"

echo "== building the shot: $out/shot.blend"
"$blender/bin/python" - "$out/shot.blend" <<'PY'
import math, os, sys
import bpy

bpy.ops.wm.read_factory_settings(use_empty=True)
scene = bpy.context.scene
scene.frame_start, scene.frame_end = 1, 16
scene.render.resolution_x, scene.render.resolution_y, scene.render.fps = 128, 192, 12
cam = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
scene.collection.objects.link(cam)
cam.location, cam.rotation_euler = (0.0, -3.6, 1.0), (math.radians(90), 0.0, 0.0)
scene.camera = cam
# A Mixamo-named rig (metres, facing the camera): bone -> (head, tail).
bones = {
    "Hips": ((0, 0, 1.0), (0, 0, 1.1)), "Spine": ((0, 0, 1.1), (0, 0, 1.45)),
    "Neck": ((0, 0, 1.5), (0, 0, 1.6)), "Head": ((0, 0, 1.6), (0, 0, 1.85)),
    "LeftArm": ((0.2, 0, 1.45), (0.2, 0, 1.15)), "LeftForeArm": ((0.2, 0, 1.15), (0.2, 0, 0.9)), "LeftHand": ((0.2, 0, 0.9), (0.2, 0, 0.8)),
    "RightArm": ((-0.2, 0, 1.45), (-0.2, 0, 1.15)), "RightForeArm": ((-0.2, 0, 1.15), (-0.2, 0, 0.9)), "RightHand": ((-0.2, 0, 0.9), (-0.2, 0, 0.8)),
    "LeftUpLeg": ((0.1, 0, 1.0), (0.1, 0, 0.55)), "LeftLeg": ((0.1, 0, 0.55), (0.1, 0, 0.1)), "LeftFoot": ((0.1, 0, 0.1), (0.1, -0.15, 0.0)),
    "RightUpLeg": ((-0.1, 0, 1.0), (-0.1, 0, 0.55)), "RightLeg": ((-0.1, 0, 0.55), (-0.1, 0, 0.1)), "RightFoot": ((-0.1, 0, 0.1), (-0.1, -0.15, 0.0)),
}
parents = {"Spine": "Hips", "Neck": "Spine", "Head": "Neck", "LeftArm": "Spine", "LeftForeArm": "LeftArm", "LeftHand": "LeftForeArm",
           "RightArm": "Spine", "RightForeArm": "RightArm", "RightHand": "RightForeArm", "LeftUpLeg": "Hips", "LeftLeg": "LeftUpLeg",
           "LeftFoot": "LeftLeg", "RightUpLeg": "Hips", "RightLeg": "RightUpLeg", "RightFoot": "RightLeg"}
rig = bpy.data.objects.new("Rig", bpy.data.armatures.new("Rig"))
scene.collection.objects.link(rig)
bpy.context.view_layer.objects.active = rig
bpy.ops.object.mode_set(mode='EDIT')
for name, (head, tail) in bones.items():
    bone = rig.data.edit_bones.new("mixamorig:" + name)
    bone.head, bone.tail = head, tail
for name, parent in parents.items():
    rig.data.edit_bones["mixamorig:" + name].parent = rig.data.edit_bones["mixamorig:" + parent]
bpy.ops.object.mode_set(mode='OBJECT')
# Jumping jacks, seen from the front: arms swing up sideways, legs open and close.
for f in range(1, 17):
    amount = 0.5 - 0.5 * math.cos(2 * math.pi * (f - 1) / 16)  # 0 -> 1 -> 0
    for name, angle in (("LeftArm", 2.4), ("RightArm", -2.4), ("LeftUpLeg", -0.35), ("RightUpLeg", 0.35), ("LeftForeArm", 0.4), ("RightForeArm", -0.4)):
        pb = rig.pose.bones["mixamorig:" + name]
        pb.rotation_mode = 'XYZ'
        pb.rotation_euler = (0.0, 0.0, angle * amount)
        pb.keyframe_insert("rotation_euler", frame=f)
bpy.ops.wm.save_as_mainfile(filepath=sys.argv[1])
sys.stdout.flush()
os._exit(0)
PY

echo "== rendering (rig -> skeleton maps -> engine -> frames -> one VSE strip)"
"$blender/bin/python" -m blender_addon.command_line "$out/shot.blend" \
  --engine-python "$engine/bin/python" --weights random-tiny --device cpu \
  --reference examples/reference.png --width 128 --height 192 --steps 4 \
  --shot demo --output "$out" --save "$out/demo.blend" "$@"

echo
echo "skeleton maps: $out/demo/poses/"
echo "frames:        $out/demo/frames/frame_00001.png ..."
echo "video:         $out/demo/frames/video.mp4"
echo "blend + strip: $out/demo.blend (open it, Video Sequencing workspace)"
