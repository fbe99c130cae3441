"""The add-on with a remote engine (issue 8), in real bpy: preferences (Engine: Remote, token as a
password, TLS trust), Test Connection, and the bundled rig rendered through an engine started as a
separate process with its own work root: nothing is shared but the loopback socket, and the
strip's frames are on the client's side."""

import sys
from pathlib import Path

import pytest

from _addon_helpers import REFERENCE, ROOT, addon_enabled, engine_python

sys.path.insert(0, str(ROOT / "tests" / "engine"))
from remote_helpers import RemoteEngineProcess  # noqa: E402 - the engine tests' helper (stdlib only)

pytestmark = pytest.mark.slow  # one engine start, one bundled-rig render, one command-line render


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    process = RemoteEngineProcess(tmp_path_factory.mktemp("engine-box") / "work", python=engine_python())
    yield process
    process.stop()


def set_remote(engine, token=None, mode='REMOTE'):
    from blender_addon.preferences import get_preferences

    prefs = get_preferences()
    prefs.engine_mode = mode
    prefs.engine_address = f"127.0.0.1:{engine.port}"
    prefs.remote_token = engine.token if token is None else token
    prefs.engine_python = "/nonexistent/python"  # a remote render must never start a local engine
    return prefs


def test_remote_preferences_and_test_connection(engine):
    import bpy

    from blender_addon import preferences

    with addon_enabled():
        prefs = set_remote(engine)
        assert type(prefs).bl_rna.properties["remote_token"].subtype == 'PASSWORD'
        settings = preferences.engine_settings()
        assert (settings.address, settings.token) == (f"127.0.0.1:{engine.port}", engine.token)
        assert len(settings.client_id) >= 32 and preferences.engine_settings().client_id == settings.client_id  # stable
        assert bpy.ops.animate_anyone.test_connection() == {'FINISHED'}
        lines = preferences.connection_status.lines
        assert lines[0].startswith(f"Connected to 127.0.0.1:{engine.port} (no TLS), engine ") and "protocol 3" in lines[0]
        assert "Device cpu, float32" in lines and "Model random-tiny, weights random-tiny" in lines
        assert lines[3].startswith("Queue: 0 waiting, nothing running;")
        prefs.remote_token = "wrong-token-wrong-token"
        with pytest.raises(RuntimeError, match="refused the token: Wrong or missing token"):
            bpy.ops.animate_anyone.test_connection()
        prefs.engine_mode = 'LOCAL'
        assert preferences.engine_settings().address == ""  # Local: the remote fields are ignored
        prefs.engine_mode, prefs.engine_address = 'REMOTE', ""
        with pytest.raises(Exception, match="Host:Port is empty"):
            preferences.engine_settings()
    preferences.connection_status.state = "idle"


def test_render_button_renders_the_bundled_rig_through_the_remote_engine(engine, tmp_path):
    import bpy

    from blender_addon import runtime, vse
    from test_addon_command_line import rig_blend

    blend = rig_blend(tmp_path)
    with addon_enabled():
        bpy.ops.wm.open_mainfile(filepath=str(blend), load_ui=False)
        set_remote(engine)
        scene = bpy.context.scene
        s = scene.animate_anyone
        s.reference_source, s.reference_path = 'FILE', str(REFERENCE)
        s.use_scene_range, s.frame_start, s.frame_end = False, scene.frame_start, scene.frame_start + 3
        s.size_source, s.width, s.height = 'CUSTOM', 64, 96
        s.steps, s.output_dir, s.shot_name = 1, str(tmp_path / "renders"), "remote"
        try:
            assert bpy.ops.animate_anyone.render() == {'FINISHED'}
            progress = runtime.status[scene.name]
            assert progress.state == "done", progress.message
            assert len(progress.frames) == 4
            client_frames = [Path(f) for f in progress.frames]
            assert all(f.is_file() and str(f).startswith(str(tmp_path / "renders")) for f in client_frames)
            assert not str(engine.work_root).startswith(str(tmp_path)) and not str(tmp_path).startswith(str(engine.work_root))
            # The engine's copies, in its own work root, are the bytes the client wrote.
            engine_copies = {p.name: p.read_bytes() for p in engine.work_root.glob("jobs/*/frame_*.png")}
            assert {f.name: f.read_bytes() for f in client_frames}.items() <= engine_copies.items()
            assert not list(engine.work_root.rglob("*.blend")) and not list(tmp_path.rglob("inputs"))
            strips = list(vse.strips_of(vse.sequencer_scene(bpy.context, scene).sequence_editor))
            assert len(strips) == 1 and len(strips[0].elements) == 4
            first = bpy.path.abspath(strips[0].directory)
            assert Path(first).resolve() == client_frames[0].parent.resolve()  # the strip reads the client's frames
            stamp = [f.stat().st_mtime_ns for f in client_frames]
            assert bpy.ops.animate_anyone.render() == {'FINISHED'}  # again: resumed, nothing re-sent or rewritten
            again = runtime.status[scene.name]
            assert again.state == "done" and [Path(f).stat().st_mtime_ns for f in again.frames] == stamp
        finally:
            runtime.reset()


