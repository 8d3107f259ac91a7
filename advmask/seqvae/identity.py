"""Which runs are one setting: the identity of a run of ``recipes/seqvae_awd.py``.

A run is defined by every setting that can change what it computes, except its seed: the
recipe's flags (its ``config.json``) but :data:`NOT_RESULT_SETTINGS`, the model specification
and the data fingerprint. Runs of one identity are the seeds of one setting; everything that
groups runs (``compare.py``, the studies of ``analyze.py``, the comparison lines a recipe
prints) and the recipe's ``--resume`` check read this one definition, and two runs of the same
identity and seed are one run counted twice (:func:`check_distinct_runs` refuses them).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

__all__ = [
    "ADVERSARY_SETTINGS",
    "LEGACY_DEFAULTS",
    "LEGACY_SCHEDULES",
    "NOT_RESULT_SETTINGS",
    "DuplicateRunError",
    "check_distinct_runs",
    "holds_run",
    "run_identity",
    "run_record",
    "run_settings",
    "same_run",
]

NOT_RESULT_SETTINGS: frozenset[str] = frozenset(
    {
        "out",
        "resume",
        "device",
        "threads",
        "jobs",
        "compile",
        "log_every",
        "score_log_every",
        "checkpoint_every",
        # The data is identified by its fingerprint, not by the folder it was read from.
        "data_dir",
    }
)
"""Flags of ``recipes/seqvae_awd.py`` that say where and how a run ran, not what it computed:
they may change when a run is continued, and runs that differ only in them are seeds of one
setting."""

_RECORDED_TWICE = frozenset({"dropout", "uniform_rate", "adversarial_rate"})
# The run's dropout kind and rate are compared as the model specification's ``dropout`` and
# ``rate``; ``uniform_rate``/``adversarial_rate`` are how older versions recorded that rate.

ADVERSARY_SETTINGS: frozenset[str] = frozenset(
    {
        "kl_weight",
        "adversary_lr",
        "adversary_embedding_dim",
        "adversary_hidden_size",
        "relaxation",
        "std",
    }
)
"""The settings that only the adversary reads; a run without one has none (``"-"`` in a table)."""

LEGACY_DEFAULTS: Mapping[str, Any] = {
    "baseline": "annealing",
    "beta": 1.0,
    "kl_cycles": 4,
    "kl_cycle_ratio": 0.5,
    "pretrain_epochs": 1,
    "svi_steps": 10,
    "svi_lr": 1.0,
    "relaxation_options": (),
    "unk_id": 3,
    "optimizer": "sgd",
    "decoder_init": "authors",
}
"""Settings that ``recipes/seqvae_awd.py`` records since a later version, with the value that
behaves as the runs recorded before them did (their results are bit-identical), so that a run
of an older version and one of today's average over seeds as one row."""

LEGACY_SCHEDULES: Mapping[str, str] = {"linear": "annealing", "cyclical": "cyclical"}
"""The ``--kl-schedule`` values of older runs, as the ``baseline`` that replaced the flag."""


class DuplicateRunError(ValueError):
    """Two runs of the same identity and seed: one run counted twice."""


