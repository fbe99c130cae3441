"""A `job` message from a remote client: its uploaded inputs instead of paths (docs/protocol.md).

A remote job names no path on the engine's machine. It carries
    "reference": {"data": "<base64 of the image file>"}
    "poses":     [{"data": "<base64 PNG>"}, ...]     (or {"data": ..., "name": "poses.mp4"} for a video)
    or "keypoints": {...the aa-keypoints/1 track object...}  (or {"data": "<base64 of keypoints.json>"})
and no "output": the engine chooses the job's folder in its work root. A string where an upload
belongs is refused with `forbidden_path`, whatever it names.

`parse_remote_job` checks all that and returns the uploads (relative name -> bytes, names the
engine chose) and the local job message `jobs.JobSpec.from_message` takes, with paths in the job's
folder.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from aa_engine.errors import BadRequest, EngineError
from aa_engine.jobs import IMAGE_SUFFIXES, VIDEO_SUFFIXES

MAX_ID_LENGTH = 128
PRIORITY_RANGE = (-100, 100)
_UPLOAD_HINT = 'A remote engine reads no files on its machine: send the bytes, e.g. "reference": {"data": "<base64 of the PNG>"} (docs/protocol.md).'


class ForbiddenPath(EngineError):
    code = "forbidden_path"


@dataclass
class RemoteJob:
    id: str
    message: dict  # the local job message (paths relative to the job folder, see `localise`)
    uploads: dict[str, bytes] = field(default_factory=dict)
    digest: str = ""
    priority: int = 0
    have: dict[int, str] = field(default_factory=dict)
    frames_total: int | None = None

    def localise(self, folder: Path) -> dict:
        """The job message with the inputs' and output's paths in `folder`."""
        message = dict(self.message, output=str(folder))
        message["reference"] = str(folder / message["reference"])
        if isinstance(message.get("poses"), list):
            message["poses"] = [str(folder / p) for p in message["poses"]]
        elif isinstance(message.get("poses"), str):
            message["poses"] = str(folder / message["poses"])
        return message


def _decode(value, job_id: str, name: str, limit: int) -> bytes:
    if isinstance(value, str):
        raise ForbiddenPath(f"Job {job_id!r}: '{name}' names a path ({value[:80]!r}); a remote job cannot name files on the engine's machine.",
                            _UPLOAD_HINT, field=name.split("[")[0])
    if not isinstance(value, dict) or not isinstance(value.get("data"), str):
        raise BadRequest(f"Job {job_id!r}: '{name}' must be an upload {{\"data\": \"<base64>\"}}.", _UPLOAD_HINT, field=name.split("[")[0])
    try:
        data = base64.b64decode(value["data"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(f"Job {job_id!r}: '{name}' is not valid base64 ({exc}).", _UPLOAD_HINT, field=name.split("[")[0]) from None
    if not data:
        raise BadRequest(f"Job {job_id!r}: '{name}' is an empty upload.", "Send the file's bytes.", field=name.split("[")[0])
    if len(data) > limit:
        raise EngineError(f"Job {job_id!r}: '{name}' is {len(data)} bytes; this engine takes at most {limit}.",
                          "Lower the resolution or the frame count, or send a keypoint track instead of maps.", code="too_large")
    digest = value.get("sha256")
    if digest is not None and digest != hashlib.sha256(data).hexdigest():
        raise BadRequest(f"Job {job_id!r}: '{name}' does not match its sha256.", "The upload was damaged; send it again.", field=name.split("[")[0])
    return data


def _suffix(value: dict, allowed: set[str], default: str) -> str:
    suffix = Path(str(value.get("name", ""))).suffix.lower()
    return suffix if suffix in allowed else default


def parse_have(value, job_id: str) -> dict[int, str]:
    """`have`: {index: sha256 hex} (indexes 1-based, as strings in JSON) or a list of [index, sha256]."""
    if value is None:
        return {}
    items = value.items() if isinstance(value, dict) else value if isinstance(value, list) else None
    out = {}
    try:
        for index, digest in items:
            index = int(index)
            if index < 1 or not isinstance(digest, str) or len(digest) != 64:
                raise ValueError
            out[index] = digest.lower()
    except (TypeError, ValueError):
        raise BadRequest(f"Job {job_id!r}: 'have' must map frame indexes (1-based) to sha256 hex digests.",
                         'Example: "have": {"1": "9f86d0...", "2": "..."}', field="have") from None
    return out


def parse_remote_job(message: dict, max_upload_bytes: int) -> RemoteJob:
    """Check a remote `job` message; raises ForbiddenPath for any path, BadRequest for the rest."""
    job_id = message.get("id")
    if not isinstance(job_id, str) or not job_id or len(job_id) > MAX_ID_LENGTH or "\x00" in job_id:
        raise BadRequest(f"A job needs an 'id': a string of 1 to {MAX_ID_LENGTH} characters.", 'Example: {"type": "job", "id": "shot_010", ...}', field="id")
    if "output" in message:
        raise ForbiddenPath(f"Job {job_id!r}: 'output' names a folder ({str(message['output'])[:80]!r}); a remote engine writes only into its own work root.",
                            "Leave 'output' out: the frames come back in `frame` events; the add-on writes them into your local folder.", field="output")
    uploads: dict[str, bytes] = {}
    # Settings, id, video, and unknown fields (parse_job warns of those in `accepted`).
    local = {k: v for k, v in message.items() if k not in ("type", "reference", "poses", "keypoints", "have", "priority")}
    reference = message.get("reference")
    if reference is None:
        raise BadRequest(f"Job {job_id!r} needs a 'reference' upload.", _UPLOAD_HINT, field="reference")
    name = "inputs/reference" + _suffix(reference if isinstance(reference, dict) else {}, IMAGE_SUFFIXES, ".png")
    uploads[name] = _decode(reference, job_id, "reference", max_upload_bytes)
    local["reference"] = name
    frames_total = None
    if ("poses" in message) == ("keypoints" in message):
        raise BadRequest(f"Job {job_id!r} needs exactly one of 'poses' (uploaded skeleton maps) and 'keypoints' (a keypoint track).",
                         _UPLOAD_HINT, field="poses")
    if "poses" in message:
        poses = message["poses"]
        if isinstance(poses, list):
            if not poses:
                raise BadRequest(f"Job {job_id!r}: 'poses' is empty.", "Send one skeleton map per frame.", field="poses")
            local["poses"] = []
            for i, pose in enumerate(poses, start=1):
                rel = f"inputs/poses/pose_{i:05d}" + _suffix(pose if isinstance(pose, dict) else {}, IMAGE_SUFFIXES, ".png")
                uploads[rel] = _decode(pose, job_id, f"poses[{i - 1}]", max_upload_bytes)
                local["poses"].append(rel)
            frames_total = len(poses)
        else:
            rel = "inputs/poses" + _suffix(poses if isinstance(poses, dict) else {}, VIDEO_SUFFIXES, ".mp4")
            uploads[rel] = _decode(poses, job_id, "poses", max_upload_bytes)
            local["poses"] = rel
    else:
        track = message["keypoints"]
        if isinstance(track, dict) and set(track) <= {"data", "name", "sha256"} and "data" in track:
            raw = _decode(track, job_id, "keypoints", max_upload_bytes)
            try:
                track = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as exc:
                raise EngineError(f"Job {job_id!r}: the uploaded keypoint track is not JSON ({exc}).", "Send the keypoints.json the add-on wrote.", code="track") from None
        elif not isinstance(track, dict):
            _decode(track, job_id, "keypoints", max_upload_bytes)  # a path: refused with the path message
        local["keypoints"] = track
        frames = track.get("frames") if isinstance(track, dict) else None
        frames_total = len(frames) if isinstance(frames, list) else None
    priority = message.get("priority", 0)
    if not isinstance(priority, int) or isinstance(priority, bool) or not PRIORITY_RANGE[0] <= priority <= PRIORITY_RANGE[1]:
        raise BadRequest(f"Job {job_id!r}: 'priority' must be a whole number from {PRIORITY_RANGE[0]} to {PRIORITY_RANGE[1]} (got {priority!r}).",
                         "Higher runs first; 0 is the default.", field="priority")
    have = parse_have(message.get("have"), job_id)
    # The job's identity for re-attaching: everything but `have` and `priority`.
    canonical = {k: v for k, v in message.items() if k not in ("have", "priority", "type")}
    digest = hashlib.sha256(json.dumps(canonical, sort_keys=True, default=str).encode()).hexdigest()
    return RemoteJob(job_id, {"type": "job", **local}, uploads, digest, priority, have, frames_total)
