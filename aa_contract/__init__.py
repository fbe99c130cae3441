"""The contract between the Blender add-on and the engine: one declaration of each thing both
sides must agree on.

- `settings`: the generation settings (name, type, default, range, help, message), validated once;
- `protocol`: the JSON-lines protocol's version, message types, fields and error codes;
- `keypoints`: the keypoint track format (aa-keypoints/1) and what a missing point is;
- `draw`: the skeleton drawing (DWPose-exact, numpy only); `png`: the map writer.

Standard library and numpy only: no bpy, no torch. The add-on bundles a copy of this package in
its extension zip (scripts/build_addon.py); inside the package, modules import each other
relatively so that copy works unchanged.
"""
