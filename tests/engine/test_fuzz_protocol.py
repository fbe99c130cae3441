"""Issue 10, property: for ANY line a client sends (any JSON value, any byte string, anything shaped
like a message), a real `serve` answers exactly one `error` event and keeps serving.

Bounded and reproducible: fixed example counts, a deadline per example, derandomized (the same
examples on every run). scripts/test.sh runs pytest with --hypothesis-show-statistics, which
prints how many examples each property ran.
"""

from __future__ import annotations

import json
import queue
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from raw_engine import RawEngine

pytestmark = pytest.mark.slow

FUZZ = settings(max_examples=300, deadline=timedelta(seconds=20), derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
                           max_leaves=20)
# Message-shaped objects: a real or made-up type and the job's fields with values of any type.
FIELDS = ["id", "reference", "poses", "keypoints", "output", "video", "width", "height", "steps", "guidance",
          "seed", "context_frames", "context_overlap", "context_loop", "fps", "decode_batch"]
messages = st.fixed_dictionaries(
    {"type": st.sampled_from(["job", "cancel", "dance", "", "JOB"]) | st.text(max_size=10)},
    optional={name: json_values for name in FIELDS},
)


def _line(value) -> bytes:
    return json.dumps(value).encode()


lines = st.one_of(
    st.binary(max_size=300),
    json_values.map(_line),
    messages.map(_line),
    # Structure that is almost right: bytes spliced into a message, truncated JSON.
    st.tuples(messages.map(_line), st.binary(min_size=1, max_size=20), st.integers(0, 200)).map(
        lambda t: t[0][: t[2]] + t[1] + t[0][t[2]:]),
    messages.map(_line).flatmap(lambda b: st.integers(1, max(1, len(b) - 1)).map(lambda n: b[:n])),
)


def _is_blank(line: bytes) -> bool:
    return not line.strip(b" \t\r\n")


def _answers_itself(line: bytes) -> bool:
    """Lines that are not bad: a well-formed ping or shutdown."""
    try:
        message = json.loads(line.decode("utf-8"))
    except (ValueError, RecursionError):
        return False
    return isinstance(message, dict) and message.get("type") in ("ping", "shutdown")


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    # Run where no relative path a fuzzed job names can exist.
    process = RawEngine(cwd=tmp_path_factory.mktemp("fuzz_cwd"))
    assert process.next()["type"] == "hello"
    yield process
    assert process.close() == 0
    assert "Traceback" not in process.log, process.log[-3000:]


COUNTS = {"lines": 0, "errors": 0}


@FUZZ
@given(line=lines)
def test_any_bad_line_gets_exactly_one_error_and_the_engine_keeps_serving(engine, line):
    line = line.replace(b"\n", b" ")  # one line (the transport splits on newlines only)
    assume(not _is_blank(line) and not _answers_itself(line))
    engine.send_bytes(line)
    engine.send({"type": "ping"})
    answers = engine.until("pong", timeout=20)[:-1]
    if not answers:
        # A job that passed the message checks fails on its worker thread (its reference does
        # not exist), so its error may come after the pong: it must come, and be the only one.
        answers = [engine.next(timeout=20)]
    assert len(answers) == 1, (line, answers)
    error = answers[0]
    assert error["type"] == "error", (line, error)
    assert error["code"] in ("bad_request", "bad_input", "track"), (line, error)
    assert error["message"] and error["hint"], (line, error)
    COUNTS["lines"] += 1
    COUNTS["errors"] += 1


def test_nothing_was_left_unanswered_and_the_engine_still_serves(engine):
    engine.send({"type": "ping"})
    assert engine.next(timeout=20) == {"type": "pong"}
    with pytest.raises(queue.Empty):
        engine.lines.get(timeout=0.5)
    print(f"protocol fuzz: {COUNTS['lines']} bad lines, {COUNTS['errors']} error events, 0 crashes")
