"""Saliency for people: coloured terminal text (rich) and an HTML page.

Each word's background is shaded by its drop probability (white = never dropped, red = always);
the words one sampled draw of the masker dropped are boxed (``[word]`` in the terminal, a frame
in HTML). Library code returns the objects; recipes print or write them. :func:`text_table`
is the plain table the analyses print their numbers in.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from rich.table import Table
from rich.text import Text

from advmask.seqvae.analysis.saliency import Saliency
from advmask.seqvae.data.vocab import Vocabulary

__all__ = ["saliency_html", "saliency_text", "text_table"]


def _shade(probability: float) -> tuple[int, int, int]:
    """White at 0 to a strong red at 1 (dark text stays readable on every shade)."""
    fade = round(200 * min(max(probability, 0.0), 1.0))
    return 255, 255 - fade, 255 - fade


def _words(saliency: Saliency, vocab: Vocabulary, row: int) -> list[tuple[str, float, bool]]:
    """(word, P(dropped), dropped in the sampled draw) for the words of one row."""
    length = int(saliency.lengths[row])
    ids = saliency.tokens[row, 1 : length - 1].tolist()
    probabilities = saliency.probability[row, 1 : length - 1].tolist()
    dropped = saliency.sampled[row, 1 : length - 1].tolist()
    return list(zip(vocab.decode(ids), probabilities, dropped, strict=True))


def saliency_text(saliency: Saliency, vocab: Vocabulary, row: int) -> Text:
    """One sentence as rich text: shaded by ``P(dropped)``, sampled drops in brackets.

    The result is a ``rich.text.Text``; print it with a :class:`rich.console.Console`.

    Args:
        saliency: from :func:`~advmask.seqvae.analysis.token_saliency`.
        vocab: the run's vocabulary.
        row: which sentence of the batch.
    """
    text = Text()
    for position, (word, probability, dropped) in enumerate(_words(saliency, vocab, row)):
        if position:
            text.append(" ")
        red, green, blue = _shade(probability)
        style = f"black on rgb({red},{green},{blue})" + (" bold underline" if dropped else "")
        text.append(f"[{word}]" if dropped else word, style=style)
    return text


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 60em; margin: 2em auto; color: #111; }}
p.sentence {{ line-height: 2.2; margin: 0.4em 0; }}
span.w {{ padding: 0.15em 0.25em; border-radius: 3px; border: 1.5px solid transparent; }}
span.w.dropped {{ border-color: #111; }}
.legend span {{ display: inline-block; width: 3em; text-align: center; }}
small {{ color: #555; }}
</style></head><body>
<h1>{title}</h1>
<p>Background: probability that the masker drops the word (estimated from {samples}).
Boxed: the words one sampled draw of the masker dropped. Hover for the number.</p>
<p class="legend">{legend}</p>
{sentences}
</body></html>
"""


def saliency_html(saliency: Saliency, vocab: Vocabulary, title: str = "Adversary saliency") -> str:
    """A self-contained HTML page with every sentence of ``saliency`` shaded and boxed.

    Args:
        saliency: from :func:`~advmask.seqvae.analysis.token_saliency`.
        vocab: the run's vocabulary.
        title: page title.

    Returns:
        The page as a string (write it to a ``.html`` file).
    """
    sentences = []
    for row in range(saliency.tokens.shape[0]):
        spans = []
        for word, probability, dropped in _words(saliency, vocab, row):
            red, green, blue = _shade(probability)
            spans.append(
                f'<span class="w{" dropped" if dropped else ""}" '
                f'style="background: rgb({red},{green},{blue})" '
                f'title="P(dropped) = {probability:.3f}">{html.escape(word)}</span>'
            )
        k = int(saliency.k[row])
        sentences.append(
            # The budget label never wraps away from its sentence.
            f'<p class="sentence">{" ".join(spans)} '
            f'<small class="budget">K&nbsp;=&nbsp;{k}</small></p>'
        )
    legend = "".join(
        f'<span style="background: rgb{_shade(p)}">{p:.2g}</span>' for p in (0, 0.25, 0.5, 0.75, 1)
    )
    samples = (
        f"{saliency.num_samples} samples of the scores" if saliency.num_samples else "K / n, exact"
    )
    return _PAGE.format(
        title=html.escape(title), samples=samples, legend=legend, sentences="\n".join(sentences)
    )


def text_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Table:
    """A table with a line between rows whose cells are text as written, never rich markup.

    Args:
        title: the table's title.
        columns: the column titles.
        rows: the cells of each row (``str()`` of each); an empty cell shows ``(empty)``.

    Returns:
        The :class:`rich.table.Table`, for a recipe to print.
    """
    table = Table(title=title, show_lines=True)
    for column in columns:
        table.add_column(column)
    for row in rows:
        # Text, not markup: corpus text may hold brackets that rich would read as styles.
        table.add_row(*(Text(str(c)) if str(c) else Text("(empty)", style="dim") for c in row))
    return table
