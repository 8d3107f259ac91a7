"""Look at a trained sequence VAE: what the adversary drops, what the latent space encodes.

* :mod:`advmask.seqvae.analysis.decoding`: :func:`decode`, greedy and sampled text from latent
  codes.
* :mod:`advmask.seqvae.analysis.saliency`: :func:`token_saliency`, ``P(dropped)`` per word
  (Table 2).
* :mod:`advmask.seqvae.analysis.aggregate`: :func:`drop_by_frequency`, :func:`drop_by_position`
  (Figure 4a).
* :mod:`advmask.seqvae.analysis.latent`: :func:`interpolate`, :func:`neighbourhood`,
  :func:`prior_samples` (Tables 3, 8 and 7).
* :mod:`advmask.seqvae.analysis.studies`: :func:`read_score_log` (Figure 3),
  :func:`rate_ablation` (Figure 2).
* :mod:`advmask.seqvae.analysis.pmi`: :func:`next_word_pmi`, the information each input
  carries about the next word, :func:`sentence_pmi`, about all later words, and its rank
  correlation with the drop probability (:func:`summarize_pmi`; the paper's Eq. 5).
* :mod:`advmask.seqvae.analysis.rank_correlation`: :func:`spearman` and :func:`bootstrap_ci`,
  a percentile interval resampling whole sentences.
* :func:`droppable_inputs` (from :mod:`advmask.seqvae.decoder_inputs`): the inputs a masker
  may drop, the rule the training step uses.
* :mod:`advmask.seqvae.analysis.render`: coloured terminal text and an HTML page of saliency.
* :mod:`advmask.seqvae.analysis.plots`: the figures (matplotlib, an optional extra, imported
  lazily).

``recipes/analyze.py`` runs each analysis over a run directory of ``recipes/seqvae_awd.py``.
"""

from advmask.seqvae.analysis.aggregate import DropProfile, drop_by_frequency, drop_by_position
from advmask.seqvae.analysis.decoding import STEPPERS, Decoded, decode
from advmask.seqvae.analysis.latent import (
    LatentWalk,
    interpolate,
    neighbourhood,
    posterior_means,
    prior_samples,
)
from advmask.seqvae.analysis.pmi import (
    PMIBin,
    PMISummary,
    next_word_pmi,
    sentence_pmi,
    summarize_pmi,
)
from advmask.seqvae.analysis.rank_correlation import bootstrap_ci, spearman
from advmask.seqvae.analysis.render import saliency_html, saliency_text
from advmask.seqvae.analysis.saliency import Saliency, token_saliency
from advmask.seqvae.analysis.studies import AblationPoint, rate_ablation, read_score_log
from advmask.seqvae.decoder_inputs import droppable_inputs

__all__ = [
    "STEPPERS",
    "AblationPoint",
    "Decoded",
    "DropProfile",
    "LatentWalk",
    "PMIBin",
    "PMISummary",
    "Saliency",
    "bootstrap_ci",
    "decode",
    "drop_by_frequency",
    "drop_by_position",
    "droppable_inputs",
    "interpolate",
    "neighbourhood",
    "next_word_pmi",
    "posterior_means",
    "prior_samples",
    "rate_ablation",
    "read_score_log",
    "saliency_html",
    "saliency_text",
    "sentence_pmi",
    "spearman",
    "summarize_pmi",
    "token_saliency",
]
