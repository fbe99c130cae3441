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
        owner = SimpleNamespace(**{k: getattr(prefs, k) for k in ("engine_python", "engine_source", "weights", "device", "precision", "engine_address")})
        owner.bl_rna = prefs.bl_rna
        owner.layout = CheckedLayout(calls)
        AnimateAnyonePreferences.draw(owner, bpy.context)
    finally:
        runtime.check_status.state = "idle"
    ops = [c[1][0] for c in calls if c[0] == "operator"]
    assert "animate_anyone.check_engine" in ops and "animate_anyone.setup_engine" in ops
    if check_state == "error":
        assert any("does not exist" in t for t in texts(calls))
