"""``set_value_checks``: value checks run once at the entry point, or not at all when off.

A value check copies a tensor's value to the host (``aten::_local_scalar_dense`` in the
profiler, or ``aten::_local_scalar_dense`` under ``.tolist()``): a device synchronisation. These
tests count those calls in a masker call and in a whole training step of the sequence VAE.
"""

from __future__ import annotations

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

import advmask
from advmask import AdversarialMasker, UniformMasker, bottom_k, set_value_checks
from advmask.seqvae.data import Batch
from advmask.seqvae.factory import ModelSpec, build_sequence_vae
from advmask.seqvae.step import Optimizers, StepSettings, train_step
from advmask.training.optim import adam


@pytest.fixture
def checks_off():
    set_value_checks(False)
    yield
    set_value_checks(True)


HOST_READ_METHODS = ("tolist", "item", "__bool__", "__int__", "__float__", "__index__")


def host_reads(fn) -> int:
    """Device-to-host value reads in ``fn``: ``aten::_local_scalar_dense`` calls plus calls of
    the tensor methods that read values without one on CPU (``tolist``, ``bool()``, ...).

    Reads inside ``Adam.step`` are not counted: on CPU every torch Adam reads its step counter,
    a CPU tensor (no device involved); on CUDA the fused kernel keeps it on the device.
    """
    calls = []
    originals = {name: getattr(torch.Tensor, name) for name in HOST_READ_METHODS}

    def counting(name):
        def method(self, *args, **kwargs):
            calls.append(name)
            return originals[name](self, *args, **kwargs)

        return method

    for name in HOST_READ_METHODS:
        setattr(torch.Tensor, name, counting(name))
    try:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fn()
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)
    count = len(calls)
    for event in prof.events():
        if event.name != "aten::_local_scalar_dense":
            continue
        parent, inside_adam = event.cpu_parent, False
        while parent is not None:
            inside_adam = inside_adam or parent.name.startswith("Optimizer.step#Adam")
            parent = parent.cpu_parent
        count += not inside_adam
    return count


def masker_problem():
    torch.manual_seed(0)
    masker = AdversarialMasker(vocab_size=40, rate=0.4, embedding_dim=8, hidden_size=8)
    tokens = torch.randint(1, 40, (4, 9))
    lengths = torch.tensor([9, 7, 3, 1])
    return masker, tokens, lengths


def masker_step(masker, tokens, lengths):
    def run():
        out = masker(tokens, lengths, protected=torch.arange(9) == 0)
        ((out.mask * torch.randn(out.mask.shape)).sum() + out.regularizer).backward()

    return run


def training_step(dropout: str):
    torch.manual_seed(0)
    spec = ModelSpec(
        vocab_size=40,
        embedding_dim=8,
        hidden_size=12,
        latent_dim=3,
        dropout=dropout,
        adversary_embedding_dim=8,
        adversary_hidden_size=8,
    )
    model = build_sequence_vae(spec).train()
    vae_optimizer = torch.optim.SGD(model.vae_parameters(), lr=0.1)
    adversary = adam(model.masker.parameters(), lr=1e-3) if dropout == "adversarial" else None
    tokens = torch.randint(4, 40, (4, 8))
    lengths = torch.tensor([8, 6, 4, 2])
    tokens = torch.where(torch.arange(8) < lengths[:, None], tokens, 0)
    batch = Batch(tokens=tokens, lengths=lengths)

    def step():
        train_step(model, batch, 0.5, Optimizers(vae_optimizer, adversary), StepSettings(5.0))

    return step


def test_value_checks_are_on_by_default_and_switchable() -> None:
    assert advmask.value_checks_enabled()
    set_value_checks(False)
    try:
        assert not advmask.value_checks_enabled()
    finally:
        set_value_checks(True)
    with pytest.raises(TypeError, match="enabled must be a bool, got 0"):
        set_value_checks(0)


def test_masker_makes_no_host_read_with_checks_off(checks_off) -> None:
    masker, tokens, lengths = masker_problem()
    run = masker_step(masker, tokens, lengths)
    run()  # warm-up: lazy initialisation may read values once
    assert host_reads(run) == 0


def test_masker_checks_each_value_once_with_checks_on() -> None:
    # One .tolist() for lengths and token ids together, one bool() (itself one
    # _local_scalar_dense) for the scores: the score network and bottom_k do not check again.
    masker, tokens, lengths = masker_problem()
    run = masker_step(masker, tokens, lengths)
    run()
    assert host_reads(run) == 3