def run_settings(run: Mapping[str, Any]) -> dict[str, Any]:
    """Every setting of a run that could change its results, from its ``"config"`` entry.

    The recipe's flags except :data:`NOT_RESULT_SETTINGS` and the seed, the model
    specification (the model's ``dropout`` as ``model_dropout``, its resolved ``rate``...) and
    the data fingerprint (``data``); a setting the run's version did not record yet reads as in
    :data:`LEGACY_DEFAULTS` (``kl_schedule`` as the ``baseline`` it became). A run without an
    adversary has none of :data:`ADVERSARY_SETTINGS`. Empty for a run without a config (then
    its model label decides).
    """
    config = run.get("config")
    if not isinstance(config, Mapping):
        return {}
    skipped = NOT_RESULT_SETTINGS | _RECORDED_TWICE | {"seed", "run", "model", "data"}
    settings = {name: value for name, value in config.items() if name not in skipped}
    for name, value in (config.get("model") or {}).items():
        settings["model_dropout" if name == "dropout" else name] = value
    # lambda or the score network's size cannot change a run without an adversary; kept, they
    # would split its seeds into groups and print a meaningless value in the table.
    if settings.get("model_dropout", config.get("dropout")) != "adversarial":
        settings = {k: v for k, v in settings.items() if k not in ADVERSARY_SETTINGS}
    # A run recorded before a setting existed ran as its default does now.
    if settings.get("kl_schedule") in LEGACY_SCHEDULES:
        settings["baseline"] = LEGACY_SCHEDULES[settings.pop("kl_schedule")]
    for name, value in LEGACY_DEFAULTS.items():
        settings.setdefault(name, value)
    data = config.get("data")
    if isinstance(data, Mapping) and "fingerprint" in data:
        settings["data"] = str(data["fingerprint"])[:12]
    # A Python None and an unset value read alike; json keeps tuples as lists.
    return {name: _hashable(value) for name, value in settings.items()}


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value


def run_identity(run: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """What makes runs seeds of one setting: :func:`run_settings`, or for a run without a
    config (an old ``metrics.json``) its ``model`` label; hashable and comparable."""
    settings = run_settings(run)
    if not settings:
        return (("model", str(run.get("model"))),)
    return tuple(sorted((name, repr(value)) for name, value in settings.items()))


def same_run(saved: Mapping[str, Any], record: Mapping[str, Any]) -> bool:
    """Whether two ``config.json`` records are of one run: the same identity and seed."""
    saved, record = ({"config": json.loads(json.dumps(r))} for r in (saved, record))
    return run_identity(saved) == run_identity(record) and _seed(saved) == _seed(record)


def run_record(config: Any, variant: Any, spec: Any, corpus: Any) -> dict[str, Any]:
    """A run's ``config.json``: its settings (the recipe's config dataclass, then its own grid
    point ``variant``), its model (a ``ModelSpec``) and the identity of its data (the corpus's
    fingerprint and the sequences of each split)."""
    sequences = {split: len(lines) for split, lines in corpus.splits.items()}
    data = {"fingerprint": corpus.fingerprint, "sequences": sequences}
    return {**asdict(config), **asdict(variant), "model": asdict(spec), "data": data}


def holds_run(folder: Path, record: Mapping[str, Any]) -> bool:
    """Whether ``folder``'s ``config.json`` is of the run ``record`` describes (False when
    it is missing or unreadable)."""
    try:
        saved = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(saved, dict) and same_run(saved, record)


def check_distinct_runs(
    runs: Sequence[Mapping[str, Any]], names: Sequence[str] | None = None
) -> None:
    """Refuse two runs of one identity (:func:`run_identity`) and one seed.

    Two copies of a run folder, or one grid point trained again under another folder name,
    would count one seed twice in a mean and its standard deviation.

    Args:
        runs: runs (``metrics.json`` contents with their ``"config"``).
        names: what to call each run in the error (its folder); by default its label and seed.

    Raises:
        DuplicateRunError: naming both runs.
    """
    seen: dict[tuple[Any, ...], int] = {}
    for index, run in enumerate(runs):
        key = (run_identity(run), _seed(run))
        if key in seen:
            first, second = (_name(runs, names, i) for i in (seen[key], index))
            raise DuplicateRunError(
                f"{first} and {second} are the same run (the same settings and seed "
                f"{_seed(run)}): name each run once"
            )
        seen[key] = index


def _seed(run: Mapping[str, Any]) -> Any:
    seed = run.get("seed")
    return ((run.get("config") or {}).get("seed")) if seed is None else seed


def _name(runs: Sequence[Mapping[str, Any]], names: Iterable[str] | None, index: int) -> str:
    if names is not None:
        return list(names)[index]
    return f"{runs[index].get('model', '?')!r} seed {_seed(runs[index])}"
