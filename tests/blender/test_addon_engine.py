"""The add-on's side of the engine: a real `python -m aa_engine serve` subprocess, real files.

Errors from point 6 of the issue that live at the engine boundary: interpreter missing or lacking
torch, weights folder incomplete, engine crash mid-job (frames kept, a rerun resumes), out of memory.
"""

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from _addon_helpers import engine_python, job_message


def test_missing_interpreter_is_named():
    from blender_addon.engine_client import check_interpreter
    from blender_addon.errors import EngineInterpreterError

    with pytest.raises(EngineInterpreterError) as info:
        check_interpreter("/nonexistent/engine/bin/python")
    assert info.value.message == "The engine interpreter /nonexistent/engine/bin/python does not exist."
    assert "Set Up Engine Environment" in info.value.hint
    with pytest.raises(EngineInterpreterError, match="No engine interpreter is set"):
        check_interpreter("")


def test_interpreter_without_torch_is_refused():
    from blender_addon.engine_client import check_interpreter
    from blender_addon.errors import EngineInterpreterError

    # This very interpreter (the bpy environment) has no torch: a real wrong choice.
    with pytest.raises(EngineInterpreterError) as info:
        check_interpreter(sys.executable)
    assert info.value.message.startswith(f"The engine interpreter {sys.executable} lacks torch")
    assert "engine env" in info.value.hint


def test_engine_interpreter_passes_the_check():
    from blender_addon.engine_client import check_interpreter

    assert check_interpreter(engine_python())["missing"] == {}


@pytest.mark.slow
def test_incomplete_weights_folder_says_what_is_missing(tmp_path):
    from blender_addon.engine_client import EngineProcess, EngineSettings
    from blender_addon.errors import EngineStartFailed

    weights = tmp_path / "pretrained_weights"
    weights.mkdir()
    (weights / "denoising_unet.pth").write_bytes(b"")  # a release folder with one file of seven
    engine = EngineProcess(EngineSettings(engine_python(), str(weights), "cpu")).start()
    with pytest.raises(EngineStartFailed) as info:
        engine.wait_hello(300)
    message = info.value.message
    assert "incomplete" in message
    for part in ("reference_unet.pth", "pose_guider.pth", "motion_module.pth", "sd-vae-ft-mse", "image_encoder"):
        assert part in message
    assert "denoising_unet.pth" not in message.split("missing", 1)[1]
    assert not engine.alive


@pytest.mark.slow
def test_check_engine_reports_hello():
    from blender_addon import runtime
    from blender_addon.engine_client import PROTOCOL_VERSION, EngineSettings

    status = runtime.BackgroundStatus()
    status.run(lambda s: runtime.check_engine(EngineSettings(engine_python(), "random-tiny", "cpu"), s))
    status.join(300)
    assert status.state == "ok", status.message
    text = "\n".join(status.lines)
    assert "Device cpu, float32" in text and "Model random-tiny" in text and f"protocol {PROTOCOL_VERSION}" in text


@pytest.mark.slow
def test_engine_crash_mid_job_keeps_frames_and_a_rerun_resumes(tmp_path):
    from blender_addon.engine_client import EngineProcess, EngineSettings
    from blender_addon.errors import EngineCrashed
    from blender_addon.render_task import RenderTask, frames_on_disk

    settings = EngineSettings(engine_python(), "random-tiny", "cpu")
    job = job_message(tmp_path, count=6, decode_batch=1)
    engine = EngineProcess(settings, tmp_path / "engine.log").start()
    task = RenderTask(engine, job)
    killed = False
    deadline = time.monotonic() + 300
    while not task.progress.finished and time.monotonic() < deadline:
        task.pump(timeout=0.2)
        if not killed and frames_on_disk(job["output"]):
            os.kill(engine.pid, signal.SIGKILL)  # the engine dies while decoding
            killed = True
    assert killed and task.progress.state == "error"
    error = task.progress.error
    assert isinstance(error, EngineCrashed)
    kept = frames_on_disk(job["output"])
    assert 1 <= len(kept) < 6
    assert f"killed (often: the system ran out of memory)). {len(kept)} frame(s) already written are kept in {job['output']}." in error.message
    assert "Render again to resume" in error.hint
    kept_bytes = {p.name: p.read_bytes() for p in kept}

    # Nothing lost: the same job again resumes and ends with every frame; the kept ones untouched.
    engine = EngineProcess(settings).start()
    try:
        task = RenderTask(engine, dict(job, id="again"))
        progress = task.run_blocking(poll_s=0.2)
    finally:
        engine.shutdown()
    assert progress.state == "done", progress.message
    assert progress.resumed_frames >= len(kept)
    assert len(progress.frames) == 6
    for name, data in kept_bytes.items():
        assert (Path(job["output"]) / name).read_bytes() == data