def test_training_step_checks_inputs_once_and_scores_once_with_checks_on() -> None:
    # The VAE's entry (.tolist()), the masker's inputs (.tolist()) and its scores (bool()).
    step = training_step("adversarial")
    step()
    assert host_reads(step) == 4


@pytest.mark.parametrize("dropout", ["none", "uniform", "adversarial"])
def test_training_step_makes_no_host_read_with_checks_off(checks_off, dropout) -> None:
    step = training_step(dropout)
    step()
    assert host_reads(step) == 0


def test_checks_on_still_reject_bad_lengths_and_scores() -> None:
    masker, tokens, _ = masker_problem()
    with pytest.raises(ValueError, match=r"lengths must be in \[0, T=9\]"):
        masker(tokens, torch.tensor([10, 1, 1, 1]))
    with pytest.raises(ValueError, match=r"tokens must be ids in \[0, vocab_size=40\), got 40"):
        masker(torch.full((4, 9), 40), torch.tensor([9, 1, 1, 1]))
    with torch.no_grad():
        masker.score_network.head.weight.fill_(float("nan"))
    with pytest.raises(ValueError, match="scores must be finite"):
        masker(tokens, torch.tensor([9, 7, 3, 1]))
    with pytest.raises(ValueError, match=r"lengths must be in \[0, T=4\]"):
        UniformMasker(0.5)(torch.ones(2, 4, dtype=torch.int64), torch.tensor([5, 1]))
    scores = torch.tensor([[0.0, float("inf")]])
    with pytest.raises(ValueError, match=r"scores must be finite at eligible positions"):
        bottom_k(scores, torch.tensor([1]), torch.ones(1, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"k must be in \[0, n_b\]"):
        bottom_k(torch.zeros(1, 2), torch.tensor([3]), torch.ones(1, 2, dtype=torch.bool))


def test_sequence_vae_checks_lengths_and_ids_once_at_its_entry() -> None:
    torch.manual_seed(0)
    model = build_sequence_vae(
        ModelSpec(
            vocab_size=40,
            embedding_dim=8,
            hidden_size=12,
            latent_dim=3,
            dropout="adversarial",
            adversary_embedding_dim=8,
            adversary_hidden_size=8,
        )
    ).train()
    tokens = torch.randint(4, 40, (2, 5))
    with pytest.raises(ValueError, match=r"lengths must be in \[2, T=5\]"):
        model(tokens, torch.tensor([5, 1]))
    with pytest.raises(ValueError, match=r"tokens must be ids in \[0, vocab_size=40\), got 41"):
        model(torch.full((2, 5), 41), torch.tensor([5, 5]))


def test_validate_args_decides_for_its_object_whatever_the_default() -> None:
    masker, tokens, lengths = masker_problem()
    run = masker_step(masker, tokens, lengths)
    run()
    masker.validate_args = False  # with the default switch on
    assert host_reads(run) == 0
    ones = torch.ones(2, 4, dtype=torch.int64)
    set_value_checks(False)
    try:
        checked = AdversarialMasker(40, 0.4, embedding_dim=8, hidden_size=8, validate_args=True)
        with pytest.raises(ValueError, match=r"lengths must be in \[0, T=9\]"):
            checked(tokens, torch.tensor([10, 1, 1, 1]))
        with pytest.raises(ValueError, match=r"lengths must be in \[0, T=4\]"):
            UniformMasker(0.5, validate_args=True)(ones, torch.tensor([5, 1]))
    finally:
        set_value_checks(True)
    # validate_args=False: the bad length goes unchecked, as with the switch off.
    UniformMasker(0.5, validate_args=False)(ones, torch.tensor([5, 1]))


def test_the_removed_thread_local_names_are_refused_naming_the_new_way() -> None:
    with pytest.raises(ImportError, match="trusted was removed: give the object validate_args"):
        from advmask.checks import trusted  # noqa: F401
    with pytest.raises(ImportError, match="checking_values was removed: use checks_values"):
        from advmask.checks import checking_values  # noqa: F401


def test_checks_off_skips_value_checks_but_not_shape_checks(checks_off) -> None:
    masker, tokens, _ = masker_problem()
    with pytest.raises(ValueError, match="lengths must have one entry per row"):
        masker(tokens, torch.tensor([1, 2]))
    with pytest.raises(TypeError, match="lengths must have dtype"):
        masker(tokens, torch.ones(4))
    # A value error goes unchecked (the caller promised valid data): k = 3 > n = 2 raises
    # "k must be in [0, n_b]" with checks on, nothing here.
    bottom_k(torch.zeros(1, 2), torch.tensor([3]), torch.ones(1, 2, dtype=torch.bool))
