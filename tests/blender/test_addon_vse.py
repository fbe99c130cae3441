"""Frames come back as ONE image-sequence strip, at the shot's start frame, on a free channel."""

from pathlib import Path

import pytest

from _addon_helpers import addon_enabled


def write_frames(folder: Path, count: int, size=(16, 24)) -> list[Path]:
    import bpy

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(1, count + 1):
        image = bpy.data.images.new(f"f{i}", *size)
        image.pixels[:] = [i / count, 0.5, 0.25, 1.0] * (size[0] * size[1])
        path = folder / f"frame_{i:05d}.png"
        image.filepath_raw = str(path)
        image.file_format = 'PNG'
        image.save()
        bpy.data.images.remove(image)
        paths.append(path)
    return paths


@pytest.fixture
def scene():
    import bpy

    with addon_enabled():
        yield bpy.context.scene


def test_frames_become_one_strip_with_every_element(scene, tmp_path):
    from blender_addon import vse

    frames = write_frames(tmp_path / "frames", 7)
    strip = vse.import_image_sequence(scene, frames, 12, "AA shot")
    strips = list(vse.strips_of(scene.sequence_editor))
    assert len(strips) == 1 and strips[0] == strip
    assert strip.type == 'IMAGE'
    assert len(strip.elements) == 7
    assert [e.filename for e in strip.elements] == [f.name for f in frames]
    assert Path(bpy_abspath(strip.directory)) == tmp_path / "frames"
    assert int(strip.frame_start) == 12 and strip.frame_final_start == 12
    assert strip.frame_final_duration == 7 and strip.frame_final_end == 19


def bpy_abspath(path):
    import bpy

    return bpy.path.abspath(path)


def test_strip_goes_to_a_free_channel_and_a_rerun_replaces_it(scene, tmp_path):
    from blender_addon import vse

    other = write_frames(tmp_path / "other", 3)
    blocker = vse.import_image_sequence(scene, other, 1, "someone else's strip")
    assert blocker.channel == 1
    frames = write_frames(tmp_path / "frames", 5)
    strip = vse.import_image_sequence(scene, frames, 2, "AA shot")
    assert strip.channel == 2  # frames 2-6 overlap the blocker (1-3) on channel 1
    again = vse.import_image_sequence(scene, frames, 2, "AA shot")
    names = sorted(s.name for s in vse.strips_of(scene.sequence_editor))
    assert names == ["AA shot", "someone else's strip"]
    assert again.channel == 2 and len(again.elements) == 5
    later = vse.import_image_sequence(scene, frames, 10, "AA later")
    assert later.channel == 1  # nothing on channel 1 from frame 10 on


def test_match_scene_to_frames_sets_the_render_size(scene, tmp_path):
    from blender_addon import vse

    frames = write_frames(tmp_path / "frames", 2, size=(40, 64))
    scene.render.resolution_percentage = 50
    assert vse.match_scene_to_frames(scene, frames) == (40, 64)
    assert (scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage) == (40, 64, 100)


def test_sequencer_scene_prefers_the_5_0_sequencer_scene(scene):
    import bpy

    from blender_addon import vse

    assert vse.sequencer_scene(bpy.context) == (getattr(bpy.context, "sequencer_scene", None) or scene)
