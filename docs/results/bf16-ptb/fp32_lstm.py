"""The recipe with ``--precision bf16`` but every ``nn.LSTM`` in float32 (autocast off inside it).

A diagnostic, not a feature: it tells whether the bf16 - fp32 shift of the Penn Treebank runs
comes from the recurrences' bfloat16 states. Usage, from the repository root, with the flags of
``README.txt`` and ``--precision bf16``::

    python docs/results/bf16-ptb/fp32_lstm.py FLAGS...
"""

import runpy
import sys
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

ROOT = Path(__file__).resolve().parents[3]
bf16_forward = nn.LSTM.forward


def float32_forward(self: nn.LSTM, input, hx=None):  # noqa: ANN001, ANN201 (nn.LSTM's own)
    """``nn.LSTM.forward`` on float32 inputs and states, outside autocast."""
    with torch.autocast("cpu", enabled=False):
        if isinstance(input, PackedSequence):
            input = input._replace(data=input.data.float())
        else:
            input = input.float()
        if hx is not None:
            hx = tuple(state.float() for state in hx)
        return bf16_forward(self, input, hx)


if __name__ == "__main__":
    nn.LSTM.forward = float32_forward
    sys.argv = [str(ROOT / "recipes" / "seqvae_awd.py"), *sys.argv[1:]]
    runpy.run_path(sys.argv[0], run_name="__main__")
