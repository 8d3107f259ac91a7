"""Finished runs read from their folders, grouped into the seeds of one setting.

A run folder of ``recipes/seqvae_awd.py`` holds ``metrics.json`` once finished and its
``config.json``; runs of earlier versions may lack the config, or record their seed and
dropout kind only there: :func:`run_seed` and :func:`dropout_kind` read either place. Which
runs are seeds of one setting is :mod:`advmask.seqvae.identity`'s rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from advmask.seqvae.identity import check_distinct_runs, run_identity, run_settings
from advmask.training.checkpoint import read_json

__all__ = [
    "by_dropout_kind",
    "differing_settings",
    "dropout_kind",
    "group_runs",
    "is_run_directory",
    "load_runs",
    "run_seed",
]

# Already in the model label, so never a column of their own.
_LABEL_SETTINGS = ("preset", "rate", "model_dropout")


def is_run_directory(path: str | Path) -> bool:
    """True for a run folder (it holds ``config.json`` or ``metrics.json``).

    Lets ``compare.py runs/<preset>/*/`` pass over the generated ``corpus/``, the
    ``sentencepiece/`` cache and ``analysis/`` folders beside the runs.
    """
    path = Path(path)
    return (path / "config.json").is_file() or (path / "metrics.json").is_file()


def load_runs(run_dirs: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Read ``metrics.json`` of each finished run directory, in order.

    A directory named twice (overlapping shell globs) is read once. The run's ``config.json``,
    where present, is added under ``"config"`` (it decides which runs are averaged, see
    :func:`~advmask.seqvae.identity.run_identity`).

    Raises:
        FileNotFoundError: naming the missing ``metrics.json`` of an unfinished run.
        ValueError: naming a file that is not valid JSON.
        advmask.seqvae.identity.DuplicateRunError: naming two folders that hold the same run
            (the same settings and seed: a copy, or a grid point trained again), which would
            count one seed twice.
    """
    runs, seen, names = [], set(), []
    for run_dir in run_dirs:
        path = Path(run_dir) / "metrics.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: is the run in {run_dir} finished?")
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            run = read_json(path)
            config_path = Path(run_dir) / "config.json"
            if config_path.is_file() and "config" not in run:
                run["config"] = read_json(config_path)
            runs.append(run)
            names.append(str(run_dir))
    check_distinct_runs(runs, names)
    return runs


def group_runs(runs: Iterable[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Group runs that differ only by their seed, in first-seen order.

    Runs are grouped by their identity (:func:`~advmask.seqvae.identity.run_identity`: every
    setting that can change a result; runs without a config by their ``model`` label). The
    keys are the labels of each group's first run, with ``" #2"``, ``" #3"`` ... for further
    groups under the same label (their settings differ: :func:`differing_settings` names them).

    Raises:
        advmask.seqvae.identity.DuplicateRunError: two runs of one identity and seed (one run
            counted twice).
    """
    runs = list(runs)
    check_distinct_runs(runs)
    by_key: dict[tuple[tuple[str, str], ...], list[Mapping[str, Any]]] = {}
    for run in runs:
        by_key.setdefault(run_identity(run), []).append(run)
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for group in by_key.values():
        label = str(group[0]["model"])
        name, number = label, 1
        while name in groups:
            number += 1
            name = f"{label} #{number}"
        groups[name] = group
    return groups


def differing_settings(groups: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[str]:
    """Settings whose value differs between the groups that have them, besides the label's."""
    settings = [run_settings(group[0]) for group in groups.values()]
    names = sorted({name for s in settings for name in s} - set(_LABEL_SETTINGS))
    return [name for name in names if len({repr(s[name]) for s in settings if name in s}) > 1]


def run_seed(run: Mapping[str, Any]) -> int:
    """The seed of a run: its ``seed``, else the one its ``config.json`` records.

    Raises:
        ValueError: naming the run's model when neither is there.
    """
    seed = run.get("seed")
    if seed is None:
        seed = ((run.get("config") or {}).get("run") or {}).get("seed")
    if seed is None:
        raise ValueError(f"run {run.get('model', '?')!r} records no seed, so it cannot be paired")
    return int(seed)


def dropout_kind(run: Mapping[str, Any]) -> str:
    """``"none"``, ``"uniform"`` or ``"adversarial"``: the run's ``dropout``, else its config's.

    ``"unknown"`` for a run that records neither (an old ``metrics.json`` without config).
    """
    config = run.get("config") or {}
    for kind in (
        run.get("dropout"),
        (config.get("run") or {}).get("dropout"),
        (config.get("model") or {}).get("dropout"),
    ):
        if isinstance(kind, str):
            return kind
    return "unknown"


def by_dropout_kind(
    groups: Mapping[str, Sequence[Mapping[str, Any]]],
) -> dict[str, dict[str, Sequence[Mapping[str, Any]]]]:
    """``groups`` split by :func:`dropout_kind`, kinds in the order they first appear."""
    kinds: dict[str, dict[str, Sequence[Mapping[str, Any]]]] = {}
    for label, runs in groups.items():
        kinds.setdefault(dropout_kind(runs[0]), {})[label] = runs
    return kinds
