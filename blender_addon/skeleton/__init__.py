"""From an armature's animation to the keypoint track, the job's pose input (docs/keypoints.md).

bpy-free modules: bone_maps.py (bone map files, detection), track.py (drawing a track into map
files, rescaling a track, `python -m blender_addon.skeleton.track`), rescale.py, errors.py. The
track format and the DWPose drawing are the contract's (aa_contract.keypoints, aa_contract.draw).
bpy modules: project.py (pose -> keypoints through the camera, hidden face points), export.py
(`export_shot(ExportRequest(...))`).
"""
