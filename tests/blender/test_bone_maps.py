"""Bone maps (aa-bone-map/1): the bundled maps are valid, detection picks the right one and names
missing bones, user maps load, bad maps are refused with the faulty entry named."""

import json

import pytest

from blender_addon.skeleton import bone_maps
from blender_addon.skeleton.bone_maps import (FORMAT, MIN_BODY_KEYPOINTS, detect_bone_map, find_bone_map, load_bone_map,
                                              parse_bone_map, resolve_bone_map)
from aa_contract.keypoints import BODY_NAMES
from blender_addon.skeleton.errors import BadBoneMap, UnmappedBones

RIGIFY_BODY = ["ORG-upper_arm.L", "ORG-upper_arm.R", "ORG-forearm.L", "ORG-forearm.R", "ORG-hand.L", "ORG-hand.R",
               "ORG-thigh.L", "ORG-thigh.R", "ORG-shin.L", "ORG-shin.R", "ORG-foot.L", "ORG-foot.R",
               "ORG-nose.001", "ORG-eye.L", "ORG-eye.R", "ORG-ear.L", "ORG-ear.R"]
MIXAMO_BODY = ["Hips", "Spine", "Neck", "Head", "HeadTop_End", "LeftArm", "RightArm", "LeftForeArm", "RightForeArm",
               "LeftHand", "RightHand", "LeftUpLeg", "RightUpLeg", "LeftLeg", "RightLeg", "LeftFoot", "RightFoot"]


def test_bundled_maps_load_and_map_all_18_body_keypoints():
    maps = bone_maps.available_maps()
    assert {"rigify", "mixamo"} <= set(maps)
    for name in ("rigify", "mixamo"):
        bm = load_bone_map(maps[name])
        assert bm.name == name and set(bm.body) == set(BODY_NAMES)
        assert all(bm.body[k] for k in BODY_NAMES), name
        assert len(bm.hands["right"]) == len(bm.hands["left"]) == 21


def test_rigify_names_are_detected_with_nothing_missing():
    resolved = detect_bone_map(RIGIFY_BODY + ["root", "DEF-spine"])
    assert resolved.bone_map.name == "rigify"
    assert resolved.body_count == 18 and resolved.missing_bones == [] and resolved.unmapped == []
    assert resolved.points[BODY_NAMES.index("neck")].midpoint == (2, 5)


@pytest.mark.parametrize("prefix", ["mixamorig:", "mixamorig1:", "mixamorig2:", "mixamorig_", "mixamorig1_", "mixamorig", ""])
def test_mixamo_is_detected_with_every_prefix(prefix):
    resolved = detect_bone_map([prefix + n for n in MIXAMO_BODY])
    assert resolved.bone_map.name == "mixamo" and resolved.prefix == prefix
    assert resolved.body_count == 18
    assert resolved.points[BODY_NAMES.index("left_elbow")].bone == prefix + "LeftForeArm"
    eye = resolved.points[BODY_NAMES.index("left_eye")]
    assert eye.bone == prefix + "Head" and eye.offset_lengths[0] > 0  # estimate from the head bone


def test_mixamo_eye_bones_win_over_the_head_estimate():
    resolved = detect_bone_map(["mixamorig:" + n for n in MIXAMO_BODY + ["LeftEye", "RightEye"]])
    assert resolved.points[BODY_NAMES.index("right_eye")].bone == "mixamorig:RightEye"


def test_mixamo_fingers_use_the_end_bone_or_the_last_joints_tail():
    names = ["mixamorig:" + n for n in MIXAMO_BODY + ["LeftHandIndex1", "LeftHandIndex2", "LeftHandIndex3"]]
    resolved = resolve_bone_map(find_bone_map("mixamo"), names)
    left = resolved.points[18 + 21: 18 + 42]
    assert left[8].bone == "mixamorig:LeftHandIndex3" and left[8].at == "tail"
    resolved = resolve_bone_map(find_bone_map("mixamo"), names + ["mixamorig:LeftHandIndex4"])
    assert resolved.points[18 + 21 + 8].bone == "mixamorig:LeftHandIndex4"


def test_a_rig_missing_some_bones_reports_them():
    resolved = detect_bone_map([n for n in RIGIFY_BODY if not n.startswith(("ORG-ear", "ORG-hand"))])
    assert resolved.bone_map.name == "rigify"
    assert {"ORG-ear.L", "ORG-ear.R", "ORG-hand.L", "ORG-hand.R"} <= set(resolved.missing_bones)
    assert set(resolved.unmapped) == {"left_ear", "right_ear", "left_wrist", "right_wrist"}


def test_an_unknown_rig_is_refused_naming_the_missing_bones():
    with pytest.raises(UnmappedBones) as info:
        detect_bone_map(["Bone", "Bone.001", "ORG-thigh.L"])
    assert "ORG-upper_arm.L" in info.value.message or "LeftArm" in info.value.message
    assert info.value.missing_bones and "bone map" in info.value.hint


