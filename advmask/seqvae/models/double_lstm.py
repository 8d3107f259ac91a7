"""The AWD authors' Double-LSTM decoder, fast path and reference."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from advmask.checks import check_decoder_inputs
from advmask.row_draws import RowDraws
from advmask.seqvae.models._common import SequenceDecoder, row_dropout


class DoubleLSTMDecoder(SequenceDecoder):
    """``p(x|z)`` with two LSTM cells applied in turn to one state at every step.

    Equations (PyTorch gate order ``i, f, g, o``), with ``e~_t = dropout_in(e_t)``::

        h_{-1} = W_init z (no bias),  c_{-1} = 0
        (h'_t, c'_t) = LSTMCell_1(z,            (h_{t-1}, c_{t-1}))   # "a priori" update
        (h_t,  c_t)  = LSTMCell_2([e~_t ; z],  (h'_t, c'_t))          # reads the word
        logits_t     = W_out dropout_out(h_t)   (no bias)

    Fast path: ``W_ih1 z + b_1`` is the same at every step and ``W_ih2 [e~_t; z] + b_2`` is
    computed for all steps in one matmul, so the loop over time holds only the two recurrent
    matmuls ``h W_hh^T`` and the gate nonlinearities. The loop has no data-dependent control
    flow and no host synchronisation, so :func:`torch.compile` traces it (unrolled over ``T``;
    a new ``T`` recompiles). Backpropagation through time is written by hand (one autograd node
    for the whole recurrence), so the logits are differentiable once, not twice.
    :func:`double_lstm_reference` computes the same logits with plain ``nn.LSTMCell`` calls.

    Parameters keep the :class:`torch.nn.LSTMCell` layout (``prior_cell`` is cell 1,
    ``word_cell`` cell 2, whose input is ``[e~_t; z]`` in that order).

    Args:
        vocab_size: number of token ids ``V``, specials included.
        embedding_dim: word embedding size ``E``.
        hidden_size: hidden size ``H`` of both cells.
        latent_dim: size ``D`` of ``z``.
        dropout_in: dropout probability on the input embeddings, in [0, 1).
        dropout_out: dropout probability on the hidden states before the output layer.
        init: ``"authors"`` (U(-0.01, 0.01) weights and biases, U(-0.1, 0.1) embedding; the
            default) or ``"pytorch"`` (the layers' own defaults), as in
            ``advmask.seqvae.models.INITS``. Under Adam the authors' range keeps
            the decoder collapsed (docs: results); under SGD both behave alike.
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int,
        hidden_size: int,
        latent_dim: int,
        *,
        dropout_in: float = 0.5,
        dropout_out: float = 0.5,
        init: str = "authors",
    ) -> None:
        super().__init__(
            vocab_size, embedding_dim, hidden_size, latent_dim, dropout_in, dropout_out, init
        )
        self.latent_to_hidden = nn.Linear(latent_dim, hidden_size, bias=False)
        self.prior_cell = nn.LSTMCell(latent_dim, hidden_size)
        self.word_cell = nn.LSTMCell(embedding_dim + latent_dim, hidden_size)
        self.output = nn.Linear(hidden_size, vocab_size, bias=False)
        self.reset_parameters()

    def forward(self, embedded: Tensor, z: Tensor, *, row_draws: RowDraws | None = None) -> Tensor:
        """Next-token logits for every step.

        Args:
            embedded: (B, T, E) float decoder-input embeddings (step ``t`` predicts token
                ``t + 1``), already masked by the caller.
            z: (B, D) float latent codes.
            row_draws: the rows of a global batch these ``B`` rows are (torchrun): the dropout
                masks are then those rows of the global batch's. None: this batch's own.

        Returns:
            (B, T, V) logits; step ``t`` depends on ``embedded[:, :t + 1]`` and ``z`` only.
        """
        embedded, z = check_decoder_inputs(embedded, z, self.embedding_dim, self.latent_dim)
        if embedded.shape[1] == 0:
            return embedded.new_zeros(embedded.shape[0], 0, self.vocab_size)
        projected = self.project_inputs(embedded, row_draws=row_draws)
        return self.decode_projected(projected, z, row_draws=row_draws)

    def project_inputs(self, embedded: Tensor, *, row_draws: RowDraws | None = None) -> Tensor:
        """The part of the word cell's input gates that does not depend on ``z``.

        ``forward(embedded, z) == decode_projected(project_inputs(embedded), z)``; computing
        the projection once and decoding it with several ``z`` (importance sampling) saves one
        (B*T, E) x (E, 4H) matmul per sample.

        Args:
            embedded: (B, T, E) float decoder-input embeddings.
            row_draws: as in :meth:`forward`.

        Returns:
            (T, B, 4H) ``W_ih2[:, :E] dropout_in(e_t)``, time-major so that step ``t`` reads
            one contiguous (B, 4H) block.
        """
        inputs = rearrange(row_dropout(self.dropout_in, embedded, row_draws), "b t e -> t b e")
        return F.linear(inputs, self.word_cell.weight_ih[:, : self.embedding_dim])

    def decode_projected(
        self,
        projected: Tensor,
        z: Tensor,
        rows: Tensor | None = None,
        *,
        row_draws: RowDraws | None = None,
    ) -> Tensor:
        """Logits (B, T, V) from :meth:`project_inputs`' (T, N, 4H) output and ``z`` (B, D).

        ``rows``: optional (B,) int64 indices into the N projected sequences (one per ``z``;
        several ``z`` may share a sequence); None means ``B = N``, row ``b`` for sequence ``b``.
        ``row_draws``: as in :meth:`forward`, for the output dropout.
        """
        hidden = self.recurrent_states(projected, z, rows)
        return self.output(row_dropout(self.dropout_out, hidden, row_draws))

    def recurrent_states(self, projected: Tensor, z: Tensor, rows: Tensor | None = None) -> Tensor:
        """Hidden states ``h_t`` (B, T, H) from :meth:`project_inputs`' output and ``z``.

        The recurrence alone (no output layer): what ``benchmarks/bench_train.py`` compares
        with a loop of :class:`torch.nn.LSTMCell` calls. ``rows`` as in
        :meth:`decode_projected`.
        """
        prior, word, E = self.prior_cell, self.word_cell, self.embedding_dim
        # Everything that does not depend on the recurrent state, for all steps at once.
        word_latent = F.linear(z, word.weight_ih[:, E:], word.bias_ih + word.bias_hh)  # (B, 4H)
        if rows is None:
            word_gates = projected + word_latent  # (T, B, 4H)
        else:
            # The gather is a fresh (T, B, 4H) copy: add in place rather than allocate again.
            word_gates = projected.index_select(1, rows).add_(word_latent)
        prior_gates = F.linear(z, prior.weight_ih, prior.bias_ih + prior.bias_hh)  # (B, 4H)
        initial_hidden = self.latent_to_hidden(z)  # (B, H)
        # The recurrence runs in the dtype of the projections (bf16 under autocast).
        dtype = word_gates.dtype
        inputs = (
            word_gates,
            prior_gates.to(dtype),
            initial_hidden.to(dtype),
            prior.weight_hh.to(dtype),
            word.weight_hh.to(dtype),
        )
        if torch.is_grad_enabled() and any(t.requires_grad for t in inputs):
            hiddens = _DoubleLSTMRecurrence.apply(*inputs)[0]
        else:
            # Evaluation: the same loop without filling the buffers the backward pass reads.
            hiddens = _recurrence(*inputs, keep_for_backward=False)[0]
        # Contiguous batch-major before dropout: the output matmul would copy anyway, and the
        # dropout mask is then drawn in the same order as by double_lstm_reference.
        return rearrange(hiddens, "t b h -> b t h").contiguous()


