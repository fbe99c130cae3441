"""The settings have one source (aa_contract/settings.py): the engine's command line, the job
message and GenerationConfig derive from it, with the declared defaults, and a bad value gets the
same message on every path. (The add-on's side is tests/blender/test_addon_settings.py.)"""

import subprocess
import sys
from pathlib import Path

import pytest

from aa_contract import protocol, settings
from aa_contract.errors import InvalidSetting

ROOT = Path(__file__).resolve().parents[2]
JOB = {"type": "job", "id": "j", "reference": "r.png", "poses": "p", "output": "o"}
# One bad value per setting, and one for the checks between settings.
BAD = {
    "width": 130, "height": 0, "steps": 2000, "guidance": float("inf"), "seed": 2**63,
    "context_frames": 0, "context_overlap": -1, "context_loop": "yes", "fps": 0.0, "decode_batch": 0,
}


def test_the_contract_imports_without_bpy_torch_or_opencv():
    blocker = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in {'bpy', 'torch', 'cv2', 'PIL', 'diffusers', 'aa_engine', 'blender_addon'}:\n"
        "            raise ImportError('the contract must not import ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import aa_contract.settings, aa_contract.protocol, aa_contract.keypoints, aa_contract.draw, aa_contract.png\n"
        "print('ok')\n"
    )
    run = subprocess.run([sys.executable, "-I", "-c", blocker], cwd=ROOT, capture_output=True, text=True,
                         env={"PYTHONPATH": str(ROOT)})
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr


def test_every_setting_is_a_flag_of_animate_with_its_declared_default():
    from aa_engine.cli import build_parser

    args = build_parser().parse_args(["animate", "--reference", "r", "--poses", "p", "--out", "o"])
    for s in settings.SETTINGS:
        assert getattr(args, s.name) == s.default, s.name
    flags = build_parser()._subparsers._group_actions[0].choices["animate"]._option_string_actions
    assert all(s.flag in flags for s in settings.SETTINGS)


def test_every_setting_is_a_job_field_and_a_generation_config_field_with_its_default():
    from aa_engine.config import GenerationConfig
    from aa_engine.jobs import JobSpec

    config = GenerationConfig()
    spec = JobSpec.from_message(JOB)
    for s in settings.SETTINGS:
        assert s.name in protocol.CLIENT_MESSAGES["job"]
        assert getattr(config, s.name) == s.default and getattr(spec.config, s.name) == s.default, s.name
    given = {"steps": 7, "guidance": 2.0, "seed": 5, "context_frames": 8, "context_overlap": 2, "context_loop": True,
             "fps": 12.0, "decode_batch": 2, "width": 64, "height": 96}
    spec = JobSpec.from_message({**JOB, **given})
    assert {k: getattr(spec.config, k) for k in given} == given


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_bad_value_gets_the_same_message_from_the_contract_the_job_and_the_command_line(name, tmp_path, capsys):
    from aa_engine.cli import main as engine_main
    from aa_engine.jobs import JobSpec

    with pytest.raises(InvalidSetting) as direct:
        settings.validate({name: BAD[name]})
    assert direct.value.field == name and name in direct.value.message
    with pytest.raises(InvalidSetting) as by_job:
        JobSpec.from_message({**JOB, name: BAD[name]})
    assert by_job.value.message == direct.value.message
    if isinstance(BAD[name], str):
        return  # argparse refuses "yes" for a bool flag itself
    flag = settings.BY_NAME[name].flag
    argv = ["animate", "--reference", "r.png", "--poses", str(tmp_path), "--out", str(tmp_path / "o"), "--weights", "random-tiny"]
    assert engine_main([*argv, f"{flag}={BAD[name]}"]) == 2  # refused before any weights are loaded
    assert f"error: {direct.value.message}" in capsys.readouterr().err


def test_the_command_line_refuses_a_bad_setting_without_a_traceback(tmp_path):
    argv = ["animate", "--reference", "r.png", "--poses", str(tmp_path), "--out", str(tmp_path / "o"), "--seed", "99999999999999999999"]
    run = subprocess.run([sys.executable, "-m", "aa_engine", *argv], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "error: 'seed' must be between 0 and 9223372036854775807 (got 99999999999999999999)." in run.stderr


def test_overlap_must_stay_below_the_window_on_every_path():
    with pytest.raises(InvalidSetting, match="below context_frames") as caught:
        settings.validate({"context_frames": 4, "context_overlap": 4})
    assert caught.value.field == "context_overlap"


def test_guidance_nan_and_seed_beyond_64_bits_are_refused():
    for name, value in (("guidance", float("nan")), ("seed", 99999999999999999999), ("steps", True), ("fps", -5)):
        with pytest.raises(InvalidSetting) as caught:
            settings.validate({name: value})
        assert caught.value.field == name


def test_an_int_for_a_float_setting_is_accepted_as_a_float():
    assert settings.validate({"guidance": 3})["guidance"] == 3.0


def test_unknown_job_fields_are_warned_about_not_dropped_silently():
    request = protocol.parse_job({**JOB, "sharpness": 2, "colour": 1})
    assert request.warnings and "colour, sharpness" in request.warnings[0]


@pytest.mark.parametrize("field,value", [("reference", 3), ("output", {"a": 1}), ("poses", [1, 2]), ("output", "a\x00b"), ("id", None)])
def test_a_path_field_of_the_wrong_type_is_a_bad_request_naming_it(field, value):
    with pytest.raises(InvalidSetting) as caught:
        protocol.parse_job({**JOB, field: value})
    assert caught.value.field == field and caught.value.code == "bad_request"


def test_a_job_needs_exactly_one_of_poses_and_keypoints():
    with pytest.raises(InvalidSetting, match="exactly one"):
        protocol.parse_job({**JOB, "keypoints": "k.json"})
    no_poses = {k: v for k, v in JOB.items() if k != "poses"}
    with pytest.raises(InvalidSetting, match="exactly one"):
        protocol.parse_job(no_poses)


def test_the_settings_document_shows_todays_declaration():
    doc = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    assert settings.with_table(doc) == doc, "docs/settings.md is stale: run `python -m aa_contract.settings docs/settings.md`"


def test_a_short_window_with_the_default_overlap_is_not_refused_for_a_setting_never_given():
    assert settings.validate({"context_frames": 1})["context_overlap"] == 0
    assert settings.validate({"context_frames": 3})["context_overlap"] == 2
    with pytest.raises(InvalidSetting) as caught:
        settings.validate({"context_frames": 3, "context_overlap": 4})  # the user's own overlap: refused
    assert caught.value.field == "context_overlap"


def test_every_setting_has_a_hint_for_its_error():
    assert all(s.hint for s in settings.SETTINGS)
