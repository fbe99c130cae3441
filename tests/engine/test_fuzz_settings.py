"""Issue 10, property: for ANY settings dict, `aa_contract.settings.validate` either refuses it with
an InvalidSetting naming a setting it was given, or accepts it, and then a real job with those
settings runs to the end on random-tiny (2 frames, 1 step, at 24x24: the smallest size that model
takes; 16x16 is refused by the engine with a clear error, see test_job_folder).

Bounded and reproducible: fixed example count, a deadline, derandomized. scripts/test.sh runs
pytest with --hypothesis-show-statistics, which prints the example counts.
"""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, Phase, given, settings as hsettings, strategies as st

from aa_contract import settings
from aa_contract.errors import InvalidSetting
from aa_engine.config import GenerationConfig
from aa_engine.jobs import JobSpec, run_job
from aa_engine.pipeline import AnimateAnyonePipeline

from conftest import EXAMPLES

pytestmark = pytest.mark.slow

POSES = sorted((EXAMPLES / "poses").glob("*.png"))[:2]
# No shrinking: each example runs a job, so a failure is reported as found (bounded time in CI).
FUZZ = hsettings(max_examples=50, deadline=timedelta(seconds=60), derandomize=True, database=None,
                 phases=[Phase.explicit, Phase.generate],
                 suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

anything = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
            | st.lists(st.integers(), max_size=3) | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


def _in_range(s: settings.Setting) -> st.SearchStrategy:
    """Values a setting accepts (and its edges), so that many examples pass and run a job."""
    if s.type is bool:
        return st.booleans()
    low = s.minimum if s.minimum is not None else 0
    high = s.maximum if s.maximum is not None else 10**6
    if s.type is int:
        values = st.integers(int(low), int(high))
        return values.map(lambda v: v - v % s.multiple_of if s.multiple_of and v >= s.multiple_of else v) if s.multiple_of else values
    return st.floats(low, high) | st.sampled_from([low, high]) | st.integers(int(math.ceil(low)), int(high))


def _value(s: settings.Setting) -> st.SearchStrategy:
    edges = st.sampled_from([v for v in (s.minimum, s.maximum) if v is not None] or [0]).flatmap(
        lambda v: st.sampled_from([v - 1, v, v + 1, v - 0.5, v + 0.5]))
    return st.one_of(_in_range(s), _in_range(s), edges, anything,
                     st.sampled_from([math.nan, math.inf, -math.inf, 2**63, 2**64, -1, 0, True, "3", None]))


_extra = st.dictionaries(st.text(max_size=6), anything, max_size=2)  # keys that are not settings: ignored
settings_dicts = st.one_of(
    # Values in their ranges (refused only by a check of two settings), so that many jobs run...
    st.fixed_dictionaries({}, optional={s.name: _in_range(s) for s in settings.SETTINGS}),
    # ...and values of any kind and at every edge.
    st.fixed_dictionaries({}, optional={s.name: _value(s) for s in settings.SETTINGS}),
).flatmap(lambda d: _extra.map(lambda extra: {**extra, **d}))


@pytest.fixture(scope="module")
def pipe():
    from aa_engine.weights import load_model

    return AnimateAnyonePipeline(load_model("random-tiny")[0])


COUNTS = {"accepted": 0, "refused": 0}


@FUZZ
@given(values=settings_dicts)
def test_any_settings_are_refused_naming_the_field_or_run(pipe, tmp_path_factory, values):
    try:
        accepted = settings.validate(values)
    except InvalidSetting as exc:
        COUNTS["refused"] += 1
        # It names a setting it was given, or for a check of two settings, the partner of one it
        # was given ({"context_frames": 1} is refused as 'context_overlap' (default 4) must be below it).
        partners = {"context_overlap": "context_frames", "width": "height"}
        assert exc.field in values or partners.get(exc.field) in values, (values, exc.field, exc.message)
        assert exc.field in exc.message or exc.field == "width" and "pixels" in exc.message, exc.message
        # What to do: a hint, except for a true/false setting, whose message says it (the
        # contract declares no hint for context_loop).
        assert exc.hint or settings.BY_NAME[exc.field].type is bool, exc.message
        return
    COUNTS["accepted"] += 1
    assert set(accepted) == set(settings.NAMES)
    # The job runs with every accepted value except the size and step count, which would only
    # make it slower (sizes are checked against the model in test_job_folder).
    run = {**accepted, "width": 24, "height": 24, "steps": 1}
    out = tmp_path_factory.mktemp("job")
    events = []
    result = run_job(pipe, "fuzz", JobSpec("fuzz", EXAMPLES / "reference.png", list(POSES), out, GenerationConfig(**run),
                                           video=True), lambda kind, **f: events.append(kind))
    assert result["frames"] == 2 and events[0] == "accepted" and events.count("frame") == 2
    assert (out / "frame_00002.png").is_file() and result["video"]


def test_the_fuzz_ran_both_ways():
    print(f"settings fuzz: {COUNTS['accepted']} accepted and run, {COUNTS['refused']} refused naming the field")
    if sum(COUNTS.values()):  # when the property ran in this session (not deselected)
        assert COUNTS["accepted"] >= 5 and COUNTS["refused"] >= 5, COUNTS