def _activate(gates: Tensor) -> Tensor:
    """Gate activations (B, 4H) from pre-activations, PyTorch order i, f, g, o.

    Sigmoid on the i, f, o blocks and tanh on the g block.
    """
    hidden_size = gates.shape[1] // 4
    # One sigmoid over all four blocks, then the g block overwritten: fewer kernels than
    # one activation per block. Runs inside an autograd.Function, so in-place is safe.
    activated = torch.sigmoid(gates)
    activated[:, 2 * hidden_size : 3 * hidden_size] = torch.tanh(
        gates[:, 2 * hidden_size : 3 * hidden_size]
    )
    return activated


def _cell_update(activated: Tensor, cell: Tensor) -> tuple[Tensor, Tensor]:
    """New ``(hidden, cell)``, each (B, H), from activated gates (B, 4H) and the old cell."""
    input_gate, forget_gate, candidate, output_gate = activated.chunk(4, dim=1)
    cell = torch.addcmul(forget_gate * cell, input_gate, candidate)
    return output_gate * torch.tanh(cell), cell


def _gate_gradients(
    activated: Tensor,
    cell: Tensor,
    previous_cell: Tensor,
    grad_hidden: Tensor,
    grad_cell: Tensor,
    one: Tensor,
) -> tuple[Tensor, Tensor]:
    """Backward of one LSTM update through ``_activate`` and ``_cell_update``.

    Args:
        activated: (B, 4H) gate activations of the step.
        cell: (B, H) the cell state the step produced.
        previous_cell: (B, H) the cell state the step read.
        grad_hidden: (B, H) gradient of the loss with respect to the produced hidden state.
        grad_cell: (B, H) gradient with respect to the produced cell state, from later steps.
        one: () tensor 1 in the states' dtype. ``one - x`` is ``1 - x`` bit for bit, without
            the scalar-to-tensor conversion (an ``aten::to``) that a Python ``1`` costs per call.

    Returns:
        ``(grad_gates (B, 4H), grad_previous_cell (B, H))``; ``grad_gates`` is with respect to
        the pre-activations.
    """
    input_gate, forget_gate, candidate, output_gate = activated.chunk(4, dim=1)
    cell_tanh = torch.tanh(cell)
    grad_cell = grad_cell + grad_hidden * output_gate * (one - cell_tanh * cell_tanh)
    grad_gates = torch.cat(
        [
            grad_cell * candidate * input_gate * (one - input_gate),
            grad_cell * previous_cell * forget_gate * (one - forget_gate),
            grad_cell * input_gate * (one - candidate * candidate),
            grad_hidden * cell_tanh * output_gate * (one - output_gate),
        ],
        dim=1,
    )
    return grad_gates, grad_cell * forget_gate


