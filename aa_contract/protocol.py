"""The engine protocol: JSON lines, one object per line, each with a "type" (docs/protocol.md).

This module declares the version, the message types and their fields, the error codes, and
parses the one message with structure, `job`, so that every transport and both sides agree on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import settings as settings_mod
from .errors import InvalidSetting

# 2: jobs may carry a keypoint track; `accepted` echoes the settings and warns of unknown fields;
#    `hello` says the model's native size and longest window; errors may name a `field`.
# 3: the remote transport (docs/remote.md): `auth` first, inputs uploaded in the job, frames streamed
#    back with their bytes, a queue (`priority`, `queued`, `status`/`queue`), `attach` after a
#    disconnect. A protocol-2 client cannot use a protocol-3 remote engine: it would wait for a
#    `hello` that only comes after `auth`, so the version goes up and both sides say so.
PROTOCOL_VERSION = 3

# Client -> engine: type -> {field: description}.
CLIENT_MESSAGES: dict[str, dict[str, str]] = {
    "job": {
        "id": "string, required: the client's name for the job (events carry it)",
        "reference": "path of the reference image (PNG/JPG)",
        "poses": "skeleton maps: a folder (sorted by name), a list of image paths, or a video file",
        "keypoints": "instead of poses: a keypoint track (aa-keypoints/1), as a path or the track object itself",
        "output": "folder for the frames, video.mp4 and job.json",
        "video": "bool, default true: also write video.mp4",
        **{s.name: s.help for s in settings_mod.SETTINGS},
    },
    "cancel": {"id": "the job to stop; honoured within one denoising step"},
    "ping": {},
    "shutdown": {},
}
# Engine -> client: type -> {field: description}.
ENGINE_MESSAGES: dict[str, dict[str, str]] = {
    "hello": {
        "protocol": "this version", "engine_version": "", "device": "cpu, cuda:0, ...", "dtype": "float32, ...",
        "weights": '{"source", "kind", "path"}', "model": "architecture name", "torch": "",
        "native_size": "[width, height] the model was trained at: the size a job without width/height gets",
        "max_context_frames": "the longest context window the model's motion modules take",
    },
    "accepted": {
        "id": "", "frames": "count", "resumed_frames": "already on disk",
        "settings": "every setting the job runs with, defaults and the native size filled in",
        "warnings": "list of strings: fields the engine does not know (ignored), and the like",
    },
    "progress": {"id": "", "stage": "prepare, reference, denoise, decode", "step": "", "total": "of this stage",
                 "frames_done": "", "frames_total": "", "elapsed_s": "", "eta_s": "null until known"},
    "frame": {"id": "", "index": "1-based", "path": "absolute path of the finished frame"},
    "done": {"id": "", "frames": "", "output": "folder", "video": "path or null", "elapsed_s": ""},
    "cancelled": {"id": "", "frames_done": ""},
    "error": {"id": "or null", "code": "see ERROR_CODES", "message": "what is wrong", "hint": "what to do",
              "field": "optional: the setting or field at fault"},
    "pong": {},
    "bye": {},
}
ERROR_CODES: dict[str, str] = {
    "bad_request": "a malformed line, an unknown type, or an invalid field or setting (`field` names it)",
    "bad_input": "the reference image, pose maps or keypoint track are missing or unreadable",
    "track": "a keypoint track not in the aa-keypoints/1 format",
    "weights": "the weights folder is incomplete, mismatched or unreadable",
    "output": "the output folder cannot be written",
    "out_of_memory": "the device ran out of memory; frames on disk are kept and a rerun resumes",
    "busy": "a job is already running",
    "internal": "a bug: the message holds the exception, the engine's log the traceback",
}
JOB_FIELDS = frozenset(CLIENT_MESSAGES["job"]) | {"type"}
_PATH_HINT = "See docs/protocol.md for the job message."


@dataclass
class JobRequest:
    """A `job` message, checked: the fields' types, and the settings validated (not yet sized)."""

    id: str
    output: str
    reference: str
    poses: str | list[str] | None = None
    keypoints: str | dict | None = None
    video: bool = True
    settings: dict[str, Any] = field(default_factory=settings_mod.defaults)
    warnings: list[str] = field(default_factory=list)


def _path(message: dict, name: str, job_id: str) -> str:
    value = message.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidSetting(f"Job {job_id!r}: '{name}' must be a non-empty path string (got {value!r}).", _PATH_HINT, field=name)
    if "\x00" in value:
        raise InvalidSetting(f"Job {job_id!r}: '{name}' contains a NUL byte.", "Paths cannot contain NUL bytes.", field=name)
    return value