@pytest.mark.slow
def test_cancel_stops_the_job_and_says_frames_are_kept(tmp_path):
    from blender_addon.engine_client import EngineProcess, EngineSettings
    from blender_addon.render_task import RenderTask

    engine = EngineProcess(EngineSettings(engine_python(), "random-tiny", "cpu")).start()
    try:
        task = RenderTask(engine, job_message(tmp_path, count=4, steps=50))
        while task.progress.stage != "denoise" and not task.progress.finished:
            task.pump(timeout=0.2)
        task.cancel()
        progress = task.run_blocking(poll_s=0.2)
        assert progress.state == "cancelled"
        assert progress.message == "Cancelled. 0 frame(s) on disk are kept; render again to resume."
        assert engine.alive  # the engine survives a cancelled job and serves the next one
        again = RenderTask(engine, job_message(tmp_path, count=2))
        result = again.run_blocking(poll_s=0.2)
        assert result.state == "done", result.message
    finally:
        engine.shutdown()


def test_engine_setup_refuses_a_wrong_source_before_creating_anything(tmp_path):
    from blender_addon import runtime
    from blender_addon.engine_setup import set_up_engine_env

    status = runtime.BackgroundStatus()
    status.run(lambda s: set_up_engine_env(tmp_path / "env", str(tmp_path), s))
    status.join(60)
    assert status.state == "error"
    assert status.message == f"{tmp_path} is not the Animate Anyone project: it lacks pyproject.toml or the aa_engine package."
    assert not (tmp_path / "env").exists()


@pytest.mark.slow
def test_engine_setup_creates_the_env_and_reports_a_failed_install(tmp_path):
    """A real venv, a real pip that cannot reach an index: the message says what failed."""
    from blender_addon import runtime
    from blender_addon.engine_setup import set_up_engine_env, venv_python

    from _addon_helpers import ROOT

    status = runtime.BackgroundStatus()
    status.run(lambda s: set_up_engine_env(tmp_path / "env", str(ROOT), s, pip_args=("--no-index", "--no-cache-dir")))
    status.join(300)
    assert venv_python(tmp_path / "env").is_file()
    assert status.state == "error"
    assert status.message.startswith("Installing torch failed: ERROR: ")
    assert "torch" in status.message
    assert any(line.startswith("$ ") and "pip install" in line for line in status.lines)


@pytest.mark.slow
def test_out_of_memory_mid_job_is_named_and_the_engine_survives(tmp_path):
    """A real allocation failure: the engine runs under a 1.6 GB address-space limit (a wrapper
    script as its interpreter) and is asked for 1024x1024 frames."""
    from blender_addon.engine_client import EngineProcess, EngineSettings
    from blender_addon.errors import EngineJobFailed
    from blender_addon.render_task import RenderTask

    wrapper = tmp_path / "python-1.6GB"
    wrapper.write_text(f'#!/bin/sh\nulimit -v 1600000\nexec "{engine_python()}" "$@"\n')
    wrapper.chmod(0o755)
    engine = EngineProcess(EngineSettings(str(wrapper), "random-tiny", "cpu")).start()
    try:
        task = RenderTask(engine, job_message(tmp_path, count=16, width=1024, height=1024, steps=1, context_frames=16))
        progress = task.run_blocking(poll_s=0.2)
        assert progress.state == "error"
        assert isinstance(progress.error, EngineJobFailed)
        assert progress.message.startswith("The engine ran out of memory during the job.")
        assert "Lower the resolution" in progress.hint
        assert engine.alive  # the engine keeps serving: a smaller job runs next
        small = RenderTask(engine, job_message(tmp_path / "small", count=2))
        assert small.run_blocking(poll_s=0.2).state == "done"
    finally:
        engine.shutdown()


def test_unreachable_remote_engine_is_explained():
    from blender_addon.engine_client import EngineSettings, RemoteEngine
    from blender_addon.errors import EngineStartFailed

    with pytest.raises(EngineStartFailed, match=r"Cannot reach the remote engine at 127\.0\.0\.1:9 "):
        RemoteEngine(EngineSettings(address="127.0.0.1:9")).start()
    with pytest.raises(EngineStartFailed, match="is not HOST:PORT"):
        RemoteEngine(EngineSettings(address="gpu-box")).start()


@pytest.mark.slow
def test_check_engine_button_in_background_and_with_a_serving_engine():
    import bpy

    from _addon_helpers import addon_enabled, set_engine_preferences
    from blender_addon import runtime
    from blender_addon.preferences import engine_settings

    with addon_enabled():
        set_engine_preferences(engine_python())
        assert bpy.ops.animate_anyone.check_engine() == {'FINISHED'}
        assert runtime.check_status.state == "ok" and "Device cpu, float32" in runtime.check_status.lines
        engine = runtime.engine_for(engine_settings())
        engine.wait_hello(300)
        assert bpy.ops.animate_anyone.check_engine() == {'FINISHED'}
        assert runtime.check_status.lines[0] == "The engine serving renders answers:"
        set_engine_preferences("/no/python")
        with pytest.raises(RuntimeError, match="The engine interpreter /no/python does not exist."):
            bpy.ops.animate_anyone.check_engine()
        assert runtime.check_status.state == "error"
    runtime.check_status.state = "idle"
    assert not engine.alive
