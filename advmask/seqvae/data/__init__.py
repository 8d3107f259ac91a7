"""Corpora, vocabularies and padded batches in the ``[BOS, w_1..w_L, EOS, PAD..]`` layout.

* :mod:`advmask.seqvae.data.vocab`: special ids (PAD 0, BOS 1, EOS 2, UNK 3) and
  :class:`Vocabulary`.
* :mod:`advmask.seqvae.data.corpus`: :func:`load_corpus` reads a ``train/valid/test.txt`` folder;
  :func:`fingerprint` identifies the encoded splits.
* :mod:`advmask.seqvae.data.batching`: :class:`Batch`, :func:`collate`, :func:`make_batches`
  (length buckets, shuffling, sharding across ranks).
* :mod:`advmask.seqvae.data.synthetic`: :func:`make_synthetic_corpus`, sentences with known latent
  factors (topic, style).
"""

from advmask.seqvae.data.batching import Batch, collate, epoch_batches, make_batches
from advmask.seqvae.data.corpus import Corpus, fingerprint, load_corpus
from advmask.seqvae.data.synthetic import SyntheticCorpus, make_synthetic_corpus
from advmask.seqvae.data.vocab import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Vocabulary

__all__ = [
    "BOS_ID",
    "EOS_ID",
    "PAD_ID",
    "UNK_ID",
    "Batch",
    "Corpus",
    "SyntheticCorpus",
    "Vocabulary",
    "collate",
    "epoch_batches",
    "fingerprint",
    "load_corpus",
    "make_batches",
    "make_synthetic_corpus",
]
