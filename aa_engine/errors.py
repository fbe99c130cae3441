"""Errors a user can act on: each carries a stable code, a message and a hint.

The CLI prints them as two lines, the server sends them as `error` events, and the add-on shows them
in its panel. Anything else that escapes is a bug and is reported with the code `internal`.
"""


class EngineError(Exception):
    code = "engine_error"

    def __init__(self, message: str, hint: str = "", code: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if code is not None:
            self.code = code

    def to_dict(self) -> dict:
        return {"code": self.code, "message": self.message, "hint": self.hint}


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
