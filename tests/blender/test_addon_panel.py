"""The panel's draw() for every state (idle, running, error, done, cancelled), the Timeline header
button and the preferences.

Background mode (-b, the bpy module) has no window, so no real UILayout can be made; draw() is
called with a stand-in layout that checks every call against the real UILayout's RNA: the function
must exist, every keyword must be one of its parameters, `prop()` must name a real property of its
data and `operator()` a registered operator. A typo or an API missing in this Blender fails the test.
"""

from types import SimpleNamespace

import pytest

from _addon_helpers import addon_enabled, simple_shot_scene

CONTAINERS = {"row", "column", "box", "split", "column_flow", "grid_flow"}


class CheckedLayout:
    def __init__(self, calls):
        object.__setattr__(self, "calls", calls)

    def __setattr__(self, name, value):
        import bpy

        assert name in bpy.types.UILayout.bl_rna.properties, f"UILayout has no attribute {name!r}"
        self.calls.append(("set", (name, value), {}))

    def __getattr__(self, name):
        import bpy

        function = bpy.types.UILayout.bl_rna.functions.get(name)
        if function is None:
            raise AttributeError(f"UILayout has no function {name!r} in Blender {bpy.app.version_string}")
        params = [p.identifier for p in function.parameters if not p.is_output]

        def call(*args, **kwargs):
            unknown = set(kwargs) - set(params)
            assert not unknown, f"UILayout.{name}() has no parameter(s) {sorted(unknown)}"
            assert len(args) <= len(params), f"UILayout.{name}() takes {len(params)} arguments"
            if name in ("prop", "template_ID"):
                data, prop = args[0], args[1]
                assert prop in data.bl_rna.properties, f"{data!r} has no property {prop!r}"
            if name == "operator":
                module, op = args[0].split(".")
                assert hasattr(getattr(bpy.ops, module), op), f"operator {args[0]} is not registered"
            if name == "progress":
                assert 0.0 <= kwargs.get("factor", 0.0) <= 1.0
            self.calls.append((name, args, kwargs))
            if name in CONTAINERS:
                return CheckedLayout(self.calls)
            if name == "operator":
                return SimpleNamespace()
            return None

        return call


def draw(cls_or_fn, context, owner=None):
    calls = []
    holder = owner if owner is not None else SimpleNamespace()
    holder.layout = CheckedLayout(calls)
    cls_or_fn(holder, context)
    return calls


def texts(calls):
    return [kw.get("text", "") for name, _, kw in calls if name in ("label", "progress")]


@pytest.fixture
def shot(tmp_path):
    with addon_enabled():
        yield simple_shot_scene(tmp_path)


def _states(scene_name):
    from blender_addon.errors import EngineCrashed
    from blender_addon.render_task import JobProgress

    return {
        "idle": None,
        "starting": JobProgress(state="starting"),
        "running": JobProgress(state="running", stage="denoise", step=3, total=10, frames_done=0, frames_total=24, eta_s=75.0),
        "cancelling": JobProgress(state="cancelling", stage="denoise", step=4, total=10, frames_total=24),
        "error": JobProgress(state="error", message="The engine stopped in the middle of the job (exit code -9).", hint="Render again to resume.",
                             error=EngineCrashed("x")),
        "cancelled": JobProgress(state="cancelled", message="Cancelled. 0 frame(s) on disk are kept; render again to resume."),
        "done": JobProgress(state="done", message="Done: 24 frames in /tmp/x", frames=["/tmp/x/frame_00001.png"], output="/tmp/x"),
    }


