"""What a table's columns mean: the legend printed under it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from advmask.seqvae.report.names import LEGEND

__all__ = ["results_legend"]


def results_legend(columns: Iterable[str], probe_chance: Mapping[str, float] | None = None) -> str:
    """A legend for the given column titles, one line each, for printing under a table.

    Args:
        columns: column titles as :func:`.results_table` writes them (for example
            ``[str(column.header) for column in table.columns]``).
        probe_chance: factor name -> chance accuracy of its linear probe (the share of the
            most frequent value), for ``probe <factor>`` columns.

    Returns:
        Lines ``"TITLE: meaning"`` in the order of ``columns``; titles without an entry in
        :data:`.LEGEND` (``model``, ``seeds``, settings) are left out. A ``probe <factor>``
        column gets a line with its chance level where ``probe_chance`` has one; factors of
        ``probe_chance`` without a column follow at the end.

    Example:
        >>> print(results_legend(["model", "KL", "probe topic"], {"topic": 0.3}))
        KL: KL(q(z|x) || p(z)) per sentence, nats: what z is charged for (0 = collapse)
        probe topic: accuracy of a linear probe reading the true topic from the posterior means on held-out sentences (higher is better; chance 0.30)
    """  # noqa: E501
    chance = dict(probe_chance or {})
    lines = []
    for title in columns:
        if title in LEGEND:
            lines.append(f"{title}: {LEGEND[title]}")
        elif title.startswith("probe "):
            name = title.removeprefix("probe ")
            lines.append(_probe_line(name, chance.pop(name, None)))
    lines += [_probe_line(name, level) for name, level in chance.items()]
    return "\n".join(lines)


def _probe_line(name: str, chance: float | None) -> str:
    level = "" if chance is None else f"; chance {chance:.2f}"
    return (
        f"probe {name}: accuracy of a linear probe reading the true {name} from the "
        f"posterior means on held-out sentences (higher is better{level})"
    )
