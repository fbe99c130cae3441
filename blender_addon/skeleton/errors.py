"""Errors of the pose export, each with a message (what is wrong) and a hint (what to do).

bpy-free, so the engine side (reading a keypoint track) raises the same types. The add-on turns
any of them into a user-facing error through `.message` and `.hint`.
"""

from __future__ import annotations

# The add-on's error base and its scene errors (bpy-free too): one hierarchy for the whole add-on,
# so every pose-export error is an AddonError the operators and the command line already report.
from ..contract import errors as _contract_errors
from ..errors import AddonError, NoArmature, NoCamera  # noqa: F401 - NoArmature, NoCamera: re-exported for the export


class PoseExportError(AddonError):
    code = "pose_export"


class BadFrameRange(PoseExportError):
    code = "frame_range"


class BadSize(PoseExportError):
    code = "size"


class BadBoneMap(PoseExportError):
    """A bone map file that cannot be read, or is not in the aa-bone-map/1 format."""

    code = "bone_map"


class UnmappedBones(PoseExportError):
    """The armature lacks the bones a map needs; `.missing_bones` names them."""

    code = "unmapped_bones"

    def __init__(self, message: str, hint: str = "", missing_bones: list[str] | None = None):
        super().__init__(message, hint)
        self.missing_bones = list(missing_bones or [])


class NothingInView(PoseExportError):
    """No keypoint of the rig is in the camera's view in any frame of the range."""

    code = "nothing_in_view"


class OutputNotWritable(PoseExportError):
    code = "output"


# A keypoint track that cannot be read: the contract's error (the track format is the contract's).
BadTrack = _contract_errors.BadTrack
