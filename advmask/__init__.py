"""advmask: adversarial masking of autoregressive decoder inputs.

``1`` in every mask of this library means "drop the decoder input at this position".

Exported here: the maskers and their output, the embedding wrapper and its adapter
(:func:`mask_input_embeddings`, for any decoder), the selection, the registries of relaxations
and score networks, the gradient reversal and the value-check switch. Building blocks
(:mod:`advmask.budget`, :mod:`advmask.regularizer`, :mod:`advmask.hard_selection`, ...) are
imported from their modules; the sequence-VAE parts live in subpackages
(:mod:`advmask.seqvae.data`, :mod:`advmask.seqvae.models`, :mod:`advmask.seqvae.metrics`,
:mod:`advmask.seqvae.vae`, :mod:`advmask.seqvae.evaluation`).
"""

import importlib
import warnings

from advmask.adapters import mask_input_embeddings, unmask_input_embeddings
from advmask.checks import set_value_checks, value_checks_enabled
from advmask.embedding import MaskedEmbedding, mask_embeddings
from advmask.maskers import AdversarialMasker, UniformMasker, drop_probabilities
from advmask.outputs import MaskerOutput
from advmask.relaxations import RELAXATIONS, register_relaxation
from advmask.reversal import GradientReversal
from advmask.scores import (
    SCORE_NETWORKS,
    LSTMScoreNetwork,
    ScoreNetwork,
    build_score_network,
    register_score_network,
)
from advmask.selection import bottom_k

__version__ = "0.1.0.dev0"

__all__ = [
    "RELAXATIONS",
    "SCORE_NETWORKS",
    "AdversarialMasker",
    "GradientReversal",
    "LSTMScoreNetwork",
    "MaskedEmbedding",
    "MaskerOutput",
    "ScoreNetwork",
    "UniformMasker",
    "bottom_k",
    "build_score_network",
    "drop_probabilities",
    "mask_embeddings",
    "mask_input_embeddings",
    "register_relaxation",
    "register_score_network",
    "set_value_checks",
    "unmask_input_embeddings",
    "value_checks_enabled",
]

# Exported here until 0.1; now imported from their modules (one release with a warning).
_MOVED = {
    "eligible_positions": "advmask.budget",
    "num_to_drop": "advmask.budget",
    "hard_bottom_k": "advmask.hard_selection",
    "gaussian_kl_to_standard": "advmask.regularizer",
    "score_kl": "advmask.regularizer",
    "get_relaxation": "advmask.relaxations",
    "dann_schedule": "advmask.reversal",
    "grad_reverse": "advmask.reversal",
    "GRUScoreNetwork": "advmask.scores",
    "TransformerScoreNetwork": "advmask.scores",
    "straight_through": "advmask.selection",
}


def __getattr__(name: str) -> object:
    if name in _MOVED:
        module = _MOVED[name]
        warnings.warn(
            f"advmask.{name} is deprecated; import it from its module: from {module} import {name}",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(module), name)
    raise AttributeError(f"module 'advmask' has no attribute {name!r}")