@pytest.mark.parametrize("state", ["idle", "starting", "running", "cancelling", "error", "cancelled", "done"])
def test_panel_draws_every_state(shot, state):
    import bpy

    from blender_addon import runtime
    from blender_addon.panel import ANIMATE_ANYONE_PT_shot

    progress = _states(shot.name)[state]
    runtime.status.pop(shot.name, None)
    if progress is not None:
        runtime.status[shot.name] = progress
    try:
        calls = draw(ANIMATE_ANYONE_PT_shot.draw, bpy.context)
    finally:
        runtime.status.pop(shot.name, None)
    names = [c[0] for c in calls]
    operators = [c[1][0] for c in calls if c[0] == "operator"]
    if state in ("starting", "running", "cancelling"):
        assert "progress" in names and "animate_anyone.cancel" in operators and "animate_anyone.render" not in operators
        if state == "running":
            assert "Denoise, step 3/10, frames 0/24, ETA 1m15s" in texts(calls)
    else:
        assert "animate_anyone.render" in operators and "progress" not in names
    if state == "error":
        assert progress.message in texts(calls) and progress.hint in texts(calls)
    if state == "done":
        assert "animate_anyone.match_scene" in operators and progress.message in texts(calls)


@pytest.mark.parametrize("source", [None, 'FRAME', 'FILE'])
def test_panel_draws_the_rescale_settings(shot, source):
    """'Rescale to Reference' and its sub-settings are drawn in every case (greyed out while off);
    the source shows its own field."""
    import bpy

    from blender_addon.panel import ANIMATE_ANYONE_PT_shot

    settings = shot.animate_anyone
    if source is not None:
        settings.rescale, settings.rescale_source = True, source
        settings.align_first_frame = False
    calls = draw(ANIMATE_ANYONE_PT_shot.draw, bpy.context)
    drawn = {c[1][1] for c in calls if c[0] == "prop"}
    assert {"rescale", "rescale_source", "align_first_frame", "align_frame"} <= drawn
    assert ("reference_keypoints" in drawn) == (source == 'FILE')
    assert ("reference_pose_frame" in drawn) == (source != 'FILE')
    # The layout's `active` set right before the sub-settings greys them out while the option is off.
    first_sub = next(i for i, c in enumerate(calls) if c[0] == "prop" and c[1][1] == "rescale_source")
    active = [c[1][1] for c in calls[:first_sub] if c[0] == "set" and c[1][0] == "active"]
    assert active and active[-1] == (source is not None)


def test_panel_draws_the_seamless_loop_with_the_context_window(shot):
    import bpy

    from blender_addon.panel import ANIMATE_ANYONE_PT_shot

    props = [c[1][1] for c in draw(ANIMATE_ANYONE_PT_shot.draw, bpy.context) if c[0] == "prop"]
    at = props.index("context_frames")
    assert props[at:at + 3] == ["context_frames", "context_overlap", "context_loop"]


def test_panel_shows_the_rounding_note_and_the_missing_camera(shot):
    import bpy

    from blender_addon.panel import ANIMATE_ANYONE_PT_shot

    shot.render.resolution_x, shot.render.resolution_y = 1001, 500
    shot.camera = None
    lines = texts(draw(ANIMATE_ANYONE_PT_shot.draw, bpy.context))
    assert "Render size 1001x500 rounded to 1000x504 (multiples of 8)." in lines
    assert any("no camera" in line for line in lines)
    shot.animate_anyone.size_source = 'CUSTOM'
    shot.animate_anyone.width = 130
    lines = texts(draw(ANIMATE_ANYONE_PT_shot.draw, bpy.context))
    assert "'width' must be a multiple of 8 (got 130): use 128 or 136." in lines


def test_panel_loads_a_thumbnail_of_the_reference_file(shot):
    """Headless Blender makes no icons (icon_id stays 0, so nothing is drawn); what can be checked
    is that the reference file is loaded into the add-on's preview collection and draw() copes."""
    import bpy

    from _addon_helpers import REFERENCE
    from blender_addon import panel

    draw(panel.ANIMATE_ANYONE_PT_shot.draw, bpy.context)
    assert str(REFERENCE) in panel._previews
    shot.animate_anyone.reference_path = "/no/such/file.png"
    assert panel.reference_preview_icon("/no/such/file.png") == 0
    draw(panel.ANIMATE_ANYONE_PT_shot.draw, bpy.context)
    assert "/no/such/file.png" not in panel._previews