def _recurrence(
    word_gates: Tensor,
    prior_gates: Tensor,
    initial_hidden: Tensor,
    prior_weight: Tensor,
    word_weight: Tensor,
    *,
    keep_for_backward: bool,
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """The Double-LSTM loop over time (see :class:`_DoubleLSTMRecurrence`).

    Returns:
        ``(hiddens, buffers)``: (T, B, H) hidden states and, with ``keep_for_backward``, the
        gate activations and states the backward pass reads (prior and word activations
        (T, B, 4H), middle hiddens, middle cells and cells (T, B, H)); otherwise ``()``, and
        nothing but the hidden states is kept.
    """
    steps, batch, hidden_size = word_gates.shape[0], word_gates.shape[1], prior_weight.shape[1]
    with torch.autocast(word_gates.device.type, enabled=False):
        hiddens = word_gates.new_empty(steps, batch, hidden_size)
        if keep_for_backward:
            prior_activated = word_gates.new_empty(steps, batch, 4 * hidden_size)
            word_activated = word_gates.new_empty(steps, batch, 4 * hidden_size)
            middle_hiddens = word_gates.new_empty(steps, batch, hidden_size)
            middle_cells = word_gates.new_empty(steps, batch, hidden_size)
            cells = word_gates.new_empty(steps, batch, hidden_size)
        prior_transposed, word_transposed = prior_weight.t(), word_weight.t()
        hidden, cell = initial_hidden, torch.zeros_like(initial_hidden)
        for step in range(steps):
            activated = _activate(torch.addmm(prior_gates, hidden, prior_transposed))
            hidden, cell = _cell_update(activated, cell)
            if keep_for_backward:
                prior_activated[step] = activated
                middle_hiddens[step] = hidden
                middle_cells[step] = cell
            activated = _activate(torch.addmm(word_gates[step], hidden, word_transposed))
            hidden, cell = _cell_update(activated, cell)
            hiddens[step] = hidden
            if keep_for_backward:
                word_activated[step] = activated
                cells[step] = cell
    if not keep_for_backward:
        return hiddens, ()
    return hiddens, (prior_activated, word_activated, middle_hiddens, middle_cells, cells)


class _DoubleLSTMRecurrence(torch.autograd.Function):
    """The sequential part of the Double-LSTM, with a hand-written backward through time.

    Forward, for t = 0..T-1, with ``h = h_{-1}``, ``c = 0`` at the start::

        (h', c') = cell(prior_gates + h W_1^T, c)
        (h, c)   = cell(word_gates[t] + h' W_2^T, c')

    Why a hand-written backward: through autograd, every step would record about fifteen nodes
    and save each intermediate, and each recurrent weight gradient would be T outer products
    ``h_t^T dgates_t`` (matmuls with inner size B) accumulated one by one. Here the forward
    records nothing, saves only the gate activations and states, and the backward forms each
    weight gradient with one matmul of inner size ``T * B``. The price: the result is not twice
    differentiable (``once_differentiable``); :func:`double_lstm_reference` is.
    """

    @staticmethod
    def forward(
        word_gates: Tensor,
        prior_gates: Tensor,
        initial_hidden: Tensor,
        prior_weight: Tensor,
        word_weight: Tensor,
    ) -> tuple[Tensor, ...]:
        """(T, B, H) hidden states ``h_t``, then the buffers the backward pass reads (outputs
        too, so that :meth:`setup_context` can save them; not differentiable); see the class
        docstring for the arguments."""
        hiddens, buffers = _recurrence(
            word_gates,
            prior_gates,
            initial_hidden,
            prior_weight,
            word_weight,
            keep_for_backward=True,
        )
        return (hiddens, *buffers)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, ...], output: tuple[Tensor, ...]) -> None:
        _, _, initial_hidden, prior_weight, word_weight = inputs
        hiddens, *buffers = output
        ctx.mark_non_differentiable(*buffers)
        ctx.save_for_backward(initial_hidden, prior_weight, word_weight, *buffers, hiddens)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_hiddens: Tensor, *_buffers: Tensor) -> tuple[Tensor | None, ...]:
        """Gradients for the five inputs of :meth:`forward`, by backpropagation through time."""
        (
            initial_hidden,
            prior_weight,
            word_weight,
            prior_activated,
            word_activated,
            middle_hiddens,
            middle_cells,
            cells,
            hiddens,
        ) = ctx.saved_tensors
        steps = hiddens.shape[0]
        with torch.autocast(grad_hiddens.device.type, enabled=False):
            # The states each step read: h_{t-1} (h_{-1} from z) and c_{t-1} (c_{-1} = 0).
            previous_hiddens = torch.cat([initial_hidden.unsqueeze(0), hiddens[:-1]])
            previous_cells = torch.cat([torch.zeros_like(cells[:1]), cells[:-1]])
            grad_prior_gates = torch.empty_like(prior_activated)
            grad_word_gates = torch.empty_like(word_activated)
            grad_hidden = torch.zeros_like(initial_hidden)
            grad_cell = torch.zeros_like(initial_hidden)
            one = initial_hidden.new_ones(())
            for step in range(steps - 1, -1, -1):
                grad_hidden = grad_hidden + grad_hiddens[step]
                gates, grad_cell = _gate_gradients(
                    word_activated[step],
                    cells[step],
                    middle_cells[step],
                    grad_hidden,
                    grad_cell,
                    one,
                )
                grad_word_gates[step] = gates
                grad_hidden = gates @ word_weight
                gates, grad_cell = _gate_gradients(
                    prior_activated[step],
                    middle_cells[step],
                    previous_cells[step],
                    grad_hidden,
                    grad_cell,
                    one,
                )
                grad_prior_gates[step] = gates
                grad_hidden = gates @ prior_weight
            # One matmul with inner size T * B per weight, instead of T outer products.
            grad_prior_weight = grad_word_weight = None
            if ctx.needs_input_grad[3]:
                grad_prior_weight = _sum_of_outer_products(grad_prior_gates, previous_hiddens)
            if ctx.needs_input_grad[4]:
                grad_word_weight = _sum_of_outer_products(grad_word_gates, middle_hiddens)
        return (
            grad_word_gates,
            grad_prior_gates.sum(0),
            grad_hidden,
            grad_prior_weight,
            grad_word_weight,
        )


