import os

import torch
from hypothesis import HealthCheck, settings

# Derandomised and bounded so that CI is reproducible and fits its time budget; set
# HYPOTHESIS_PROFILE=dev locally for fresh random examples.
settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

torch.set_num_threads(min(2, torch.get_num_threads()))
