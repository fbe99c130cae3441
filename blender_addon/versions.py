"""Versions (takes) of a shot: every render with new inputs writes a new folder, never over one.

    <output>/<shot>/v001/poses/      skeleton maps + keypoints.json of this version
    <output>/<shot>/v001/frames/     the engine's frames, video.mp4 and job.json
    <output>/<shot>/v001/reference.* the reference image this version was made from (a copy)
    <output>/<shot>/v001/version.json what the add-on knows: settings, seed, engine, weights, state

A render first writes its skeleton maps into a staging folder, then computes the version's
*inputs key* (the settings that change frames, the reference's bytes, the maps' pixels, the frame
range and the weights). When a version of the shot already has that key, the render goes back
into it and the engine resumes there (frames already written are kept, byte for byte); otherwise
the staging folder becomes the next version folder (one above the highest number present). A
version folder is only ever removed by "Delete Version".

No bpy at module level: the collection and strip helpers at the end import it when called.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import time
from pathlib import Path

from .contract import settings as contract_settings
from .errors import AddonError

RECORD = "version.json"
RECORD_SCHEMA = "aa-version/1"
_NAME = re.compile(r"^v(\d{3,})$")
STAGING_PREFIX = ".staging-"


def version_name(number: int) -> str:
    return f"v{number:03d}"


def version_number(name: str) -> int | None:
    match = _NAME.match(name)
    return int(match.group(1)) if match else None


def version_dirs(shot_root: str | Path) -> list[Path]:
    """The shot's version folders, oldest first (v001, v002, ..., v010)."""
    root = Path(shot_root)
    if not root.is_dir():
        return []
    found = [(version_number(p.name), p) for p in root.iterdir() if p.is_dir()]
    return [p for n, p in sorted((n, p) for n, p in found if n is not None)]


def new_version_dir(shot_root: str | Path) -> Path:
    """Create and return the next version folder: one above the highest present. mkdir without
    exist_ok, so two renders can never share (or overwrite) one."""
    root = Path(shot_root)
    root.mkdir(parents=True, exist_ok=True)
    existing = version_dirs(root)
    number = (version_number(existing[-1].name) if existing else 0) + 1
    while True:
        folder = root / version_name(number)
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            number += 1


def staging_dir(shot_root: str | Path) -> Path:
    """A fresh folder for a render's skeleton maps before its version is known."""
    root = Path(shot_root)
    root.mkdir(parents=True, exist_ok=True)
    for old in root.glob(STAGING_PREFIX + "*"):  # left by a render that was interrupted while exporting
        if old.is_dir() and time.time() - old.stat().st_mtime > 3600:
            shutil.rmtree(old, ignore_errors=True)
    folder = root / f"{STAGING_PREFIX}{os.getpid()}-{time.time_ns()}"
    folder.mkdir()
    return folder


