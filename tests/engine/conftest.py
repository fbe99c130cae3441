import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture
def tiny_model():
    from aa_engine.weights import load_model

    model, _ = load_model("random-tiny")
    return model


@pytest.fixture
def reference_image() -> Image.Image:
    return Image.open(EXAMPLES / "reference.png").convert("RGB")


@pytest.fixture
def pose_images() -> list[Image.Image]:
    return [Image.open(p).convert("RGB") for p in sorted((EXAMPLES / "poses").glob("*.png"))]


def random_image(seed: int, size=(64, 64)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


@pytest.fixture
def engine_python() -> str:
    return sys.executable
