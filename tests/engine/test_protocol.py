"""The `serve` protocol through a real engine subprocess (docs/protocol.md).

The module shares one engine; every test reads only the events of what it sent, so the tests pass
in any order (the hello is read by the fixture)."""

import pytest
from PIL import Image

from aa_contract.protocol import PROTOCOL_VERSION
from conftest import EXAMPLES
from engine_process import EngineProcess

pytestmark = pytest.mark.slow


def _job(job_id, out, **knobs):
    poses = sorted(str(p) for p in (EXAMPLES / "poses").glob("*.png"))[:10]
    return {"type": "job", "id": job_id, "reference": str(EXAMPLES / "reference.png"), "poses": poses,
            "output": str(out), "width": 64, "height": 64, "steps": 2, "video": False, **knobs}


@pytest.fixture(scope="module")
def engine():
    process = EngineProcess("--weights", "random-tiny")
    process.hello = process.next()
    yield process
    process.close()


def test_hello_comes_first_and_describes_the_engine(engine):
    hello = engine.hello
    assert hello["type"] == "hello" and hello["protocol"] == PROTOCOL_VERSION
    assert hello["device"] == "cpu" and hello["dtype"] == "float32"
    assert hello["weights"]["kind"] == "random-tiny"
    assert hello["native_size"] == [64, 64] and hello["max_context_frames"] == 32


def test_accepted_echoes_the_settings_it_runs_with_and_warns_of_unknown_fields(engine, tmp_path):
    job = _job("echo", tmp_path / "echo", steps=1, sharpness=2)
    del job["width"], job["height"]  # the model's native size is filled in
    engine.send(job)
    messages = engine.until("done")
    accepted = messages[0]
    assert accepted["type"] == "accepted"
    from aa_contract import settings

    assert accepted["settings"] == {**settings.defaults(), "width": 64, "height": 64, "steps": 1}
    assert accepted["settings"]["guidance"] == 3.5 and accepted["settings"]["sampler"] == "ddim"
    assert len(accepted["warnings"]) == 1 and "sharpness" in accepted["warnings"][0]


def test_job_gives_progress_frames_and_done(engine, tmp_path):
    engine.send(_job("one", tmp_path / "one"))
    messages = engine.until("done")
    kinds = [m["type"] for m in messages]
    assert kinds[0] == "accepted" and messages[0]["frames"] == 10
    denoise = [m for m in messages if m["type"] == "progress" and m["stage"] == "denoise"]
    assert [m["step"] for m in denoise][-2:] == [1, 2] and denoise[-1]["total"] == 2
    frames = [m for m in messages if m["type"] == "frame"]
    assert [m["index"] for m in frames] == list(range(1, 11))
    for m in frames:
        assert Image.open(m["path"]).size == (64, 64)
    assert all(m["id"] == "one" for m in messages)


def test_garbage_lines_get_errors_and_the_engine_keeps_serving(engine):
    engine.send("this is not json")
    error = engine.next()
    assert error["type"] == "error" and error["code"] == "bad_request" and error["id"] is None
    engine.send({"type": "dance"})
    assert engine.next()["code"] == "bad_request"
    engine.send({"type": "job", "id": "x"})
    error = engine.next()
    assert error["id"] == "x" and "reference" in error["message"] and error["field"] == "reference"
    engine.send({"type": "ping"})
    assert engine.next()["type"] == "pong"


def test_invalid_settings_are_refused_with_a_hint(engine, tmp_path):
    engine.send(_job("bad", tmp_path / "bad", width=60))
    error = engine.until("error")[-1]
    assert error["code"] == "bad_request" and "multiple of 8" in error["message"] and error["hint"]


def test_cancel_stops_the_job_within_one_step(engine, tmp_path):
    engine.send(_job("long", tmp_path / "long", steps=400))
    engine.until("accepted")
    while True:
        message = engine.next()
        if message["type"] == "progress" and message["stage"] == "denoise" and message["step"] >= 1:
            break
    engine.send({"type": "cancel", "id": "long"})
    after = engine.until("cancelled")
    steps_after_cancel = [m for m in after if m["type"] == "progress" and m["stage"] == "denoise"]
    assert len(steps_after_cancel) <= 1
    assert after[-1]["id"] == "long"
    assert not list((tmp_path / "long").glob("frame_*.png"))


def test_second_job_runs_without_reloading_and_the_stream_is_pure_protocol(engine, tmp_path):
    engine.send(_job("two", tmp_path / "two", seed=3))
    messages = engine.until("done")
    assert not [m for m in messages if m["type"] == "hello"]  # weights were not loaded again
    assert len([m for m in messages if m["type"] == "frame"]) == 10


def test_shutdown_answers_bye_and_exits_0():
    process = EngineProcess("--weights", "random-tiny")
    try:
        assert process.next()["type"] == "hello"
        process.send({"type": "shutdown"})
        assert process.until("bye")[-1]["type"] == "bye"
        assert process.proc.wait(timeout=30) == 0
    finally:
        process.close()


def test_bad_weights_are_reported_as_a_protocol_error(tmp_path):
    process = EngineProcess("--weights", str(tmp_path / "missing"))
    error = process.next()
    assert error["type"] == "error" and error["code"] == "weights" and "does not exist" in error["message"]
    assert process.proc.wait(timeout=60) == 2
