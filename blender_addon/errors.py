"""Errors an animator can act on. Each has a message (what is wrong) and a hint (what to do).

The operators turn them into `self.report` lines and panel text; the command-line render prints
them as `error:` / `hint:` lines. Anything else that escapes is a bug.
"""


class AddonError(Exception):
    code = "addon"

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} {self.hint}".strip()


class NoCamera(AddonError):
    code = "no_camera"


class NoArmature(AddonError):
    code = "no_armature"


class PoseExportFailed(AddonError):
    """The pose export refused the rig (unmapped bones, nothing in view...)."""

    code = "pose_export"


class ReferenceImageError(AddonError):
    code = "reference"


class ResolutionError(AddonError):
    code = "resolution"


class FrameRangeError(AddonError):
    code = "frame_range"


class OutputFolderError(AddonError):
    code = "output"


class EngineInterpreterError(AddonError):
    """The engine's Python is missing, or lacks torch or the engine package."""

    code = "engine_interpreter"


class EngineSetupFailed(AddonError):
    """Creating the engine environment (venv + pip) failed."""

    code = "engine_setup"


class EngineStartFailed(AddonError):
    """The engine process did not come up (bad weights folder, crash while loading...)."""

    code = "engine_start"


class EngineJobFailed(AddonError):
    """The engine answered a job with an `error` event (its code is kept)."""

    code = "engine_job"

    def __init__(self, message: str, hint: str = "", engine_code: str = ""):
        super().__init__(message, hint)
        self.engine_code = engine_code


class EngineCrashed(AddonError):
    """The engine process ended in the middle of a job."""

    code = "engine_crashed"


class Cancelled(AddonError):
    code = "cancelled"


def as_addon_error(exc: BaseException, kind: type = AddonError) -> AddonError:
    """Wrap an error from another part (the pose export's error types carry .message/.hint)."""
    if isinstance(exc, AddonError):
        return exc
    message = getattr(exc, "message", None) or str(exc) or exc.__class__.__name__
    return kind(message, getattr(exc, "hint", "") or "")
