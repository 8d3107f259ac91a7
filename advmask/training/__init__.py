"""Recipe-agnostic training infrastructure: nothing here knows about VAEs or masking.

:mod:`~advmask.training.checkpoint` (atomic, checksummed files; a lock per run folder),
:mod:`~advmask.training.cli` (flags generated from a dataclass, one-line errors),
:mod:`~advmask.training.distributed` (torchrun/DDP: shards of one global batch, reductions),
:mod:`~advmask.training.optim` (fused Adam where the device has it).
"""
