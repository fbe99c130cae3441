"""The add-on's side of the one settings declaration (aa_contract/settings.py): every setting is a
shot property with its declared default and range, a flag of the command-line render, a field of
the job the add-on sends, and a bad value is refused with the contract's own message."""

import pytest

from _addon_helpers import addon_enabled, simple_shot_scene
from aa_contract import settings
from aa_contract.errors import InvalidSetting


def test_every_setting_is_a_shot_property_with_its_declared_default():
    import bpy

    with addon_enabled():
        props = bpy.context.scene.animate_anyone.bl_rna.properties
        for s in settings.SETTINGS:
            if not s.addon_property:
                continue  # fps: the scene's frame rate
            prop = props[s.name]
            assert prop.default == pytest.approx(s.property_default), s.name
            if s.minimum is not None and s.type is not bool:
                assert prop.hard_min == pytest.approx(s.minimum), s.name


def test_every_setting_is_a_flag_of_the_command_line_render():
    from blender_addon.command_line import build_parser

    parser = build_parser()
    args = parser.parse_args([])
    for s in settings.SETTINGS:
        assert s.flag in parser._option_string_actions, s.name
        assert getattr(args, s.name) is None  # omitted = the value saved in the .blend


def test_the_job_carries_every_setting_from_the_shot(tmp_path):
    from blender_addon.shot import plan_shot

    with addon_enabled():
        scene = simple_shot_scene(tmp_path)
        s = scene.animate_anyone
        s.size_source, s.width, s.height = 'CUSTOM', 64, 96
        s.steps, s.guidance, s.seed, s.context_frames, s.context_overlap, s.context_loop, s.decode_batch = 7, 2.5, 9, 8, 2, True, 3
        plan = plan_shot(scene)
        plan.pose_paths = ["x.png"]
        job = plan.job()
        expected = {"width": 64, "height": 96, "steps": 7, "guidance": 2.5, "seed": 9, "context_frames": 8,
                    "context_overlap": 2, "context_loop": True, "decode_batch": 3, "fps": plan.fps}
        assert set(settings.NAMES) <= set(job)  # every setting, the shot's value or its declared default
        assert {k: job[k] for k in expected} == expected
        assert all(job[s.name] == s.default for s in settings.SETTINGS if s.name not in expected)
        s.size_source = 'NATIVE'
        native = plan_shot(scene)
        native.pose_paths = ["x.png"]
        assert "width" not in native.job() and "height" not in native.job()  # the engine fills in the model's size


@pytest.mark.parametrize("name,value", [("steps", 2000), ("context_overlap", 30), ("width", 130)])
def test_a_bad_value_is_refused_with_the_contracts_message(tmp_path, name, value):
    from blender_addon.command_line import apply_arguments, build_parser
    from blender_addon.shot import plan_shot

    with pytest.raises(InvalidSetting) as direct:
        settings.validate({name: value, **({"context_frames": 24} if name == "context_overlap" else {})})
    with addon_enabled():
        scene = simple_shot_scene(tmp_path)
        with pytest.raises(InvalidSetting) as by_cli:  # refused as given, or (overlap vs window) when planned
            apply_arguments(scene, build_parser().parse_args([settings.BY_NAME[name].flag, str(value)]))
            plan_shot(scene)
        assert by_cli.value.message == direct.value.message
        if name == "context_overlap":  # within the property's range, refused together with context_frames
            scene.animate_anyone.context_overlap = value
            with pytest.raises(InvalidSetting) as by_panel:
                plan_shot(scene)
            assert by_panel.value.message == direct.value.message
