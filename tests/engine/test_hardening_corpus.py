"""Issue 10: the checked-in corpus of bad inputs (tests/data/bad_inputs/, see make_corpus.py there),
run against `serve`, `animate` and `info`. Every case must be handled cleanly: an `error` event
(serve) or exit status 2 with an `error:` and a `hint:` line (the command line), a message that
names the problem, and never a traceback. A refused job leaves no output folder behind.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import EXAMPLES, ROOT
from raw_engine import RawEngine

pytestmark = pytest.mark.slow

CORPUS = ROOT / "tests" / "data" / "bad_inputs"
LINES = sorted((CORPUS / "lines").glob("*.line"))
JOBS = sorted((CORPUS / "jobs").glob("*.json"))
ARGS = sorted((CORPUS / "args").glob("*.json"))
WEIGHTS = sorted(p for p in (CORPUS / "weights").iterdir() if p.is_dir())
MARKER = Path("/tmp/aa-engine-malicious-pickle-ran")


def _fill(value, out: Path):
    """The corpus' placeholders: {data} (the corpus), {examples}, {out} (a fresh output folder)."""
    if isinstance(value, str):
        return value.replace("{data}", str(CORPUS)).replace("{examples}", str(EXAMPLES)).replace("{out}", str(out))
    if isinstance(value, list):
        return [_fill(v, out) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, out) for k, v in value.items()}
    return value


def test_the_corpus_is_there():
    assert len(LINES) >= 20 and len(JOBS) >= 40 and len(ARGS) >= 20 and len(WEIGHTS) >= 30
    assert (CORPUS / "images" / "decompression_bomb.png").stat().st_size < 1000  # tiny file, huge claimed size


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    process = RawEngine(cwd=tmp_path_factory.mktemp("corpus_cwd"))
    assert process.next()["type"] == "hello"
    yield process
    assert process.close() == 0
    assert "Traceback" not in process.log, process.log[-3000:]


@pytest.mark.parametrize("case", LINES, ids=[p.stem for p in LINES])
def test_serve_answers_each_bad_line_with_one_error(engine, case):
    engine.send_bytes(case.read_bytes())
    engine.send({"type": "ping"})
    answers = engine.until("pong", timeout=60)[:-1]
    assert len(answers) == 1, answers
    assert answers[0]["type"] == "error" and answers[0]["code"] == "bad_request", answers[0]
    assert answers[0]["message"] and answers[0]["hint"]


@pytest.mark.parametrize("case", JOBS, ids=[p.stem for p in JOBS])
def test_serve_refuses_each_bad_job_naming_the_problem(engine, case, tmp_path):
    data = json.loads(case.read_text())
    out = tmp_path / "out"
    engine.send(_fill(data["job"], out))
    messages = engine.until("error", timeout=60)
    assert [m["type"] for m in messages] == ["error"], messages  # refused before `accepted`
    error, expect = messages[-1], data["expect"]
    assert error["code"] == expect["code"], error
    if "field" in expect:
        assert error.get("field") == expect["field"], error
    if "message" in expect:
        assert expect["message"] in error["message"], error
    assert error["hint"], error
    assert not out.exists(), "a refused job left its output folder"
    assert not MARKER.exists()


def _animate_args(case_args: list, out: Path) -> list[str]:
    """The defaults (a valid random-tiny job), with the case's flags replacing theirs (None drops one)."""
    base = {"--reference": str(EXAMPLES / "reference.png"), "--poses": str(EXAMPLES / "poses"), "--out": str(out),
            "--weights": "random-tiny", "--width": "24", "--height": "24", "--steps": "1"}
    extra: list[str] = []
    for flag, value in zip(case_args[::2], case_args[1::2]):
        if value is None:
            base.pop(flag, None)
        elif flag in base:
            base[flag] = _fill(value, out)
        else:
            extra += [flag, _fill(value, out)]
    return ["animate", "--no-video", *[x for kv in base.items() for x in kv], *extra]


def _main(argv: list[str], capsys) -> tuple[int, str]:
    from aa_engine.cli import main

    status = main(argv)
    captured = capsys.readouterr()
    return status, captured.err


def _assert_clean(status: int, err: str, expect: str) -> None:
    assert status == 2, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith(("error:", "hint:"))]
    assert lines and lines[0].startswith("error:") and expect in lines[0], err
    assert any(line.startswith("hint:") for line in lines), err


@pytest.mark.parametrize("case", ARGS, ids=[p.stem for p in ARGS])
def test_animate_refuses_each_bad_command_line_in_two_lines(case, tmp_path, capsys):
    data = json.loads(case.read_text())
    out = tmp_path / "out"
    status, err = _main(_animate_args(data["args"], out), capsys)
    _assert_clean(status, err, data["expect"])
    assert not out.exists() or case.stem == "output_is_a_file"


