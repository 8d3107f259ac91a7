"""Checks of a run's settings that span several flags, made before anything runs.

``recipes/seqvae_awd.py``'s flags are checked one by one when they are parsed (ranges and
choices, :mod:`advmask.training.cli`); what depends on several of them, or on the machine and
the data, is checked here. Each check raises a :class:`SettingError` whose ``setting`` names
the setting to change, so that a recipe can say ``argument --that-flag: ...``
(:func:`advmask.training.cli.flag_errors`).

``settings`` is anything with the recipe's attributes (its config dataclass), as for
:meth:`~advmask.seqvae.baselines.BaselineSettings.of`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from advmask.relaxations import parse_relaxation_options
from advmask.seqvae import baselines
from advmask.seqvae.data import epoch_batches
from advmask.seqvae.factory import ModelSpec
from advmask.training.cli import folder_problem
from advmask.training.distributed import check_device

__all__ = [
    "GRID_SETTINGS",
    "SettingError",
    "check_schedules",
    "check_settings",
    "corpus_options",
    "model_spec",
]

GRID_SETTINGS = ("dropout", "seed", "rate", "kl_weight")
"""The settings that list the runs of a grid (a value given twice would be one run twice)."""


class SettingError(ValueError):
    """A value that cannot make a run; ``setting`` names the setting to change."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(message)
        self.setting = setting


def check_settings(settings: Any) -> None:
    """Refuse settings that cannot make a run: the decoder's options, a grid point twice, a
    device this machine lacks, a relaxation's options, a baseline's settings, an ``out``
    folder that cannot be written.

    Raises:
        SettingError: naming the setting.

    Example:
        >>> from types import SimpleNamespace
        >>> settings = SimpleNamespace(decoder="transformer", decoder_init="pytorch")
        >>> try:
        ...     check_settings(settings)
        ... except SettingError as error:
        ...     print(error.setting)
        decoder_init
    """
    if settings.decoder == "transformer" and settings.decoder_init != "authors":
        raise SettingError(
            "decoder_init",
            "applies to the LSTM decoders (the Transformer keeps GPT-2's initialisation), "
            f"got {settings.decoder_init!r}",
        )
    if settings.decoder == "transformer" and settings.hidden_size % settings.transformer_heads:
        raise SettingError(
            "transformer_heads",
            f"must divide hidden_size {settings.hidden_size}, got {settings.transformer_heads}",
        )
    for name in GRID_SETTINGS:
        values: Sequence[Any] = getattr(settings, name)
        if repeated := sorted({v for v in values if values.count(v) > 1}):
            raise SettingError(name, f"{repeated[0]} is given twice")
    _as_setting("device", check_device, settings.device)
    _as_setting(
        "relaxation_options",
        parse_relaxation_options,
        settings.relaxation,
        settings.relaxation_options,
    )
    # Its span in steps is checked once the data is read (check_schedules).
    _as_setting("baseline", baselines.check_baseline, settings.baseline, settings)
    if problem := folder_problem(Path(settings.out)):
        raise SettingError("out", problem)


def check_schedules(settings: Any, train: Sequence[Sequence[int]], world_size: int = 1) -> None:
    """Refuse a baseline whose schedule does not fit the steps of a run, for every seed.

    Args:
        settings: with ``baseline``, its settings, ``seed``, ``epochs`` and ``batch_size``.
        train: the training sequences.
        world_size: processes sharing each global batch of ``batch_size * world_size`` rows.

    Raises:
        SettingError: naming the setting (``kl_cycles`` for more cycles than steps).
    """
    for seed in settings.seed:
        global_size = settings.batch_size * world_size
        steps = len(epoch_batches(train, global_size, seed, 0, world_size))
        try:
            baselines.check_schedule(settings.baseline, settings, settings.epochs * steps, steps)
        except baselines.BaselineSettingError as error:
            where = f"epochs {settings.epochs} x {steps} steps per epoch"
            raise SettingError(error.setting, f"{error} ({where})") from None


def model_spec(settings: Any, variant: Any, vocab_size: int) -> ModelSpec:
    """A run's model: the settings named as :class:`~advmask.seqvae.factory.ModelSpec`'s
    fields, then its grid point's (``variant``: ``dropout``, ``rate``, ``kl_weight``);
    ``adversary_hidden_size`` None means ``hidden_size``, and ``relaxation_options`` are
    parsed from their ``name=value`` texts."""
    shared = {f.name for f in fields(ModelSpec)} & set(vars(settings))
    spec = {name: getattr(settings, name) for name in shared}
    spec |= {"dropout": variant.dropout, "rate": variant.rate, "kl_weight": variant.kl_weight}
    spec["adversary_hidden_size"] = settings.adversary_hidden_size or settings.hidden_size
    spec["relaxation_options"] = parse_relaxation_options(
        settings.relaxation, settings.relaxation_options
    )
    return ModelSpec(vocab_size=vocab_size, **spec)


def corpus_options(settings: Any, world_size: int = 1) -> dict[str, Any]:
    """The keyword arguments of :func:`~advmask.seqvae.data.load_corpus` for a run's settings
    (its vocabulary, tokenizer, length limits, training subset); ``world_size`` processes
    need a training sequence each."""
    names = ("tokenizer", "sentencepiece_vocab_size", "max_length", "truncate_long")
    options = {name: getattr(settings, name) for name in names}
    options |= {"max_size": settings.vocab_max_size, "min_count": settings.vocab_min_count}
    options["max_train_sequences"] = settings.max_train_sequences
    options["cache_dir"] = Path(settings.out) / settings.preset / "sentencepiece"
    positions = ModelSpec(vocab_size=4).transformer_max_length  # BOS + tokens must fit
    options["max_tokens"] = positions - 1 if settings.decoder == "transformer" else None
    # Evaluation needs two sequences (AU is a variance); training one per rank.
    options["min_sequences"] = {"train": world_size, "valid": 2, "test": 2}
    return options


def _as_setting(name: str, check: Any, *args: Any) -> None:
    try:
        check(*args)
    except ValueError as error:
        raise SettingError(getattr(error, "setting", name), str(error)) from None