def test_command_line_render_with_remote_and_token_file(engine, tmp_path):
    import subprocess

    from test_addon_command_line import rig_blend

    blend = rig_blend(tmp_path)
    token_file = tmp_path / "token"
    token_file.write_text(engine.token + "\n")
    out = tmp_path / "farm"
    done = subprocess.run([sys.executable, "-m", "blender_addon.command_line", str(blend), "--remote", f"127.0.0.1:{engine.port}",
                           "--token-file", str(token_file), "--reference", str(REFERENCE), "--start", "1", "--end", "3",
                           "--width", "64", "--height", "96", "--steps", "1", "--shot", "farm", "--output", str(out),
                           "--save", str(tmp_path / "result.blend")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "strip 'AA farm': 3 frames from frame 1" in done.stdout
    assert len(list(out.rglob("frame_*.png"))) == 3
    bad = subprocess.run([sys.executable, "-m", "blender_addon.command_line", str(blend), "--remote", f"127.0.0.1:{engine.port}",
                          "--token-file", str(tmp_path / "missing")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and f"error: The token file {tmp_path / 'missing'} cannot be read" in bad.stderr


def test_engine_address_is_a_deprecated_alias_of_remote():
    from blender_addon.command_line import build_parser

    assert build_parser().parse_args(["--engine-address", "gpu:7860"]).remote == "gpu:7860"
    assert build_parser().parse_args(["--remote", "gpu:7860", "--token-file", "t"]).token_file == "t"


def test_preferences_draw_the_remote_fields_and_the_connection_status():
    """The Remote page of the preferences, drawn through the panel tests' checked layout (every
    property, operator and parameter must exist in this Blender)."""
    from types import SimpleNamespace

    import bpy

    from blender_addon import preferences
    from test_addon_panel import CheckedLayout, texts

    with addon_enabled():
        prefs = preferences.get_preferences()
        owner = SimpleNamespace(**{p.identifier: getattr(prefs, p.identifier) for p in prefs.bl_rna.properties if p.identifier != "rna_type"})
        owner.bl_rna, owner.engine_mode = prefs.bl_rna, 'REMOTE'
        status = preferences.connection_status
        status.state, status.message, status.lines = "ok", "The remote engine at h:1 works.", ["Device cuda:0, float16", "Queue: 2 waiting"]
        calls = []
        owner.layout = CheckedLayout(calls)
        try:
            preferences.AnimateAnyonePreferences.draw(owner, bpy.context)
        finally:
            status.state = "idle"
        props = [c[1][1] for c in calls if c[0] == "prop"]
        assert props == ["engine_mode", "engine_address", "remote_token", "tls_ca_file", "tls_fingerprint"]
        assert [c[1][0] for c in calls if c[0] == "operator"] == ["animate_anyone.test_connection"]
        assert texts(calls)[-3:] == ["The remote engine at h:1 works.", "Device cuda:0, float16", "Queue: 2 waiting"]
