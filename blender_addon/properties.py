"""The shot settings stored in the .blend (`scene.animate_anyone`)."""

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty


# Blender 4.5+ warns about (and flags) "//" paths unless the property says it takes them.
_BLEND_RELATIVE = {'PATH_SUPPORTS_BLEND_RELATIVE'} if bpy.app.version >= (4, 5, 0) else set()


def _is_armature(self, obj):
    return obj.type == 'ARMATURE'


class AnimateAnyoneShotSettings(bpy.types.PropertyGroup):
    shot_name: StringProperty(name="Shot", description="Name of the shot's folder and strip (default: the scene's name)", default="")
    reference_source: EnumProperty(
        name="Reference",
        items=[('FILE', "File", "A PNG or JPG file on disk"), ('IMAGE', "Image", "An image datablock in this file")],
        default='FILE',
    )
    reference_path: StringProperty(name="Reference Image", description="The character to animate: one image, full body", subtype='FILE_PATH', default="", options=_BLEND_RELATIVE)
    reference_image: PointerProperty(name="Reference Image", type=bpy.types.Image)
    armature: PointerProperty(name="Armature", description="The rig to follow (default: the active armature)", type=bpy.types.Object, poll=_is_armature)
    bone_map: StringProperty(name="Bone Map", description="Empty = detect (Rigify, Mixamo, bundled rig); or a bundled map's name or a .json map", default="")
    hands: BoolProperty(name="Hands", description="Draw hand keypoints when the rig has finger bones", default=False)
    face: BoolProperty(name="Face", description="Draw face keypoints when the rig has them", default=False)

    # Pose rescaling (docs/pose_rescaling.md): the skeleton takes the reference character's proportions.
    rescale: BoolProperty(name="Rescale to Reference", description="Give the skeleton the limb lengths and place of the character in the reference image", default=False)
    rescale_source: EnumProperty(
        name="Reference Pose",
        items=[('FRAME', "Rig Pose at a Frame", "This armature, posed like the reference character at a chosen frame (e.g. one outside the shot)"),
               ('FILE', "Keypoints File", "An aa-keypoints/1 track of the reference character (its first frame is used)")],
        default='FRAME',
    )
    reference_pose_frame: IntProperty(name="Reference Pose Frame", description="The frame where the armature is posed like the character in the reference image", default=0)
    reference_keypoints: StringProperty(name="Keypoints File", description="An aa-keypoints/1 track (.json) holding the reference character's keypoints in its first frame", subtype='FILE_PATH', default="", options=_BLEND_RELATIVE)
    align_first_frame: BoolProperty(name="Align at First Frame", description="Measure the rig's proportions at the shot's first frame", default=True)
    align_frame: IntProperty(name="Alignment Frame", description="The frame of the shot posed most like the reference image: the rig's limbs are measured there", default=1)

    use_scene_range: BoolProperty(name="Scene Frame Range", default=True)
    frame_start: IntProperty(name="Start", default=1, min=0)
    frame_end: IntProperty(name="End", default=24, min=0)

    use_render_resolution: BoolProperty(name="Render Resolution", description="Use the scene's render resolution, rounded to multiples of 8", default=True)
    width: IntProperty(name="Width", default=512, min=8, soft_max=2048)
    height: IntProperty(name="Height", default=768, min=8, soft_max=2048)

    steps: IntProperty(name="Steps", description="Denoising steps (more: cleaner, slower)", default=30, min=1, soft_max=100)
    guidance: FloatProperty(name="Guidance", description="Classifier-free guidance scale (1 = off)", default=3.5, min=1.0, soft_max=10.0)
    seed: IntProperty(name="Seed", default=42, min=0)
    context_frames: IntProperty(name="Context Frames", description="Frames denoised together (long shots use overlapping windows)", default=24, min=1, max=32)
    context_overlap: IntProperty(name="Overlap", description="Frames shared by neighbouring windows", default=4, min=0, max=31)
    context_loop: BoolProperty(
        name="Seamless Loop",
        description="Let the context windows wrap round from the shot's last frame to its first, so the video loops "
                    "seamlessly. Use it when the shot's last frame leads back into its first (a walk cycle); "
                    "it only changes shots longer than Context Frames",
        default=False,
    )

    output_dir: StringProperty(name="Output", description="Folder for the shot folders (// = next to the .blend)", subtype='DIR_PATH', default="//animate_anyone/", options=_BLEND_RELATIVE)
    import_pose_preview: BoolProperty(name="Skeleton Preview Strip", description="Also import the skeleton maps as a second strip", default=False)


classes = (AnimateAnyoneShotSettings,)


def register():
    for cls in classes:
        bpy.utils.register_class(cls)
    bpy.types.Scene.animate_anyone = PointerProperty(type=AnimateAnyoneShotSettings)


def unregister():
    del bpy.types.Scene.animate_anyone
    for cls in reversed(classes):
        bpy.utils.unregister_class(cls)
