"""From an armature's animation to OpenPose-style skeleton maps.

bpy-free modules (usable by the engine too): draw.py (the DWPose drawing, numpy only).
"""
