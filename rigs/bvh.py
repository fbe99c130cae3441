"""Drive the bundled rig with motion capture: import a BVH with Blender's bundled importer and make
the rig follow it.

    import bvh; mocap = bvh.drive_with_bvh(scene, rig, "walk.bvh")

The BVH skeleton is imported as its own armature (io_anim_bvh, scaled by `scale`, e.g. 0.01 for
centimetre files), then each limb of the bundled rig gets a Damped Track constraint aiming it at
the BVH joint where that limb ends (upper arm -> the BVH forearm's head, thigh -> the BVH leg's
head, ...), and the hips copy the BVH hips' location. The rig keeps its own limb lengths and
follows the mocap's directions, whatever the BVH's rest pose: a direction retarget, good for
skeleton maps (which only see joint positions). Names follow the common CMU/Mixamo BVH convention
(Hips, Spine, Neck, Head, LeftArm, LeftForeArm, LeftHand, LeftUpLeg, LeftLeg, LeftFoot, ...);
pass `targets` for other names. A BVH armature can also be exported directly: the Mixamo bone
map (prefix "") matches CMU-named skeletons.
"""

from __future__ import annotations

import addon_utils
import bpy

# bundled-rig bone -> the BVH joint whose head is where that bone ends.
DEFAULT_TARGETS = {
    "spine": "Neck",
    "neck": "Head",
    "shoulder.R": "RightArm",
    "upper_arm.R": "RightForeArm",
    "forearm.R": "RightHand",
    "shoulder.L": "LeftArm",
    "upper_arm.L": "LeftForeArm",
    "forearm.L": "LeftHand",
    "thigh.R": "RightLeg",
    "shin.R": "RightFoot",
    "thigh.L": "LeftLeg",
    "shin.L": "LeftFoot",
}


class BvhError(Exception):
    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.message, self.hint = message, hint


def import_bvh(scene: bpy.types.Scene, path: str, scale: float = 0.01) -> bpy.types.Object:
    """Import `path` with Blender's BVH importer; sets the scene's frame range to the clip."""
    addon_utils.enable("io_anim_bvh", default_set=True)
    before = set(bpy.data.objects)
    result = bpy.ops.import_anim.bvh(filepath=str(path), global_scale=scale, frame_start=scene.frame_start,
                                     update_scene_fps=False, update_scene_duration=True)
    created = [o for o in bpy.data.objects if o not in before and o.type == "ARMATURE"]
    if "FINISHED" not in result or not created:
        raise BvhError(f"Blender could not import the BVH file {path}.", "Check that it is a valid BVH (HIERARCHY + MOTION).")
    return created[0]


def drive_with_bvh(scene: bpy.types.Scene, rig: bpy.types.Object, path: str, scale: float = 0.01,
                   targets: dict[str, str] | None = None) -> bpy.types.Object:
    """Import the BVH and constrain `rig` (the bundled rig) to follow it; returns the BVH armature."""
    mocap = import_bvh(scene, path, scale)
    targets = targets or DEFAULT_TARGETS
    names = set(mocap.data.bones.keys())
    missing = sorted(t for t in set(targets.values()) | {"Hips"} if t not in names)
    if missing:
        raise BvhError(f"The BVH skeleton lacks the joints {', '.join(missing)}.",
                       "Pass `targets` mapping the bundled rig's bones to this file's joint names.")
    hips = rig.pose.bones["hips"].constraints.new("COPY_LOCATION")
    hips.target, hips.subtarget = mocap, "Hips"
    for bone, joint in targets.items():
        track = rig.pose.bones[bone].constraints.new("DAMPED_TRACK")
        track.target, track.subtarget, track.track_axis = mocap, joint, "TRACK_Y"
    mocap.hide_render = True
    return mocap
