"""Issue 10: `serve` never dies of its input, and SIGINT/SIGTERM end it cleanly.

Each test here failed on 51ddfb4: path fields of the wrong type, deep nesting and invalid UTF-8
under a desktop locale killed the server; SIGINT aborted it (exit -6) and SIGTERM killed it (-15),
neither with a `cancelled` event.
"""

from __future__ import annotations

import io
import json
import signal

import pytest

from raw_engine import RawEngine, tiny_job

# What a desktop's en_US.UTF-8 locale gives Python's stdin (strict UTF-8); this machine may lack
# the locale itself, so the encoding is also set explicitly.
DESKTOP_LOCALE = {"LANG": "en_US.UTF-8", "LC_ALL": "en_US.UTF-8", "PYTHONIOENCODING": "utf-8:strict", "PYTHONUTF8": "0"}

BAD_LINES: list[tuple[str, bytes]] = [
    ("invalid UTF-8", b'{"type": "ping", "x": "\xff\xfe"}'),
    ("a lone continuation byte", b"\x80"),
    ("deep nesting", b"[" * 100_000 + b"]" * 100_000),
    ("deep nesting inside a job", b'{"type": "job", "id": "deep", "reference": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    ("not JSON", b"hello engine"),
    ("a JSON list", b"[1, 2, 3]"),
    ("a JSON string", b'"ping"'),
    ("no type", b'{"id": "x"}'),
    ("a numeric type", b'{"type": 7}'),
    ("an unknown type", b'{"type": "dance"}'),
    ("cancel with a dict id", b'{"type": "cancel", "id": {"a": 1}}'),
    ("cancel with nothing running", b'{"type": "cancel"}'),
]
for name in ("reference", "output", "poses"):
    for label, value in (("int", 5), ("dict", {"a": 1}), ("list of ints", [1, 2]), ("empty string", ""), ("null", None)):
        job = {"type": "job", "id": f"{name}-{label}", "reference": "r.png", "output": "out", "poses": "poses"}
        job[name] = value
        BAD_LINES.append((f"{name} as {label}", json.dumps(job).encode()))
BAD_LINES += [
    ("NUL in output", json.dumps({"type": "job", "id": "nul", "reference": "r.png", "output": "o\x00ut", "poses": "p"}).encode()),
    ("guidance as a string", json.dumps({"type": "job", "id": "g", "reference": "r.png", "output": "o", "poses": "p", "guidance": "3"}).encode()),
    ("guidance NaN", b'{"type": "job", "id": "n", "reference": "r.png", "output": "o", "poses": "p", "guidance": NaN}'),
    ("guidance Infinity", b'{"type": "job", "id": "i", "reference": "r.png", "output": "o", "poses": "p", "guidance": Infinity}'),
    ("seed 2**64", b'{"type": "job", "id": "s", "reference": "r.png", "output": "o", "poses": "p", "seed": 18446744073709551616}'),
    ("steps 2000", b'{"type": "job", "id": "st", "reference": "r.png", "output": "o", "poses": "p", "steps": 2000}'),
    ("fps 0", b'{"type": "job", "id": "f", "reference": "r.png", "output": "o", "poses": "p", "fps": 0}'),
    ("a job without id", b'{"type": "job", "reference": "r.png", "output": "o", "poses": "p"}'),
]


@pytest.fixture(scope="module")
def engine():
    process = RawEngine(env=DESKTOP_LOCALE)
    assert process.next()["type"] == "hello"
    yield process
    process.close()


def test_every_bad_line_gets_exactly_one_error_and_the_engine_keeps_serving(engine):
    for _, line in BAD_LINES:
        engine.send_bytes(line)
    engine.send({"type": "ping"})
    answers = engine.until("pong", timeout=60)[:-1]
    assert len(answers) == len(BAD_LINES), [a.get("message") for a in answers]
    for (name, _), answer in zip(BAD_LINES, answers):
        assert answer["type"] == "error" and answer["code"] == "bad_request", (name, answer)
        assert answer["message"] and answer["hint"], (name, answer)
        assert "Internal" not in answer["message"], (name, answer)
    by_name = dict(zip((n for n, _ in BAD_LINES), answers))
    assert "UTF-8" in by_name["invalid UTF-8"]["message"]
    assert "nested too deeply" in by_name["deep nesting"]["message"]
    assert "nested too deeply" in by_name["deep nesting inside a job"]["message"]
    for name in ("reference", "output", "poses"):
        assert by_name[f"{name} as int"]["field"] == name and by_name[f"{name} as int"]["id"] == f"{name}-int"
    assert by_name["NUL in output"]["field"] == "output"
    for name, field in (("guidance NaN", "guidance"), ("guidance Infinity", "guidance"), ("seed 2**64", "seed"),
                        ("steps 2000", "steps"), ("fps 0", "fps"), ("guidance as a string", "guidance")):
        assert by_name[name]["field"] == field, by_name[name]
    assert "Traceback" not in engine.log


def test_blank_lines_are_ignored(engine):
    for line in (b"", b"   ", b"\t\r"):
        engine.send_bytes(line)
    engine.send({"type": "ping"})
    assert engine.next()["type"] == "pong"


def test_non_ascii_is_read_as_utf8_whatever_the_locale(tmp_path):
    process = RawEngine(env={"LANG": "C", "LC_ALL": "C", "PYTHONIOENCODING": "latin-1", "PYTHONUTF8": "0"})
    try:
        process.next()
        process.send_bytes('{"type": "dance", "id": "café 🎬"}'.encode())
        error = process.next()
        assert error["id"] == "café 🎬" and error["code"] == "bad_request"
    finally:
        assert process.close() == 0


def test_a_job_that_passes_the_checks_but_fails_later_is_an_error_event(engine, tmp_path):
    engine.send(tiny_job("missing-ref", tmp_path / "out", reference=str(tmp_path / "nope.png")))
    error = engine.until("error")[-1]
    assert error["id"] == "missing-ref" and error["code"] == "bad_input" and "does not exist" in error["message"]
    assert not (tmp_path / "out").exists()  # validated before the folder is made
    engine.send({"type": "ping"})
    assert engine.next()["type"] == "pong"


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_cancels_the_running_job_keeps_its_checkpoint_and_exits_0(tmp_path, signum):
    out = tmp_path / "out"
    job = tiny_job("sig", out, frames=4, steps=500)
    process = RawEngine()
    process.next()
    process.send(job)
    while True:
        message = process.next()
        assert message["type"] != "error", message
        if message["type"] == "progress" and message["stage"] == "denoise" and message["step"] >= 2:
            break
    process.signal(signum)
    last = process.until("cancelled", timeout=60)[-1]
    assert last["id"] == "sig"
    assert process.wait(timeout=60) == 0
    assert "Traceback" not in process.log and "terminate called" not in process.log
    assert (out / ".resume" / "state.pt").is_file()

    # A new engine resumes where the signal stopped it.
    again = RawEngine()
    try:
        again.next()
        again.send(job)
        first_step = next(m for m in again.until("progress") + [again.next() for _ in range(3)]
                          if m["type"] == "progress" and m["stage"] == "denoise")
        assert first_step["step"] >= 2
        again.send({"type": "cancel", "id": "sig"})
        again.until("cancelled")
    finally:
        assert again.close() == 0


def test_a_signal_with_no_job_running_exits_0(tmp_path):
    process = RawEngine()
    process.next()
    process.signal(signal.SIGINT)
    assert process.wait(timeout=60) == 0
    assert "Traceback" not in process.log


# -- the session and transport in-process: faults injected --------------------------------------
class _Weights:
    identity = "test"


def _session(sent: list):
    from aa_engine.protocol.session import EngineSession

    return EngineSession(pipe=None, weights=_Weights(), send=sent.append)


def test_a_bug_in_a_handler_is_an_internal_error_and_the_session_goes_on(monkeypatch):
    from aa_engine.jobs import JobSpec

    def broken(message):
        raise KeyError("injected fault")

    monkeypatch.setattr(JobSpec, "from_message", staticmethod(broken))
    sent: list = []
    session = _session(sent)
    assert session.handle_line(b'{"type": "job", "id": "j"}') is True
    assert sent[-1]["type"] == "error" and sent[-1]["code"] == "internal" and sent[-1]["id"] == "j"
    assert "KeyError" in sent[-1]["message"]
    assert session.handle_line('{"type": "ping"}') is True and sent[-1] == {"type": "pong"}
    assert session.handle({"no": "type"}) is True and sent[-1]["code"] == "bad_request"
    assert session.handle(["not", "a", "dict"]) is True and sent[-1]["code"] == "bad_request"


def test_a_client_gone_away_does_not_kill_the_session():
    def send(message):
        raise BrokenPipeError(32, "Broken pipe")

    from aa_engine.protocol.session import EngineSession

    session = EngineSession(pipe=None, weights=_Weights(), send=send)
    assert session.handle_line(b'{"type": "ping"}') is True
    assert session.disconnected


def test_an_over_long_line_is_skipped_without_keeping_it():
    from aa_engine.protocol.stdio import LineTooLong, read_lines

    data = b"short\n" + b"x" * 1000 + b"\n" + b"after\n" + b"z" * 150 + b"\n" + b"\n" + b"y" * 50
    for chunk in (1, 7, 64, 100_000):  # however the bytes arrive
        stream = io.BytesIO(data)
        lines = list(read_lines(lambda n: stream.read(min(n, chunk)), limit=100))
        assert lines[0] == b"short\n" and isinstance(lines[1], LineTooLong) and lines[2] == b"after\n"
        assert isinstance(lines[3], LineTooLong) and lines[4] == b"\n" and lines[5] == b"y" * 50 and len(lines) == 6


# -- animate: the same signals ----------------------------------------------------------------
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_animate_stops_on_a_signal_after_its_step_keeping_its_checkpoint(tmp_path, signum):
    import subprocess
    import sys
    import time

    from raw_engine import EXAMPLES, ROOT

    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "aa_engine", "animate", "--weights", "random-tiny", "--reference",
                                str(EXAMPLES / "reference.png"), "--poses", str(EXAMPLES / "poses"), "--out", str(out),
                                "--width", "24", "--height", "24", "--steps", "500", "--no-video"],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while not (out / ".resume" / "state.pt").is_file():  # written after every denoising step
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1][-2000:]
            time.sleep(0.2)
        process.send_signal(signum)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signum, err[-2000:]
    assert "interrupted" in err and "rerun the same command to resume" in err
    assert "Traceback" not in err and "terminate called" not in err
    assert (out / ".resume" / "state.pt").is_file() and (out / "job.json").is_file()
