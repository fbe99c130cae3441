"""Bone maps: which bone point of a rig family is which OpenPose keypoint.

A bone map is a JSON file in the `aa-bone-map/1` format (docs/keypoints.md):

    {"format": "aa-bone-map/1", "name": "rigify", "label": "...", "prefixes": [""],
     "body": {"right_elbow": {"bone": "ORG-forearm.R", "at": "head"},
              "neck": {"midpoint": ["right_shoulder", "left_shoulder"]}, ...},
     "hands": {"right": [21 entries], "left": [21 entries]},   # optional, DWPose hand order
     "face": [68 entries],                                       # optional
     "head": {"bone": NAME or [NAMES]}}                          # optional: hides face points turned away

An entry is one of
    null                                   never drawn
    {"bone": NAME or [NAMES], "at": "head"|"tail", "offset": [x, y, z], "offset_lengths": [x, y, z]}
    {"midpoint": [KEYPOINT, KEYPOINT]}     3D midpoint of two other body keypoints
    {"mean": [POINT, POINT, ...]}          mean of several bone points (each {"bone", "at", ...});
                                           found only when all their bones exist
    [ENTRY, ENTRY, ...]                    alternatives: the first whose bones exist wins
"bone" candidates are tried in order; every name is tried behind each of the map's `prefixes`,
and the prefix matching the most bones of the armature is used. "offset" is added in the pose
bone's local frame (Blender units of the armature), "offset_lengths" likewise in multiples of the
bone's rest length (scale-free, for estimates such as eyes on a head bone).

Maps are found in a `bone_maps` folder next to this package (the add-on zip ships them there), then
in the repository's `rigs/bone_maps`. This module is bpy-free: detection works on a list of names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..contract import keypoints
from .errors import BadBoneMap, UnmappedBones

FORMAT = "aa-bone-map/1"
BODY_NAMES, HAND_POINTS, FACE_POINTS = keypoints.BODY_NAMES, keypoints.HAND_POINTS, keypoints.FACE_POINTS
HAND_SIDES = ("right", "left")
# Fewer mapped body keypoints than this and the map does not describe the rig (a stick figure
# needs at least shoulders/hips and a limb or two).
MIN_BODY_KEYPOINTS = 6

PACKAGE_MAPS = Path(__file__).resolve().parent / "bone_maps"
REPO_MAPS = Path(__file__).resolve().parents[2] / "rigs" / "bone_maps"


@dataclass(frozen=True)
class BonePoint:
    """A point on a bone: its head or tail, plus an offset in the pose bone's local frame."""

    bones: tuple[str, ...]
    at: str = "head"
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    offset_lengths: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass(frozen=True)
class Midpoint:
    """The 3D midpoint of two other body keypoints."""

    of: tuple[str, str]


@dataclass(frozen=True)
class Mean:
    """The mean of several bone points (e.g. the middle of the ring of Rigify's ear bones)."""

    members: tuple[BonePoint, ...]


@dataclass
class BoneMap:
    name: str
    label: str
    prefixes: tuple[str, ...]
    body: dict[str, tuple]          # keypoint name -> alternatives (BonePoint | Midpoint), () = never drawn
    hands: dict[str, list[tuple]] | None = None   # "right"/"left" -> 21 alternatives tuples
    face: list[tuple] | None = None               # 68 alternatives tuples
    path: str = ""
    head: tuple = ()                              # alternatives (BonePoint) for the head bone, () = none

    def bone_names(self) -> set[str]:
        """Every bone name the map mentions (without prefix)."""
        names = set()
        for alternatives in (*self._all_entries(), self.head):
            for spec in alternatives:
                for point in spec.members if isinstance(spec, Mean) else (spec,):
                    if isinstance(point, BonePoint):
                        names.update(point.bones)
        return names

    def _all_entries(self):
        yield from self.body.values()
        for side in (self.hands or {}).values():
            yield from side
        yield from (self.face or [])


@dataclass(frozen=True)
class ResolvedPoint:
    """A keypoint bound to an armature: the bone's real name, the indices of a midpoint's pair, or
    the bone points whose mean it is."""

    bone: str | None = None
    at: str = "head"
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    offset_lengths: tuple[float, float, float] = (0.0, 0.0, 0.0)
    midpoint: tuple[int, int] | None = None
    members: tuple["ResolvedPoint", ...] | None = None