def _sum_of_outer_products(grad_gates: Tensor, states: Tensor) -> Tensor:
    """``sum_t grad_gates[t]^T states[t]``: (T, B, 4H) and (T, B, H) to (4H, H)."""
    return rearrange(grad_gates, "t b g -> g (t b)") @ rearrange(states, "t b h -> (t b) h")


def double_lstm_reference(
    decoder: DoubleLSTMDecoder, embedded: Tensor, z: Tensor, *, row_draws: RowDraws | None = None
) -> Tensor:
    """The Double-LSTM logits from a plain Python loop of ``nn.LSTMCell`` calls.

    Slow and obviously correct: the oracle for :class:`DoubleLSTMDecoder`'s fast path in tests
    and the baseline in ``benchmarks/bench_train.py``. It uses ``decoder``'s parameters and
    dropout modules, so in eval mode (no dropout) it returns the same logits as
    ``decoder(embedded, z)``.

    Args:
        decoder: the decoder whose parameters to use.
        embedded: (B, T, E) float decoder-input embeddings.
        z: (B, D) float latent codes.
        row_draws: as in :meth:`DoubleLSTMDecoder.forward`.

    Returns:
        (B, T, V) logits.
    """
    if not isinstance(decoder, DoubleLSTMDecoder):
        raise TypeError(f"decoder must be a DoubleLSTMDecoder, got {type(decoder).__name__}")
    embedded, z = check_decoder_inputs(embedded, z, decoder.embedding_dim, decoder.latent_dim)
    if embedded.shape[1] == 0:
        return embedded.new_zeros(embedded.shape[0], 0, decoder.vocab_size)
    inputs = row_dropout(decoder.dropout_in, embedded, row_draws)
    hidden = decoder.latent_to_hidden(z)
    cell = torch.zeros_like(hidden)
    outputs = []
    for step in range(inputs.shape[1]):
        hidden, cell = decoder.prior_cell(z, (hidden, cell))
        hidden, cell = decoder.word_cell(torch.cat([inputs[:, step], z], dim=-1), (hidden, cell))
        outputs.append(hidden)
    return decoder.output(row_dropout(decoder.dropout_out, torch.stack(outputs, dim=1), row_draws))
