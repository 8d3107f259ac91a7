"""Sequence VAEs with word dropout: the experiment machinery around the masking core.

The model (:class:`SequenceVAE`: LSTM encoder, Gaussian ``z``, an autoregressive decoder whose
inputs a masker hides), its construction from a flat specification (:class:`ModelSpec`,
:func:`build_sequence_vae`) and the evaluator every run is reported with (:func:`evaluate`).
Subpackages: :mod:`~advmask.seqvae.data` (corpora, vocabularies, batches),
:mod:`~advmask.seqvae.models` (encoder and decoders), :mod:`~advmask.seqvae.analysis`
(what the adversary learned); modules :mod:`~advmask.seqvae.metrics` (estimators),
:mod:`~advmask.seqvae.schedules` (KL weights), :mod:`~advmask.seqvae.baselines` (the KL
baselines), :mod:`~advmask.seqvae.probe` and :mod:`~advmask.seqvae.report` (tables).
"""

from advmask.seqvae.evaluation import EvaluationResult, evaluate
from advmask.seqvae.factory import (
    ModelSpec,
    build_sequence_vae,
    load_sequence_vae,
    save_sequence_vae,
)
from advmask.seqvae.vae import SequenceVAE

__all__ = [
    "EvaluationResult",
    "ModelSpec",
    "SequenceVAE",
    "build_sequence_vae",
    "evaluate",
    "load_sequence_vae",
    "save_sequence_vae",
]