@dataclass
class ResolvedMap:
    """A bone map applied to one armature's bone names.

    points: 18 body + 2x21 hand (right, left) + 68 face entries, each a ResolvedPoint or None;
    the hand/face entries are None when the map has none.
    """

    bone_map: BoneMap
    prefix: str
    points: list[ResolvedPoint | None]
    missing_bones: list[str] = field(default_factory=list)   # body bones the map wanted, not found (body order)
    unmapped: list[str] = field(default_factory=list)        # body keypoints without a point
    head_bone: str | None = None   # the bone whose facing hides face points turned away from the camera

    @property
    def body_count(self) -> int:
        return sum(p is not None for p in self.points[: len(BODY_NAMES)])

    def has_hands(self) -> bool:
        return any(p is not None for p in self.points[18: 18 + 2 * HAND_POINTS])

    def has_face(self) -> bool:
        return any(p is not None for p in self.points[18 + 2 * HAND_POINTS:])


# -- reading map files ------------------------------------------------------------------------------
def _vec3(value, where: str) -> tuple[float, float, float]:
    if not (isinstance(value, (list, tuple)) and len(value) == 3 and all(isinstance(v, (int, float)) for v in value)):
        raise ValueError(f"{where}: an offset must be three numbers [x, y, z], not {value!r}")
    return tuple(float(v) for v in value)


def _parse_bone_point(value: dict, where: str) -> BonePoint:
    bones = value.get("bone")
    if isinstance(bones, str):
        bones = [bones]
    if not (isinstance(bones, list) and bones and all(isinstance(b, str) and b for b in bones)):
        raise ValueError(f"{where}: \"bone\" must be a bone name or a list of names, not {bones!r}")
    at = value.get("at", "head")
    if at not in ("head", "tail"):
        raise ValueError(f"{where}: \"at\" must be \"head\" or \"tail\", not {at!r}")
    unknown = set(value) - {"bone", "at", "offset", "offset_lengths", "note"}
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)} (allowed: bone, at, offset, offset_lengths, note)")
    return BonePoint(
        bones=tuple(bones), at=at,
        offset=_vec3(value.get("offset", [0, 0, 0]), where),
        offset_lengths=_vec3(value.get("offset_lengths", [0, 0, 0]), where),
    )


def _parse_mean(value: dict, where: str) -> Mean:
    members = value["mean"]
    if not (isinstance(members, list) and len(members) >= 2 and all(isinstance(m, dict) for m in members)):
        raise ValueError(f"{where}: \"mean\" needs a list of two or more bone points ({{\"bone\": ..., \"at\": ...}}), not {members!r}")
    if set(value) - {"mean", "note"}:
        raise ValueError(f"{where}: unknown key(s) {sorted(set(value) - {'mean', 'note'})} beside \"mean\" (allowed: note)")
    return Mean(members=tuple(_parse_bone_point(m, f"{where}.mean[{i}]") for i, m in enumerate(members)))


def _parse_entry(value, where: str, allow_midpoint: bool) -> tuple:
    if value is None:
        return ()
    if isinstance(value, list):
        specs = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                raise ValueError(f"{where}[{i}]: alternatives must be objects, not {item!r}")
            specs.extend(_parse_entry(item, f"{where}[{i}]", allow_midpoint))
        return tuple(specs)
    if not isinstance(value, dict):
        raise ValueError(f"{where}: expected null, an object or a list of objects, not {value!r}")
    if "midpoint" in value:
        pair = value["midpoint"]
        if not allow_midpoint:
            raise ValueError(f"{where}: midpoints are only allowed for body keypoints")
        if not (isinstance(pair, list) and len(pair) == 2 and all(p in BODY_NAMES for p in pair)):
            raise ValueError(f"{where}: midpoint needs two body keypoint names (e.g. [\"right_shoulder\", \"left_shoulder\"]), not {pair!r}")
        return (Midpoint(of=(pair[0], pair[1])),)
    if "mean" in value:
        return (_parse_mean(value, where),)
    return (_parse_bone_point(value, where),)


