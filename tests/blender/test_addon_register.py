import subprocess

import pytest

from _addon_helpers import ROOT, addon_enabled, disable_addon, enable_addon, engine_python


def test_addon_registers_and_unregisters_twice_in_a_row(empty_blend):
    import bpy

    for _ in range(2):
        enable_addon()
        assert hasattr(bpy.types.Scene, "animate_anyone")
        assert hasattr(bpy.ops.animate_anyone, "render")
        assert bpy.types.Panel.bl_rna_get_subclass_py("ANIMATE_ANYONE_PT_shot") is not None
        assert "blender_addon" in bpy.context.preferences.addons
        assert empty_blend.animate_anyone.steps == 30
        disable_addon()
        assert not hasattr(bpy.types.Scene, "animate_anyone")
        assert bpy.types.Panel.bl_rna_get_subclass_py("ANIMATE_ANYONE_PT_shot") is None
        assert "blender_addon" not in bpy.context.preferences.addons


def test_direct_register_unregister_without_the_addon_system(empty_blend):
    import bpy

    import blender_addon

    for _ in range(2):
        blender_addon.register()
        assert hasattr(bpy.types.Scene, "animate_anyone")
        blender_addon.unregister()
        assert not hasattr(bpy.types.Scene, "animate_anyone")


@pytest.mark.slow
def test_unregister_stops_a_running_engine(empty_blend):
    from blender_addon import runtime
    from blender_addon.engine_client import EngineSettings

    with addon_enabled():
        engine = runtime.engine_for(EngineSettings(engine_python(), "random-tiny", "cpu"))
        engine.wait_hello(300)
        assert engine.alive
    assert not engine.alive  # disable_addon -> unregister -> runtime.reset


def test_package_imports_without_bpy():
    """The engine imports blender_addon.skeleton.draw; the package must not need bpy."""
    modules = ["blender_addon", "blender_addon.errors", "blender_addon.engine_client", "blender_addon.render_task", "blender_addon.runtime"]
    if (ROOT / "blender_addon" / "skeleton" / "__init__.py").is_file():
        modules.append("blender_addon.skeleton")
    code = "import importlib, sys\nfor m in sys.argv[1:]: importlib.import_module(m)\nassert 'bpy' not in sys.modules\nprint('ok')"
    done = subprocess.run([engine_python(), "-c", code, *modules], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_loading_another_file_cancels_a_running_render(tmp_path):
    """The render operator dies with the old file's windows: its job must not stay 'running'."""
    import bpy

    from _addon_helpers import job_message
    from blender_addon import runtime
    from blender_addon.engine_client import EngineSettings
    from blender_addon.render_task import RenderTask

    with addon_enabled():
        engine = runtime.engine_for(EngineSettings(engine_python(), "random-tiny", "cpu"))
        task = RenderTask(engine, job_message(tmp_path, count=2, steps=50))
        runtime.tasks["Scene"] = task
        runtime.status["Scene"] = task.progress
        assert runtime.busy()
        bpy.ops.wm.read_homefile(use_empty=True)  # a file load (load_pre runs; the add-on stays enabled)
        assert not runtime.busy() and runtime.status == {}
        assert task.progress.state in ("cancelling", "cancelled")
        assert engine.alive  # kept for the next render
    assert not engine.alive
