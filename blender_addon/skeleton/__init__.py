"""From an armature's animation to OpenPose-style skeleton maps (docs/keypoints.md).

bpy-free modules (usable by the engine too): draw.py (the DWPose drawing, numpy only), track.py
(the keypoint track file; `python -m blender_addon.skeleton.track draw` redraws maps from one),
bone_maps.py (bone map files, detection), png.py (PNG writer), errors.py.
bpy modules: project.py (pose -> keypoints through the camera), export.py (`export_shot`).
"""