def parse_bone_map(data: dict, path: str = "") -> BoneMap:
    """A BoneMap from the decoded JSON of a map file; raises BadBoneMap naming the faulty entry."""
    where = path or "bone map"
    hint = "See docs/keypoints.md ('Bone maps') for the format, or start from a copy of rigs/bone_maps/rigify.json."
    try:
        if not isinstance(data, dict):
            raise ValueError("the file must hold a JSON object")
        if data.get("format") != FORMAT:
            raise ValueError(f"\"format\" must be \"{FORMAT}\", not {data.get('format')!r}")
        name = data.get("name") or Path(path).stem or "custom"
        prefixes = data.get("prefixes", [""])
        if not (isinstance(prefixes, list) and prefixes and all(isinstance(p, str) for p in prefixes)):
            raise ValueError("\"prefixes\" must be a non-empty list of strings (use [\"\"] for none)")
        body_data = data.get("body")
        if not isinstance(body_data, dict):
            raise ValueError("\"body\" must be an object from keypoint name to entry")
        unknown = sorted(set(body_data) - set(BODY_NAMES))
        if unknown:
            raise ValueError(f"unknown body keypoint(s) {unknown}; the names are {', '.join(BODY_NAMES)}")
        body = {k: _parse_entry(body_data.get(k), f"body.{k}", allow_midpoint=True) for k in BODY_NAMES}
        for k, specs in body.items():
            for spec in specs:
                if isinstance(spec, Midpoint) and k in spec.of:
                    raise ValueError(f"body.{k}: a midpoint cannot refer to itself")
        hands = None
        if data.get("hands") is not None:
            hands_data = data["hands"]
            if not isinstance(hands_data, dict) or set(hands_data) - set(HAND_SIDES):
                raise ValueError("\"hands\" must be an object with \"right\" and/or \"left\" lists")
            hands = {}
            for side in HAND_SIDES:
                entries = hands_data.get(side)
                if entries is None:
                    hands[side] = [()] * HAND_POINTS
                    continue
                if not isinstance(entries, list) or len(entries) != HAND_POINTS:
                    raise ValueError(f"hands.{side} must list {HAND_POINTS} entries (wrist, thumb x4, index x4, middle x4, ring x4, pinky x4)")
                hands[side] = [_parse_entry(e, f"hands.{side}[{i}]", allow_midpoint=False) for i, e in enumerate(entries)]
        face = None
        if data.get("face") is not None:
            entries = data["face"]
            if not isinstance(entries, list) or len(entries) != FACE_POINTS:
                raise ValueError(f"\"face\" must list {FACE_POINTS} entries (the 68-point face layout)")
            face = [_parse_entry(e, f"face[{i}]", allow_midpoint=False) for i, e in enumerate(entries)]
        head = ()
        if data.get("head") is not None:
            if not isinstance(data["head"], dict) or set(data["head"]) - {"bone", "note"}:
                raise ValueError("\"head\" must be {\"bone\": NAME or [NAMES]}: the head bone whose facing hides face points")
            head = (_parse_bone_point(data["head"], "head"),)
    except ValueError as exc:
        raise BadBoneMap(f"The bone map {where} is not valid: {exc}.", hint) from None
    return BoneMap(name=str(name), label=str(data.get("label", name)), prefixes=tuple(prefixes), body=body,
                   hands=hands, face=face, path=str(path), head=head)


