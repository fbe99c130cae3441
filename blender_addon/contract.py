"""The contract package (`aa_contract`: settings, protocol, keypoint track, skeleton drawing), as
the add-on imports it.

In the source tree `aa_contract` sits beside `blender_addon`; the extension zip
(`scripts/build_addon.py`) bundles it inside the add-on as `<addon>/aa_contract`, because an
installed extension cannot import a top-level package of ours. Both copies are the same files,
which import each other only relatively.
"""

import importlib.util

if __package__ and importlib.util.find_spec(f"{__package__}.aa_contract") is not None:
    from .aa_contract import draw, errors, keypoints, png, protocol, settings  # the extension zip
else:
    from aa_contract import draw, errors, keypoints, png, protocol, settings  # the source tree

__all__ = ["draw", "errors", "keypoints", "png", "protocol", "settings"]
