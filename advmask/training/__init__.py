"""Recipe-agnostic training infrastructure: nothing here knows about VAEs or masking.

* :mod:`~advmask.training.state`: a run folder (:class:`~advmask.training.state.RunFolder`:
  settings, resume checks, lock, checkpoint) and where a run stands
  (:class:`~advmask.training.state.Progression`).
* :mod:`~advmask.training.loop`: :func:`~advmask.training.loop.fit`, the epoch loop (steps, log
  rows, checkpoints, validation, early stopping, resume) with its
  :class:`~advmask.training.loop.Budget`.
* :mod:`~advmask.training.logs`, :mod:`~advmask.training.signals`,
  :mod:`~advmask.training.divergence`: running means without host syncs, CSV and progress
  lines; Ctrl-C/SIGTERM as a stop request; the non-finite-loss guard.
* :mod:`~advmask.training.checkpoint`: atomic, checksummed files; a lock per run folder.
* :mod:`~advmask.training.cli`: flags generated from a dataclass (and presets), one-line errors.
* :mod:`~advmask.training.distributed`, :mod:`~advmask.training.optim`: torchrun/DDP (shards
  of one global batch, reductions) and fused Adam.
* :mod:`~advmask.training.processes`: independent runs side by side, each in a process of its own.
"""