def load_bone_map(path: str | Path) -> BoneMap:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadBoneMap(f"The bone map file {path} does not exist.",
                         "Check the path in 'Bone Map', or leave it empty to detect the rig.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadBoneMap(f"The bone map file {path} cannot be read ({exc}).", "Check the file's permissions.") from None
    except json.JSONDecodeError as exc:
        raise BadBoneMap(f"The bone map file {path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}).",
                         "Fix the JSON syntax (a JSON linter shows where).") from None
    return parse_bone_map(data, str(path))


def map_folders() -> list[Path]:
    return [p for p in (PACKAGE_MAPS, REPO_MAPS) if p.is_dir()]


def available_maps() -> dict[str, Path]:
    """Bundled map name -> file; a map next to the package shadows the repository's copy."""
    found: dict[str, Path] = {}
    for folder in map_folders():
        for path in sorted(folder.glob("*.json")):
            found.setdefault(path.stem, path)
    return found


def find_bone_map(name_or_path: str) -> BoneMap:
    """A bundled map by name ("rigify", "mixamo", "bundled") or a map file by path."""
    maps = available_maps()
    if name_or_path in maps:
        return load_bone_map(maps[name_or_path])
    looks_like_path = name_or_path.endswith(".json") or "/" in name_or_path or "\\" in name_or_path
    if looks_like_path:
        return load_bone_map(name_or_path)
    raise BadBoneMap(f"There is no bundled bone map called '{name_or_path}'.",
                     f"Use one of {', '.join(sorted(maps)) or '(none found)'}, a path to a .json map, or leave it empty to detect the rig.")


# -- binding a map to an armature's bone names ------------------------------------------------------
def _best_prefix(bone_map: BoneMap, names: set[str]) -> str:
    wanted = bone_map.bone_names()
    scores = [(sum((p + n) in names for n in wanted), -i, p) for i, p in enumerate(bone_map.prefixes)]
    return max(scores)[2]


def _bone_point(spec: BonePoint, prefix: str, names: set[str]) -> ResolvedPoint | None:
    for bone in spec.bones:
        if prefix + bone in names:
            return ResolvedPoint(bone=prefix + bone, at=spec.at, offset=spec.offset, offset_lengths=spec.offset_lengths)
    return None


def _first_existing(specs: tuple, prefix: str, names: set[str]) -> ResolvedPoint | Midpoint | None:
    for spec in specs:
        if isinstance(spec, Midpoint):
            return spec
        if isinstance(spec, Mean):
            members = tuple(_bone_point(m, prefix, names) for m in spec.members)
            if all(members):
                return ResolvedPoint(members=members)
            continue
        point = _bone_point(spec, prefix, names)
        if point is not None:
            return point
    return None


def resolve_bone_map(bone_map: BoneMap, bone_names) -> ResolvedMap:
    """Bind a map to an armature's bone names: the prefix, each keypoint's bone, the missing bones."""
    names = set(bone_names)
    prefix = _best_prefix(bone_map, names)
    points: list = []
    missing: list[str] = []
    for k in BODY_NAMES:
        specs = bone_map.body[k]
        point = _first_existing(specs, prefix, names)
        points.append(point)
        if point is None and specs:
            for spec in specs:
                if isinstance(spec, BonePoint):
                    missing.append(prefix + spec.bones[0])
                elif isinstance(spec, Mean):
                    missing.extend(prefix + m.bones[0] for m in spec.members if _bone_point(m, prefix, names) is None)
    # Midpoints become index pairs; one whose ends are unmapped is unmapped (done in two passes so
    # a midpoint may refer to a keypoint listed after it).
    for i, point in enumerate(points):
        if isinstance(point, Midpoint):
            a, b = (BODY_NAMES.index(k) for k in point.of)
            ok = isinstance(points[a], ResolvedPoint) and isinstance(points[b], ResolvedPoint)
            points[i] = ResolvedPoint(midpoint=(a, b)) if ok else None
    for side in HAND_SIDES:
        entries = (bone_map.hands or {}).get(side) or [()] * HAND_POINTS
        points.extend(_first_existing(specs, prefix, names) for specs in entries)
    points.extend(_first_existing(specs, prefix, names) for specs in (bone_map.face or [()] * FACE_POINTS))
    unmapped = [k for k, p in zip(BODY_NAMES, points) if p is None]
    head = _first_existing(bone_map.head, prefix, names)
    return ResolvedMap(bone_map=bone_map, prefix=prefix, points=points, missing_bones=list(dict.fromkeys(missing)),
                       unmapped=unmapped, head_bone=head.bone if head is not None else None)


def detect_bone_map(bone_names, maps: dict[str, Path] | None = None) -> ResolvedMap:
    """The bundled map that maps the most body keypoints of an armature with these bone names.

    Raises UnmappedBones (naming the best candidate's missing bones) when none maps at least
    MIN_BODY_KEYPOINTS body keypoints.
    """
    names = set(bone_names)
    maps = available_maps() if maps is None else maps
    candidates = [resolve_bone_map(load_bone_map(path), names) for _, path in sorted(maps.items())]
    if not candidates:
        raise BadBoneMap("No bone maps were found (the add-on's skeleton/bone_maps folder is missing).",
                         "Reinstall the add-on, or pass a bone map file in 'Bone Map'.")
    # Most body keypoints first; among equals the one missing fewer bones, then the bundled rig's map.
    best = max(candidates, key=lambda r: (r.body_count, -len(r.missing_bones), r.bone_map.name == "bundled"))
    if best.body_count < MIN_BODY_KEYPOINTS:
        raise UnmappedBones(
            f"No bone map fits this armature: the closest ({best.bone_map.label}) finds only {best.body_count} of "
            f"{len(BODY_NAMES)} body keypoints; missing bones: {', '.join(best.missing_bones)}.",
            "Use a Rigify, Mixamo or the bundled rig, or write a bone map for your rig (docs/keypoints.md) and pick its .json in 'Bone Map'.",
            missing_bones=best.missing_bones,
        )
    return best


def check_resolved(resolved: ResolvedMap) -> ResolvedMap:
    """Refuse a chosen map that maps too few body keypoints of the armature, naming the bones."""
    if resolved.body_count < MIN_BODY_KEYPOINTS:
        bm = resolved.bone_map
        raise UnmappedBones(
            f"The bone map '{bm.name}' does not fit this armature: only {resolved.body_count} of {len(BODY_NAMES)} "
            f"body keypoints found; missing bones: {', '.join(resolved.missing_bones)}.",
            "Leave 'Bone Map' empty to detect the rig, or edit the map's bone names to match your armature.",
            missing_bones=resolved.missing_bones,
        )
    return resolved