def test_panel_draws_with_an_image_datablock_reference(shot):
    import bpy

    from blender_addon.panel import ANIMATE_ANYONE_PT_shot

    shot.animate_anyone.reference_source = 'IMAGE'
    shot.animate_anyone.reference_image = bpy.data.images.new("Ref", 8, 8)
    calls = draw(ANIMATE_ANYONE_PT_shot.draw, bpy.context)
    assert any(c[0] == "template_ID" for c in calls)


@pytest.mark.parametrize("running", [False, True])
def test_timeline_header_button(shot, running):
    from blender_addon import runtime
    from blender_addon.panel import draw_timeline_button
    from blender_addon.render_task import JobProgress

    if running:
        runtime.status[shot.name] = JobProgress(state="running", stage="denoise", step=1, total=2)
    try:
        context = SimpleNamespace(space_data=SimpleNamespace(mode='TIMELINE'), scene=shot)
        calls = draw(draw_timeline_button, context)
        other = draw(draw_timeline_button, SimpleNamespace(space_data=SimpleNamespace(mode='DOPESHEET'), scene=shot))
    finally:
        runtime.status.pop(shot.name, None)
    operators = [c[1][0] for c in calls if c[0] == "operator"]
    assert operators == (["animate_anyone.cancel"] if running else ["animate_anyone.render"])
    assert other == []


@pytest.mark.parametrize("check_state", ["idle", "running", "ok", "error"])
def test_preferences_draw(shot, check_state):
    import bpy

    from blender_addon import runtime
    from blender_addon.preferences import AnimateAnyonePreferences, get_preferences

    runtime.check_status.state = check_state
    runtime.check_status.message = "The engine works." if check_state == "ok" else "The engine interpreter /x does not exist."
    runtime.check_status.lines = ["Device cpu, float32"]
    try:
        prefs = get_preferences()
        calls = []
        # draw() reads the preferences' own properties through self: give it the real ones.
        owner = SimpleNamespace(**{p.identifier: getattr(prefs, p.identifier) for p in prefs.bl_rna.properties if p.identifier != "rna_type"})
        owner.bl_rna = prefs.bl_rna
        owner.layout = CheckedLayout(calls)
        AnimateAnyonePreferences.draw(owner, bpy.context)
    finally:
        runtime.check_status.state = "idle"
    ops = [c[1][0] for c in calls if c[0] == "operator"]
    assert "animate_anyone.check_engine" in ops and "animate_anyone.setup_engine" in ops
    if check_state == "error":
        assert any("does not exist" in t for t in texts(calls))


# -- shots, queue, versions ------------------------------------------------------------------------
def _queue_in_every_state(tmp_path):
    """A queue holding one entry per state; the running one with a progress and a latest frame."""
    from types import SimpleNamespace as NS

    from blender_addon.errors import EngineCrashed
    from blender_addon.render_queue import RenderQueue
    from blender_addon.render_task import JobProgress

    frame = tmp_path / "frame_00001.png"
    import bpy

    image = bpy.data.images.new("f", 8, 8)
    image.filepath_raw, image.file_format = str(frame), 'PNG'
    image.save()
    bpy.data.images.remove(image)
    queue = RenderQueue()
    for name in ("Shot 1", "Shot 2", "Shot 3", "Shot 4", "Shot 5"):
        queue.add("Scene", name)
    done, running, failed, cancelled, _waiting = queue.entries
    done.state, done.version, done.message = "done", "v001", "Done: 2 frames in /x (3 s)"
    running.state, running.version = "running", "v002"
    running.task = NS(progress=JobProgress(state="running", stage="denoise", step=3, total=10, frames_total=8, eta_s=75.0, latest_frame=str(frame)))
    failed.state, failed.version = "error", "v001"
    failed.message, failed.hint = "The engine stopped in the middle of the job (exit code -9).", "Render again to resume."
    failed.task = NS(progress=JobProgress(state="error", error=EngineCrashed("x")))
    cancelled.state, cancelled.message = "cancelled", "Cancelled. 0 frame(s) on disk are kept; render again to resume."
    return queue


