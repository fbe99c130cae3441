import pytest
import torch

from aa_engine.errors import WeightsError
from aa_engine.weights import load_model, save_checkpoint, save_moore_layout


def _equal_states(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_random_tiny_is_the_same_every_time():
    a, _ = load_model("random-tiny")
    b, _ = load_model("random-tiny")
    assert _equal_states(a, b)


def test_our_checkpoint_round_trips(tmp_path, tiny_model):
    save_checkpoint(tiny_model, tmp_path / "ckpt")
    loaded, info = load_model(str(tmp_path / "ckpt"))
    assert info.kind == "checkpoint"
    assert _equal_states(tiny_model, loaded)


def test_a_checkpoint_with_an_unknown_clip_resize_is_refused(tmp_path, tiny_model):
    import json

    save_checkpoint(tiny_model, tmp_path / "ckpt")
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert config["clip_resize"] == "squash"
    config["clip_resize"] = "Squash"
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps(config))
    with pytest.raises(WeightsError, match="'clip_resize' is 'Squash'"):
        load_model(str(tmp_path / "ckpt"))


def test_moore_layout_loads_with_zero_missing_or_unexpected_keys(tmp_path, tiny_model):
    save_moore_layout(tiny_model, tmp_path / "release" / "pretrained_weights")
    loaded, info = load_model(str(tmp_path / "release"))
    assert info.kind == "moore"
    assert _equal_states(tiny_model, loaded)  # every tensor came from the files
    motion = torch.load(tmp_path / "release/pretrained_weights/motion_module.pth", weights_only=True)
    assert any(k.endswith("pos_encoder.pe") for k in motion)


def test_moore_files_may_be_safetensors(tmp_path, tiny_model):
    from safetensors.torch import save_file

    root = save_moore_layout(tiny_model, tmp_path / "pretrained_weights")
    state = torch.load(root / "pose_guider.pth", weights_only=True)
    (root / "pose_guider.pth").unlink()
    save_file(state, str(root / "pose_guider.safetensors"))
    loaded, _ = load_model(str(root))
    assert _equal_states(tiny_model.pose_guider, loaded.pose_guider)


@pytest.mark.parametrize("filename", ["motion_module.pth", "denoising_unet.pth", "reference_unet.pth", "pose_guider.pth"])
def test_a_removed_key_is_refused_by_name(tmp_path, tiny_model, filename):
    root = save_moore_layout(tiny_model, tmp_path / "pretrained_weights")
    state = torch.load(root / filename, weights_only=True)
    removed = sorted(state)[len(state) // 2]
    del state[removed]
    torch.save(state, root / filename)
    with pytest.raises(WeightsError) as err:
        load_model(str(root))
    assert removed in err.value.message
    assert "missing" in err.value.message


def test_an_unexpected_key_is_refused_by_name(tmp_path, tiny_model):
    root = save_moore_layout(tiny_model, tmp_path / "pretrained_weights")
    state = torch.load(root / "pose_guider.pth", weights_only=True)
    state["blocks.9.weight"] = torch.zeros(1)
    torch.save(state, root / "pose_guider.pth")
    with pytest.raises(WeightsError, match="unexpected key.*blocks.9.weight"):
        load_model(str(root))


def test_a_missing_file_is_named(tmp_path, tiny_model):
    root = save_moore_layout(tiny_model, tmp_path / "pretrained_weights")
    (root / "motion_module.pth").unlink()
    with pytest.raises(WeightsError, match="incomplete: missing motion_module.pth"):
        load_model(str(root))


class ArbitraryObject:
    """Unpickling this would run code from the file: weights_only loading must refuse it."""


def test_pickles_that_are_not_plain_tensors_are_refused(tmp_path, tiny_model):
    root = save_moore_layout(tiny_model, tmp_path / "pretrained_weights")
    torch.save({"weights": ArbitraryObject()}, root / "pose_guider.pth")
    with pytest.raises(WeightsError, match="Cannot read"):
        load_model(str(root))


def test_unknown_folder_and_missing_path_have_clear_errors(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        load_model(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(WeightsError, match="neither one of our checkpoints"):
        load_model(str(tmp_path / "empty"))
