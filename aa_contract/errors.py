"""The one error type both sides share: a message (what is wrong), a hint (what to do), a stable
code, and for a bad setting or field, its name.

The engine's `EngineError` and the add-on's `AddonError` derive from it, so an error raised by the
contract (a bad setting, a bad keypoint track) reaches the user through whichever side caught it,
with the same words.
"""

from __future__ import annotations


class ContractError(Exception):
    code = "error"

    def __init__(self, message: str, hint: str = "", code: str | None = None, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.field = field
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return f"{self.message} {self.hint}".strip()

    def to_dict(self) -> dict:
        """The fields of a protocol `error` event."""
        out = {"code": self.code, "message": self.message, "hint": self.hint}
        if self.field is not None:
            out["field"] = self.field
        return out


class InvalidSetting(ContractError):
    """A generation setting or job field with a wrong type or out of its range; `.field` names it."""

    code = "bad_request"


class BadTrack(ContractError):
    """A keypoint track that cannot be read or is not in the aa-keypoints/1 format."""

    code = "track"