@pytest.mark.parametrize("folder", WEIGHTS, ids=[p.name for p in WEIGHTS])
def test_info_and_animate_refuse_each_bad_weights_folder_naming_file_and_field(folder, tmp_path, capsys):
    expect = (folder / "expect.txt").read_text().strip()
    status, err = _main(["info", "--weights", str(folder)], capsys)
    _assert_clean(status, err, expect)
    assert "config.json" in err
    status, err = _main(_animate_args(["--weights", str(folder)], tmp_path / "out"), capsys)
    _assert_clean(status, err, expect)
    assert not (tmp_path / "out").exists()


def _serve_once(weights: Path) -> tuple[int, list[dict], str]:
    process = subprocess.run([sys.executable, "-m", "aa_engine", "serve", "--weights", str(weights)], cwd=ROOT,
                             stdin=subprocess.DEVNULL, capture_output=True, timeout=300,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    messages = [json.loads(line) for line in process.stdout.decode().splitlines()]
    return process.returncode, messages, process.stderr.decode("utf-8", "replace")


# One folder of each kind through `serve` (each is a process start; every folder goes through
# info and animate above, and serve reports the same WeightsError).
# Four kinds (syntax, a value, a block type, the size bound) keep CI within its budget; all 37 go
# through the same WeightsError path in-process above.
SERVE_WEIGHTS = ["config_is_not_json", "negative_channels", "unknown_down_block", "parameter_count_beyond_the_limit"]


def test_serve_answers_bad_weights_folders_with_an_error_event_and_exit_2():
    folders = [CORPUS / "weights" / name for name in SERVE_WEIGHTS]
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(_serve_once, folders))
    for folder, (status, messages, err) in zip(folders, results):
        expect = (folder / "expect.txt").read_text().strip()
        assert status == 2, (folder.name, status, err[-2000:])
        assert len(messages) == 1 and messages[0]["type"] == "error" and messages[0]["code"] == "weights", (folder.name, messages)
        assert expect in messages[0]["message"] and "config.json" in messages[0]["message"], (folder.name, messages)
        assert "Traceback" not in err, (folder.name, err[-2000:])


# -- a release folder with malicious pickles ---------------------------------------------------
@pytest.fixture(scope="module")
def release(tmp_path_factory):
    from aa_engine.weights import load_model, save_moore_layout

    model, _ = load_model("random-tiny")
    return save_moore_layout(model, tmp_path_factory.mktemp("release") / "pretrained_weights")


def _poisoned(release: Path, tmp_path: Path, relative: str, drop: str | None = None) -> Path:
    root = tmp_path / "pretrained_weights"
    shutil.copytree(release, root)
    if drop:
        (root / drop).unlink()
    shutil.copyfile(CORPUS / "malicious.pkl", root / relative)
    return root


POISONS = {
    "pose_guider_pth": ("pose_guider.pth", None, "pose_guider.pth"),
    "denoising_unet_pth": ("denoising_unet.pth", None, "denoising_unet.pth"),
    "vae_bin": ("sd-vae-ft-mse/diffusion_pytorch_model.bin", "sd-vae-ft-mse/diffusion_pytorch_model.safetensors", "sd-vae-ft-mse"),
    "clip_bin": ("image_encoder/pytorch_model.bin", "image_encoder/model.safetensors", "image_encoder"),
}


@pytest.mark.parametrize("poison", sorted(POISONS))
def test_malicious_pickles_in_a_release_are_refused_without_running(poison, release, tmp_path):
    relative, drop, named = POISONS[poison]
    MARKER.unlink(missing_ok=True)
    root = _poisoned(release, tmp_path, relative, drop)
    # A real process: diffusers/transformers bind their log handlers to the stderr of the moment,
    # which pytest's capture would swap under them in-process.
    process = subprocess.run([sys.executable, "-m", "aa_engine", "info", "--weights", str(root)], cwd=ROOT,
                             capture_output=True, text=True, timeout=300)
    _assert_clean(process.returncode, process.stderr, named)
    assert not MARKER.exists(), "the pickle's code ran"
    status, messages, log = _serve_once(root)
    assert status == 2 and [m["type"] for m in messages] == ["error"] and messages[0]["code"] == "weights", (messages, log[-2000:])
    assert named in messages[0]["message"] and "Traceback" not in log
    assert not MARKER.exists(), "the pickle's code ran"


def test_a_bad_input_as_a_real_process_exits_2_without_a_traceback(tmp_path):
    for argv in (_animate_args(["--steps", "2000"], tmp_path / "a"),
                 _animate_args(["--reference", str(CORPUS / "images" / "decompression_bomb.png")], tmp_path / "b"),
                 ["info", "--weights", str(CORPUS / "weights" / "negative_channels")]):
        process = subprocess.run([sys.executable, "-m", "aa_engine", *argv], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert process.returncode == 2, process.stderr
        assert "Traceback" not in process.stderr and "error:" in process.stderr and "hint:" in process.stderr
