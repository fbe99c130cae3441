"""Rigs and cameras the pose-export tests build in bpy (no downloads, no binaries)."""

import math

import bpy
from bpy_extras.object_utils import world_to_camera_view
from mathutils import Vector

# A T-posed humanoid facing -Y with Mixamo bone names (character's left = +X), heights in metres.
MIXAMO_BONES = {
    # name: (head, tail, parent)
    "Hips": ((0, 0, 1.0), (0, 0, 1.1), None),
    "Spine": ((0, 0, 1.1), (0, 0, 1.3), "Hips"),
    "Spine2": ((0, 0, 1.3), (0, 0, 1.45), "Spine"),
    "Neck": ((0, 0, 1.45), (0, 0, 1.55), "Spine2"),
    "Head": ((0, 0, 1.55), (0, 0, 1.75), "Neck"),
    "LeftShoulder": ((0.05, 0, 1.42), (0.18, 0, 1.42), "Spine2"),
    "LeftArm": ((0.18, 0, 1.42), (0.45, 0, 1.42), "LeftShoulder"),
    "LeftForeArm": ((0.45, 0, 1.42), (0.7, 0, 1.42), "LeftArm"),
    "LeftHand": ((0.7, 0, 1.42), (0.8, 0, 1.42), "LeftForeArm"),
    "LeftUpLeg": ((0.1, 0, 0.98), (0.1, 0, 0.55), "Hips"),
    "LeftLeg": ((0.1, 0, 0.55), (0.1, 0, 0.1), "LeftUpLeg"),
    "LeftFoot": ((0.1, 0, 0.1), (0.1, -0.12, 0.02), "LeftLeg"),
}
def _mirror(v):
    return (-v[0], v[1], v[2])


for _name, (_h, _t, _p) in list(MIXAMO_BONES.items()):
    if _name.startswith("Left"):
        MIXAMO_BONES["Right" + _name[4:]] = (_mirror(_h), _mirror(_t), _p and _p.replace("Left", "Right"))


def make_armature(bones: dict, prefix: str = "", name: str = "Armature"):
    """An armature object with the given bones (name -> (head, tail, parent)), in object mode."""
    data = bpy.data.armatures.new(name)
    obj = bpy.data.objects.new(name, data)
    bpy.context.scene.collection.objects.link(obj)
    bpy.context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode='EDIT')
    for bone_name, (head, tail, _parent) in bones.items():
        eb = data.edit_bones.new(prefix + bone_name)
        eb.head, eb.tail, eb.roll = head, tail, 0.0
    for bone_name, (_h, _t, parent) in bones.items():
        if parent:
            data.edit_bones[prefix + bone_name].parent = data.edit_bones[prefix + parent]
            data.edit_bones[prefix + bone_name].use_connect = False
    bpy.ops.object.mode_set(mode='OBJECT')
    return obj


def make_mixamo(prefix: str = "mixamorig:", eyes: bool = False):
    bones = dict(MIXAMO_BONES)
    if eyes:
        bones["LeftEye"] = ((0.03, -0.08, 1.65), (0.03, -0.1, 1.65), "Head")
        bones["RightEye"] = ((-0.03, -0.08, 1.65), (-0.03, -0.1, 1.65), "Head")
    return make_armature(bones, prefix)


def add_camera(scene, location=(0, -6, 1.0), lens=50.0, name="Camera"):
    cam = bpy.data.objects.new(name, bpy.data.cameras.new(name))
    scene.collection.objects.link(cam)
    cam.location = location
    cam.rotation_euler = (math.radians(90), 0, 0)  # looking along +Y
    cam.data.lens = lens
    scene.camera = cam
    return cam


def expected_pixel(scene, camera, world_point, width, height):
    v = world_to_camera_view(scene, camera, Vector(world_point))
    return v.x * width, (1.0 - v.y) * height, v.z