def parse_job(message: dict) -> JobRequest:
    """Check a `job` message; raises InvalidSetting (code bad_request) naming the faulty field."""
    job_id = message.get("id")
    if not isinstance(job_id, str) or not job_id:
        raise InvalidSetting("A job needs an 'id' (a non-empty string).", 'Example: {"type": "job", "id": "shot_010", ...}', field="id")
    reference = _path(message, "reference", job_id)
    output = _path(message, "output", job_id)
    poses = keypoints = None
    if ("poses" in message) == ("keypoints" in message):
        raise InvalidSetting(f"Job {job_id!r} needs exactly one of 'poses' (skeleton maps) and 'keypoints' (a keypoint track).",
                             _PATH_HINT, field="poses")
    if "poses" in message:
        poses = message["poses"]
        if isinstance(poses, list):
            if not poses or not all(isinstance(p, str) and p and "\x00" not in p for p in poses):
                raise InvalidSetting(f"Job {job_id!r}: 'poses' as a list must hold path strings.", _PATH_HINT, field="poses")
        else:
            poses = _path(message, "poses", job_id)
    else:
        keypoints = message["keypoints"]
        if not isinstance(keypoints, dict):
            keypoints = _path(message, "keypoints", job_id)
    video = message.get("video", True)
    if not isinstance(video, bool):
        raise InvalidSetting(f"Job {job_id!r}: 'video' must be true or false (got {video!r}).", _PATH_HINT, field="video")
    unknown = sorted(set(message) - JOB_FIELDS)
    warnings = [f"Unknown job field(s) ignored: {', '.join(unknown)}. This engine speaks protocol {PROTOCOL_VERSION}; "
                "a newer add-on may send settings it does not have."] if unknown else []
    values = settings_mod.validate({k: v for k, v in message.items() if k in settings_mod.BY_NAME})
    return JobRequest(job_id, output, reference, poses, keypoints, video, values, warnings)


MAX_LINE_BYTES = 64 * 1024 * 1024  # a job with an inline keypoint track of ~100k frames fits


def decode_line(raw: bytes | str) -> dict:
    """One protocol line as a message dict, whatever arrives: bytes are decoded as UTF-8 (never
    the locale's encoding). Raises InvalidSetting (code bad_request) for anything that is not one
    JSON object with a string "type": invalid UTF-8, bad JSON, nesting too deep, a non-object."""
    import json

    if isinstance(raw, bytes):
        if len(raw) > MAX_LINE_BYTES:
            raise InvalidSetting(f"The line is {len(raw)} bytes; the limit is {MAX_LINE_BYTES}.", "Send smaller messages.")
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidSetting(f"The line is not valid UTF-8 ({exc.reason} at byte {exc.start}).",
                                 "Protocol lines are UTF-8 JSON.") from None
    line = raw.strip()
    try:
        message = json.loads(line)
    except RecursionError:
        raise InvalidSetting("The JSON is nested too deeply.", "Send one flat JSON object per line.") from None
    except ValueError as exc:
        raise InvalidSetting(f"Not a JSON line: {exc} (line starts {line[:60]!r}).", "Send one JSON object per line.") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise InvalidSetting("A message must be a JSON object with a string 'type'.", 'Example: {"type": "ping"}')
    return message


# -- the remote transport (protocol 3, aa_engine/protocol/server.py, docs/protocol.md) -------------
# Declared here, appended to the tables above, so both sides and the docs agree on every name.
CLIENT_MESSAGES["job"].update({
    "priority": "int, default 0: higher runs first; equal priorities run first in, first out (remote)",
    "have": "remote: {index: sha256 hex} of the frames the client already holds; those are not sent again",
})
CLIENT_MESSAGES.update({
    "auth": {"token": "the engine's token (its --token-file)", "client": "a stable random id naming this client: "
             "jobs belong to it, and only it can cancel or collect them", "protocol": "the client's PROTOCOL_VERSION"},
    "attach": {"id": "a job of this client's, queued, running or finished", "have": "as in `job`"},
    "status": {},
})
ENGINE_MESSAGES["frame"].update({
    "data": "remote: the PNG file's bytes, base64", "sha256": "remote: hex digest of those bytes", "size": "remote: byte count",
})
ENGINE_MESSAGES["done"].update({"computed_frames": "remote: frames this engine decoded for the job (the rest were resumed)"})
ENGINE_MESSAGES.update({
    "auth_required": {"protocol": "the engine's version", "engine_version": "", "tls": "bool: the connection is encrypted"},
    "queued": {"id": "", "position": "1 = next to run (0 = running)", "eta_s": "estimated seconds until it starts, null until known",
               "attached": "bool: an existing job of this client's was re-attached, not queued anew"},
    "file": {"id": "", "name": "video.mp4", "data": "base64", "sha256": "hex", "size": "byte count"},
    "queue": {"running": "the running job ({position, eta_s, frames_total}; id only when it is yours) or null",
              "jobs": "your jobs: [{id, state, position, eta_s, frames_done, frames_total}]", "queued": "jobs waiting, all clients",
              "clients": "connected clients", "device": "", "model": ""},
})
ERROR_CODES.update({
    "auth": "no valid token: the first message on a remote connection must be `auth` with the engine's token",
    "protocol": "client and engine speak different protocol versions",
    "forbidden_path": "a remote job named a path on the engine's machine; upload the bytes instead",
    "unsafe_path": "a file in the engine's work root is a symbolic link; it is not followed",
    "too_large": "a line, upload or job over the engine's limits",
    "too_many_connections": "the engine has as many connections as it takes",
    "queue_full": "the queue holds as many jobs as it takes (in all, or from this client)",
    "not_found": "no job of yours with that id (a client sees and cancels only its own jobs)",
    "forbidden": "not allowed over a remote connection (e.g. `shutdown`)",
})
ERROR_CODES["busy"] = ("a job is already running (stdio); or, remote, a job of yours with that id is still running with "
                       "other inputs")
JOB_FIELDS = frozenset(CLIENT_MESSAGES["job"]) | {"type"}  # with the remote fields: no "unknown field" warning for them
ERROR_CODES.update({  # the remote engine on a Ray cluster (`serve --ray`, docs/cluster.md)
    "worker_lost": "the job lost as many cluster workers as the engine allows (--ray-max-failures); frames and checkpoint are kept",
    "cluster": "the Ray cluster cannot be reached or has no worker that can run jobs",
})
