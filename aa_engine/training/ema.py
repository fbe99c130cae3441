"""An exponential moving average of the trained weights (`train --ema-decay`).

Diffusion models are usually sampled with an average of their recent weights rather than the last
step's: at a constant learning rate the last step's weights carry that step's noise. The average
covers the trained parameters only (the frozen parts do not move), in float32, and its rate warms
up as in diffusers' EMAModel: min(decay, (1 + n) / (10 + n)) after n updates, so an average started
from random weights forgets them quickly.

Each checkpoint folder gets `ema.safetensors`: the whole model's state in the checkpoint's own key
format (`model.<part>....`, as accelerate saves `model.safetensors`) with the trained parameters
averaged. `evaluate --checkpoint RUN/checkpoints/step_N/ema.safetensors` scores it like the
checkpoint itself. The run's `model/` holds the averaged weights.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

EMA_FILE = "ema.safetensors"


class WeightAverage:
    def __init__(self, model: nn.Module, params: list[nn.Parameter], decay: float):
        names = {id(p): name for name, p in model.named_parameters()}
        self.model = model
        self.decay = decay
        self.params = params
        self.names = [names[id(p)] for p in params]
        self.shadow = [p.detach().float().clone() for p in params]
        self.updates = 0

    def rate(self) -> float:
        """The weight of the old average in the next update."""
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self) -> None:
        weight = 1.0 - self.rate()
        for average, param in zip(self.shadow, self.params):
            average.lerp_(param.detach().float(), weight)
        self.updates += 1

    @torch.no_grad()
    def copy_to_model(self) -> None:
        """Put the averaged weights into the model (the end of a run: model/ holds them)."""
        for average, param in zip(self.shadow, self.params):
            param.copy_(average)

    @contextmanager
    def applied(self):
        """The averaged weights in the model for the duration (sample grids), the trained ones after."""
        trained = [p.detach().clone() for p in self.params]
        self.copy_to_model()
        try:
            yield
        finally:
            with torch.no_grad():
                for saved, param in zip(trained, self.params):
                    param.copy_(saved)

    def save(self, folder: Path) -> Path:
        state = {f"model.{name}": value.detach().cpu().contiguous() for name, value in self.model.state_dict().items()}
        for name, average in zip(self.names, self.shadow):
            state[f"model.{name}"] = average.detach().cpu().to(state[f"model.{name}"].dtype).contiguous()
        path = Path(folder) / EMA_FILE
        save_file(state, str(path), metadata={"updates": str(self.updates), "decay": repr(self.decay)})
        return path

    def load(self, folder: Path) -> bool:
        """The average saved in a checkpoint folder; False if it has none (then it starts from the weights as they are)."""
        path = Path(folder) / EMA_FILE
        if not path.is_file():
            return False
        with safe_open(str(path), "pt") as f:
            for i, name in enumerate(self.names):
                self.shadow[i] = f.get_tensor(f"model.{name}").float().to(self.shadow[i].device)
            self.updates = int(f.metadata()["updates"])
        return True