def test_a_midpoint_needs_both_ends():
    resolved = resolve_bone_map(find_bone_map("rigify"), [n for n in RIGIFY_BODY if n != "ORG-upper_arm.R"])
    assert resolved.points[BODY_NAMES.index("neck")] is None
    assert "neck" in resolved.unmapped


def test_a_user_map_file_is_used_by_path(tmp_path):
    user = {"format": FORMAT, "name": "my_rig", "prefixes": ["CC_Base_", ""],
            "body": {k: None for k in BODY_NAMES}}
    for i, k in enumerate(BODY_NAMES):
        user["body"][k] = {"bone": [f"Joint{i}", f"Alt{i}"], "at": "tail", "offset": [0, 0.1, 0]}
    user["body"]["neck"] = {"midpoint": ["right_shoulder", "left_shoulder"]}
    path = tmp_path / "my_rig.json"
    path.write_text(json.dumps(user))
    bm = find_bone_map(str(path))
    resolved = resolve_bone_map(bm, [f"CC_Base_Alt{i}" for i in range(18)])
    assert resolved.prefix == "CC_Base_" and resolved.body_count == 18
    assert resolved.points[0].bone == "CC_Base_Alt0" and resolved.points[0].offset == (0.0, 0.1, 0.0)


def test_an_unknown_bundled_name_lists_the_known_ones():
    with pytest.raises(BadBoneMap) as info:
        find_bone_map("metahuman")
    assert "rigify" in info.value.hint


@pytest.mark.parametrize("change, words", [
    ({"format": "v2"}, "format"),
    ({"body": {"elbow": None}}, "elbow"),
    ({"body": {"nose": {"bone": "Head", "at": "middle"}}}, "body.nose"),
    ({"body": {"nose": {"bone": 3}}}, "body.nose"),
    ({"body": {"nose": {"bone": "Head", "offset": [1, 2]}}}, "offset"),
    ({"body": {"nose": {"bone": "Head", "scale": 2}}}, "scale"),
    ({"body": {"neck": {"midpoint": ["neck", "nose"]}}}, "itself"),
    ({"body": {"neck": {"midpoint": ["right_shoulder"]}}}, "midpoint"),
    ({"hands": {"right": [None] * 20}}, "hands.right"),
    ({"face": [None] * 67}, "face"),
    ({"prefixes": []}, "prefixes"),
    ({"body": {"right_ear": {"mean": [{"bone": "Head"}]}}}, "body.right_ear"),
    ({"body": {"right_ear": {"mean": [{"bone": "A"}, {"bone": "B", "at": "side"}]}}}, "body.right_ear.mean[1]"),
    ({"body": {"right_ear": {"mean": [{"bone": "A"}, {"bone": "B"}], "at": "tail"}}}, "beside"),
    ({"head": "Head"}, "head"),
    ({"head": {"bone": "Head", "at": "tail"}}, "head"),
])
def test_bad_maps_name_the_faulty_entry(change, words):
    data = {"format": FORMAT, "name": "x", "body": {"nose": {"bone": "Head"}}}
    data.update(change)
    with pytest.raises(BadBoneMap) as info:
        parse_bone_map(data, "x.json")
    assert words in info.value.message and info.value.hint


def test_unreadable_map_files_give_clear_errors(tmp_path):
    with pytest.raises(BadBoneMap, match="does not exist"):
        load_bone_map(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{\n oops")
    with pytest.raises(BadBoneMap, match="not valid JSON"):
        load_bone_map(tmp_path / "bad.json")


def test_detection_threshold_is_a_handful_of_keypoints():
    few = ["ORG-upper_arm.L", "ORG-upper_arm.R", "ORG-thigh.L", "ORG-thigh.R", "ORG-forearm.L"]
    assert detect_bone_map(few).body_count == MIN_BODY_KEYPOINTS  # the neck midpoint counts too
    with pytest.raises(UnmappedBones):
        detect_bone_map(few[:3])


EAR_RING = [f"ORG-ear.{side}{suffix}" for side in "LR" for suffix in ("", ".001", ".002", ".003", ".004")]


def test_rigify_ears_are_the_mean_of_the_ear_ring_or_the_lower_ear_bone():
    resolved = resolve_bone_map(find_bone_map("rigify"), RIGIFY_BODY + EAR_RING + ["ORG-spine.006"])
    ear = resolved.points[BODY_NAMES.index("left_ear")]
    assert [m.bone for m in ear.members] == [f"ORG-ear.L{s}" for s in ("", ".001", ".002", ".003", ".004")]
    assert all(m.at == "head" for m in ear.members) and resolved.head_bone == "ORG-spine.006"
    # A rig with only the lower ear bone: its tail, as before.
    resolved = resolve_bone_map(find_bone_map("rigify"), RIGIFY_BODY)
    ear = resolved.points[BODY_NAMES.index("left_ear")]
    assert (ear.bone, ear.at, ear.members) == ("ORG-ear.L", "tail", None)
    assert resolved.head_bone is None


def test_every_bundled_map_names_its_head_bone():
    names = {"rigify": "ORG-spine.006", "mixamo": "Head", "bundled": "head"}
    for name, head in names.items():
        assert [spec.bones for spec in find_bone_map(name).head] == [(head,)], name