# -- the record ---------------------------------------------------------------------------------
def read_record(folder: str | Path) -> dict:
    try:
        data = json.loads((Path(folder) / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_record(folder: str | Path, data: dict) -> Path:
    """Write version.json atomically (a reader never sees half of it)."""
    path = Path(folder) / RECORD
    tmp = path.with_name(f".{RECORD}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def update_record(folder: str | Path, **changes) -> dict:
    data = read_record(folder)
    data.update(changes)
    write_record(folder, data)
    return data


def summary(settings: dict) -> str:
    """One line for the version list, e.g. `seed 7, 2 steps, guidance 3.5, 64x96`."""
    size = f"{settings['width']}x{settings['height']}" if settings.get("width") and settings.get("height") else "native size"
    return f"seed {settings.get('seed')}, {settings.get('steps')} steps, guidance {settings.get('guidance')}, {size}"


# -- identity -----------------------------------------------------------------------------------
def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def poses_digest(poses_dir: str | Path) -> str:
    """The skeleton maps' bytes and the keypoint track's frames (not its `source`, which names the
    .blend's path: moving the project must not make a new version)."""
    folder = Path(poses_dir)
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*.png")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    for path in sorted(folder.glob("*.json")):
        try:
            track = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(track, dict):
            track = {k: v for k, v in track.items() if k != "source"}
        digest.update(path.name.encode())
        digest.update(json.dumps(track, sort_keys=True).encode())
    return digest.hexdigest()


def inputs_key(settings: dict, reference: str | Path, poses_dir: str | Path, frame_start: int, frame_end: int, weights: str) -> str:
    """What makes two renders give the same frames (the add-on's view of the engine's fingerprint)."""
    changing = contract_settings.fingerprint_values({k: v for k, v in settings.items() if v is not None})
    digest = hashlib.sha256()
    digest.update(json.dumps([changing, frame_start, frame_end, weights], sort_keys=True).encode())
    digest.update(_file_digest(Path(reference)).encode())
    digest.update(poses_digest(poses_dir).encode())
    return digest.hexdigest()[:24]


def find_same(shot_root: str | Path, key: str) -> Path | None:
    """The newest version whose inputs are `key` (a render of it again resumes there)."""
    for folder in reversed(version_dirs(shot_root)):
        if read_record(folder).get("inputs_key") == key:
            return folder
    return None


# -- placing a render ---------------------------------------------------------------------------
def _move_paths(plan, old: Path, new: Path) -> None:
    """Rewrite every path of the plan under `old` (the staging folder) to lie under `new`."""
    old_text = str(old)

    def moved(value):
        if isinstance(value, Path) and (value == old or old in value.parents):
            return new / value.relative_to(old)
        if isinstance(value, str) and (value == old_text or value.startswith(old_text + os.sep)):
            return str(new) + value[len(old_text):]
        if isinstance(value, list):
            return [moved(v) for v in value]
        return value

    for field in dataclasses.fields(plan):
        if field.name != "shot_dir":
            setattr(plan, field.name, moved(getattr(plan, field.name)))
    plan.shot_dir = new


def place(plan, shot_root: str | Path, staging: Path, weights: str, settings_from: dict | None = None) -> tuple[Path, bool]:
    """After the maps are in `staging` (= plan.shot_dir): choose the render's version folder and
    move the plan there. Returns (folder, reused): an existing version with the same inputs is
    reused (the engine resumes in it) and the staging folder is dropped; otherwise the staging
    folder becomes the next version."""
    shot_root = Path(shot_root)
    key = inputs_key(plan.settings, plan.reference, plan.poses_dir, plan.frame_start, plan.frame_end, weights)
    same = find_same(shot_root, key)
    if same is not None:
        _move_paths(plan, staging, same)
        shutil.rmtree(staging, ignore_errors=True)
        plan.reference = _reference_in(same) or plan.reference
        return same, True
    folder = new_version_dir(shot_root)
    folder.rmdir()  # reserved its number; the staging folder takes its place
    try:
        os.replace(staging, folder)
    except OSError as exc:
        raise AddonError(f"Could not create the version folder {folder} ({exc.strerror or exc}).",
                         "Check the output folder's permissions and free space.") from exc
    _move_paths(plan, staging, folder)
    reference = Path(plan.reference)
    if reference.parent != folder:
        copy = folder / f"reference{reference.suffix.lower() or '.png'}"
        shutil.copyfile(reference, copy)
        plan.reference = copy
    write_record(folder, {
        "schema": RECORD_SCHEMA, "shot": plan.shot_name, "version": folder.name, "scene": plan.scene_name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "state": "new", "inputs_key": key,
        "frame_start": plan.frame_start, "frame_end": plan.frame_end, "armature": plan.armature_name,
        "reference": plan.reference.name, "reference_source": str(reference),
        "settings": dict(plan.settings), "seed": plan.settings.get("seed"), "weights_setting": weights,
        "rendered_again_from": (settings_from or {}).get("version"),
    })
    return folder, False


def _reference_in(folder: Path) -> Path | None:
    name = read_record(folder).get("reference")
    path = folder / name if name else None
    return path if path is not None and path.is_file() else None


def recorded_inputs(folder: str | Path) -> dict:
    """"Render Again with These Settings": a version's settings and reference. Raises AddonError
    when the version has no readable record."""
    folder = Path(folder)
    record = read_record(folder)
    if not record.get("settings"):
        raise AddonError(f"The version {folder} has no readable {RECORD}.", "Pick another version, or render the shot anew.")
    return {"version": folder.name, "settings": dict(record["settings"]), "reference": _reference_in(folder)}


def delete_version(folder: str | Path) -> None:
    """Remove one version folder (frames, maps, record). Only folders named vNNN holding a
    version.json are removed, so a wrong path can never take anything else with it."""
    folder = Path(folder)
    if version_number(folder.name) is None or not (folder / RECORD).is_file():
        raise AddonError(f"{folder} is not a version folder of this add-on.", "Nothing was deleted.")
    shutil.rmtree(folder)


# -- the shot's version list and strip (bpy) -----------------------------------------------------
def refresh(item, shot_root: str | Path, select: str | None = None) -> None:
    """Make the shot's version list match its folders on disk; pick `select` when given (the
    picker then switches the strip to it), else keep the picked one where it still exists."""
    current = item.versions[item.version_index].name if 0 <= item.version_index < len(item.versions) else None
    want = select or current
    folders = version_dirs(shot_root)
    _refreshing.add(item.as_pointer())
    try:
        item.versions.clear()
        for folder in folders:
            record = read_record(folder)
            entry = item.versions.add()
            entry.name = folder.name
            entry.state = str(record.get("state", ""))
            seed = record.get("seed")
            entry.seed = seed if isinstance(seed, int) and -2**31 <= seed < 2**31 else 0
            entry.summary = summary(record.get("settings") or {})
    finally:
        _refreshing.discard(item.as_pointer())
    names = [f.name for f in folders]
    index = names.index(want) if want in names else max(0, len(names) - 1)
    if select is not None or index != item.version_index:
        item.version_index = index  # runs on_version_picked
    elif select is None and want not in names:
        item.version_index = index


_refreshing: set[int] = set()


def on_version_picked(item, context) -> None:
    """The version picker (`version_index`): the shot's strip shows that version's frames, at the
    strip's place and on its channel. A version without frames yet leaves the strip as it is."""
    if item.as_pointer() in _refreshing or not (0 <= item.version_index < len(item.versions)):
        return
    from . import shots, vse
    from .render_task import frames_on_disk

    scene = item.id_data
    folder = shots.shot_root(scene, item) / item.versions[item.version_index].name
    frames = frames_on_disk(folder / "frames")
    if frames:
        vse.show_frames(shots.strip_scene(scene, context), shots.strip_name(item), frames, item.frame_start)
