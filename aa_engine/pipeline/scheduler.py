"""The samplers: the released model's DDIM, and diffusers' multistep solvers on the same schedule.

The model was trained with v-prediction on linear betas 0.00085..0.012 rescaled to zero terminal
SNR, and is sampled with trailing timestep spacing (the first step at t=999, pure noise). Every
sampler here gets exactly that schedule, and ends on the clean sample (t=0):
  ddim      the release's (eta 0; set_alpha_to_one: the step after the last timestep is alpha=1)
  dpm++2m   DPM-Solver++ (2nd-order multistep), final sigma 0, first order on the last step
  unipc     UniPC (2nd order, B(h) = bh2), final sigma 0
  euler     Euler (k-diffusion's sampler on the same sigmas), final sigma 0
With zero terminal SNR the first sigma is infinite; diffusers' multistep solvers and Euler clip the
last alphas_cumprod to 2^-24 (sigma 4096) for that, so their first step differs slightly from
DDIM's. tests/engine/test_samplers.py checks that each lands on the clean sample with an exact
denoiser.
"""

from __future__ import annotations

from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler, UniPCMultistepScheduler

SCHEDULE = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "linear",
    "steps_offset": 1,
    "prediction_type": "v_prediction",
    "rescale_betas_zero_snr": True,
    "timestep_spacing": "trailing",
}
SCHEDULER_CONFIG = {**SCHEDULE, "clip_sample": False, "set_alpha_to_one": True}  # the release's DDIM

SAMPLERS = {
    "ddim": (DDIMScheduler, {"clip_sample": False, "set_alpha_to_one": True}),
    "dpm++2m": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2, "final_sigmas_type": "zero",
                                              "lower_order_final": True}),
    "unipc": (UniPCMultistepScheduler, {"solver_order": 2, "predict_x0": True, "solver_type": "bh2", "final_sigmas_type": "zero",
                                        "lower_order_final": True}),
    "euler": (EulerDiscreteScheduler, {"final_sigmas_type": "zero"}),
}
# Samplers whose step uses the model outputs of earlier steps (resuming a job starts their history afresh).
MULTISTEP = ("dpm++2m", "unipc")


def make_scheduler(sampler: str = "ddim"):
    """A fresh diffusers scheduler for `sampler` (a name of SAMPLERS) on the model's schedule."""
    cls, extra = SAMPLERS[sampler]
    return cls(**SCHEDULE, **extra)


def timesteps_for(sampler: str, steps: int):
    """The timesteps `sampler` visits in `steps` steps, from a fresh scheduler (a pure function of
    its arguments: the pipeline's running scheduler is never touched to answer it)."""
    key = (sampler, steps)
    if key not in _TIMESTEPS:
        scheduler = make_scheduler(sampler)
        scheduler.set_timesteps(steps, device="cpu")
        _TIMESTEPS[key] = scheduler.timesteps.clone()
    return _TIMESTEPS[key]


_TIMESTEPS: dict = {}
