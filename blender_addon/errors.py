"""Errors an animator can act on. Each has a message (what is wrong) and a hint (what to do).

The operators turn them into `self.report` lines and panel text; the command-line render prints
them as `error:` / `hint:` lines. Anything else that escapes is a bug.
"""


from .contract import errors as _contract_errors

# Every error the add-on reports is a ContractError: its own (below), and the contract's (a bad
# setting, a bad keypoint track), which carry the same message whichever side raised them.
ContractError = UserError = _contract_errors.ContractError


class AddonError(ContractError):
    code = "addon"

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message, hint)


class NoCamera(AddonError):
    code = "no_camera"


class NoArmature(AddonError):
    code = "no_armature"


class ReferenceImageError(AddonError):
    code = "reference"


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