def test_queue_panel_draws_every_state(shot, tmp_path):
    import bpy

    from blender_addon import panel, runtime

    empty = texts(draw(panel.ANIMATE_ANYONE_PT_queue.draw, bpy.context))
    assert empty == ["The queue is empty: 'Render All Shots' or 'Render Selected' fills it."]
    runtime.queue = _queue_in_every_state(tmp_path)
    try:
        calls = draw(panel.ANIMATE_ANYONE_PT_queue.draw, bpy.context)
    finally:
        from blender_addon.render_queue import RenderQueue

        runtime.queue = RenderQueue()
    lines = texts(calls)
    assert lines[0] == "1 waiting, 1 running, 1 done, 1 failed, 1 cancelled; running shot ETA 1m15s"
    assert "Shot 1 v001: done (Done: 2 frames in /x (3 s))" in lines
    assert "Denoise, step 3/10, frames 0/8, ETA 1m15s" in lines  # the running shot's progress bar
    assert "Latest frame: frame_00001.png" in lines  # the live preview of the running shot
    assert "Shot 3 v001: failed: The engine stopped in the middle of the job (exit code -9)." in lines and "Render again to resume." in lines
    assert "Shot 4: cancelled" in lines and "Shot 5: waiting" in lines
    operators = [(c[1][0], c[2].get("text")) for c in calls if c[0] == "operator"]
    assert operators.count(("animate_anyone.queue_retry", "Retry")) == 2  # the failed and the cancelled shot
    assert ("animate_anyone.queue_cancel", "Cancel All") in operators
    assert operators.count(("animate_anyone.queue_cancel", "")) == 2  # the running and the waiting shot
    assert [c for c in calls if c[0] == "progress"][0][2]["factor"] == pytest.approx(0.06 + 0.86 * 0.3)


def test_shot_panel_with_a_shot_list_draws_the_active_shots_editor_and_versions(shot, tmp_path):
    import bpy

    from blender_addon import panel, shots

    calls = draw(panel.ANIMATE_ANYONE_PT_shot.draw, bpy.context)
    assert any(c[0] == "template_list" and c[1][0] == "ANIMATE_ANYONE_UL_shots" for c in calls)
    assert "shot_name" in [c[1][1] for c in calls if c[0] == "prop"]  # no list: the single shot's name
    item = shots.new_shot(shot, "Shot A", 1, 4)
    version = item.versions.add()
    version.name, version.state, version.summary = "v001", "done", "seed 42, 2 steps, guidance 3.5, 64x96"
    item.override_context = True
    calls = draw(panel.ANIMATE_ANYONE_PT_shot.draw, bpy.context)
    props = [(c[1][0], c[1][1]) for c in calls if c[0] == "prop"]
    assert (item, "frame_start") in props and (item, "camera") in props and (item, "seed") in props
    assert (item, "context_frames") in props and (shot.animate_anyone, "steps") in props  # own context, the scene's sampling
    assert (item, "steps") not in props
    assert "shot_name" not in [p for _, p in props]
    lists = [c[1][0] for c in calls if c[0] == "template_list"]
    assert lists == ["ANIMATE_ANYONE_UL_shots", "ANIMATE_ANYONE_UL_versions"]
    operators = [c[1][0] for c in calls if c[0] == "operator"]
    for op in ("animate_anyone.shots_from_markers", "animate_anyone.version_render_again", "animate_anyone.version_delete",
               "animate_anyone.render_shots", "animate_anyone.render"):
        assert op in operators
    assert "Render 'Shot A'" in [c[2].get("text") for c in calls if c[0] == "operator"]
    # The lists' rows.
    row_calls = []
    holder = SimpleNamespace()
    panel.ANIMATE_ANYONE_UL_shots.draw_item(holder, bpy.context, CheckedLayout(row_calls), shot.animate_anyone, item, 0, None, "", 0)
    panel.ANIMATE_ANYONE_UL_versions.draw_item(holder, bpy.context, CheckedLayout(row_calls), item, version, 0, None, "", 0)
    assert "1-4" in texts(row_calls) and "seed 42, 2 steps, guidance 3.5, 64x96" in texts(row_calls)
