"""The denoiser probe: the x0 implied by the model's v, per timestep."""

import math

import pytest

from aa_engine.evaluation.denoiser_probe import main, probe
from aa_engine.weights import load_model


def test_probe_gives_a_row_per_timestep_and_near_clean_inputs_give_near_x0():
    model = load_model("random-tiny")[0].eval()
    rows = probe(model, "flat", 64, 64, clips=2, timesteps=(5, 999))
    assert [r["t"] for r in rows] == [5, 999] and all(math.isfinite(v) for r in rows for v in r.values())
    # at t = 5 the input is x0 plus a little noise, so even a random v implies an x0 close to it;
    # at zero SNR the implied x0 is -v: a random model is far off
    assert rows[0]["x0_rmse"] < 0.5 * rows[1]["x0_rmse"]


def test_checkpoint_of_a_run_without_model_config_needs_its_vae_config(capsys, tmp_path):
    checkpoint = tmp_path / "run" / "checkpoints" / "step_000001" / "model.safetensors"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"")  # there, but its run folder has no model_config.json
    with pytest.raises(SystemExit) as exit_info:
        main(["--checkpoint", str(checkpoint)])
    error = capsys.readouterr().err
    assert exit_info.value.code == 2 and "model_config.json" in error and "--vae-config" in error


def test_sampling_drift_scores_each_step_count_against_the_vae_round_trip(capsys):
    from aa_engine.evaluation.denoiser_probe import sampling_drift

    model = load_model("random-tiny")[0].eval()
    drift = sampling_drift(model, "flat", 64, 64, clips=1, step_counts=(1, 2))
    assert list(drift) == [1, 2] and all(-1 <= v <= 1 for v in drift.values())
    main(["--weights", "random-tiny", "--data", "flat", "--width", "64", "--height", "64", "--clips", "1", "--drift"])
    assert "| 20 |" in capsys.readouterr().out
