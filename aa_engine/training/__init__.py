"""Training the model in the paper's stages (plus a small-VAE stage): see docs/default_model.md.

config.py      TrainConfig and the default model's small architecture
objectives.py  noising, v-prediction target, loss weights (pure functions)
stages.py      vae / image (stage 1) / motion (stage 2) objectives as modules
trainer.py     the accelerate loop: checkpoints, resume, log, sample grids
ema.py         the weight average (--ema-decay)
sample_latents.py  the model's own final latents, for fitting the decoder to them (--sample-latents)
command.py     the `train` command's flags
"""

from aa_engine.training.command import add_train_arguments, run_train

__all__ = ["add_train_arguments", "run_train"]
