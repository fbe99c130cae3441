"""Errors a user can act on: each carries a stable code, a message and a hint.

The CLI prints them as two lines, the server sends them as `error` events, and the add-on shows them
in its panel. Anything else that escapes is a bug and is reported with the code `internal`.
"""

from __future__ import annotations



from aa_contract.errors import BadTrack, ContractError, InvalidSetting  # noqa: F401 - the shared ones

# Every error a user can act on is a ContractError: the engine's own (below) and the contract's
# (InvalidSetting for a bad setting or job field, BadTrack for a bad keypoint track).
UserError = ContractError


class EngineError(ContractError):
    code = "engine_error"


class BadRequest(EngineError):
    """A job or command line that cannot be run as given (wrong size, missing field...)."""

    code = "bad_request"


class InputError(EngineError):
    """An input file is missing or unreadable (reference image, pose maps)."""

    code = "bad_input"


class WeightsError(EngineError):
    """A weights folder or file that is incomplete, mismatched or unreadable."""

    code = "weights"


class OutputError(EngineError):
    """The output folder cannot be written."""

    code = "output"


class OutOfMemory(EngineError):
    code = "out_of_memory"


class Cancelled(EngineError):
    code = "cancelled"

    def __init__(self, message: str = "The job was cancelled.", hint: str = ""):
        super().__init__(message, hint)


def internal_error(exc: BaseException, logger, doing: str) -> EngineError:
    """An unexpected exception as an `internal` error a user can report: the traceback goes to the
    log (stderr), the message names the exception. `doing` says what failed ("job shot_010")."""
    import traceback

    logger.error("%s failed:\n%s", doing, "".join(traceback.format_exception(exc)))
    text = str(exc)
    if len(text) > 300:
        text = text[:300] + "..."
    return EngineError(f"Internal error while {doing}: {exc.__class__.__name__}: {text}",
                       "This is a bug; the engine log (stderr) has the traceback. The engine keeps serving.", code="internal")
