"""What AdversarialMasker and UniformMasker are given (SPEC §1, §2): bad input is named with
its value, and score networks and relaxations are accepted by object or registered name.
"""

import inspect
from types import MappingProxyType

import pytest
import torch

from advmask.maskers import AdversarialMasker, UniformMasker, drop_probabilities
from advmask.relaxations import RELAXATIONS
from advmask.scores import LSTMScoreNetwork, TransformerScoreNetwork, register_score_network
from advmask.seqvae.factory import ModelSpec

from ._masker_helpers import VOCAB, ConstantScores, adversarial, random_tokens

# --- bad input ---------------------------------------------------------------------------------


def call_adversarial(**kwargs):
    args = {"tokens": torch.ones(2, 4, dtype=torch.int64), "lengths": torch.tensor([4, 2])}
    args.update(kwargs)
    return adversarial(0.5)(**args)


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda: adversarial(1.5), ValueError, ["rate", "1.5"]),
        (lambda: adversarial(-0.1), ValueError, ["rate", "-0.1"]),
        (lambda: adversarial(0.5, kl_weight=-2.0), ValueError, ["kl_weight", "-2.0"]),
        (lambda: adversarial(0.5, relaxation="nope"), ValueError, ["relaxation", "'nope'"]),
        (
            lambda: adversarial(0.5, relaxation_options={"temperature": -1.0}),
            ValueError,
            ["temperature", "-1.0"],
        ),
        (
            lambda: adversarial(0.5, relaxation_options={"temprature": 1.0}),
            TypeError,
            ["relaxation_options", "temprature"],
        ),
        (lambda: adversarial(0.5, std="exp"), ValueError, ["std", "'exp'"]),
        (lambda: adversarial(0.5, relaxation=42), TypeError, ["relaxation", "int"]),
        (
            lambda: AdversarialMasker(
                VOCAB, 0.5, score_network=ConstantScores(0.0, 1.0), std="bogus", hidden_size=-5
            ),
            ValueError,
            ["std='bogus'", "score_network", "ConstantScores"],
        ),
        (
            lambda: adversarial(0.5, score_network="transformer", bidirectional=True),
            ValueError,
            ["'transformer'", "'bidirectional'"],
        ),
        (lambda: adversarial(0.5, validate_args="yes"), TypeError, ["validate_args", "'yes'"]),
        (lambda: adversarial(0.5, score_network="cnn"), ValueError, ["score_network", "'cnn'"]),
        (lambda: adversarial(0.5, grl_scale=-1.0), ValueError, ["scale", "-1.0"]),
        (lambda: UniformMasker(2.0), ValueError, ["rate", "2.0"]),
        (lambda: UniformMasker(0.5, mode="binomial"), ValueError, ["mode", "'binomial'"]),
        (lambda: call_adversarial(tokens=torch.ones(2, 4)), TypeError, ["tokens", "float32"]),
        (
            lambda: call_adversarial(tokens=torch.ones(8, dtype=torch.int64)),
            ValueError,
            ["tokens", "(8,)"],
        ),
        (
            lambda: call_adversarial(lengths=torch.tensor([[4, 2]])),
            ValueError,
            ["lengths", "(1, 2)"],
        ),
        (lambda: call_adversarial(lengths=torch.tensor([5, 2])), ValueError, ["lengths", "5"]),
        (lambda: call_adversarial(lengths=torch.tensor([-1, 2])), ValueError, ["lengths", "-1"]),
        (
            lambda: call_adversarial(lengths=torch.tensor([4.0, 2.0])),
            TypeError,
            ["lengths", "float32"],
        ),
        (
            lambda: call_adversarial(protected=torch.ones(3, dtype=torch.bool)),
            ValueError,
            ["protected", "(3,)"],
        ),
        (lambda: call_adversarial(protected=torch.ones(4)), TypeError, ["protected", "float32"]),
        (lambda: call_adversarial(noise=torch.ones(2, 3)), ValueError, ["noise", "(2, 3)"]),
        (
            lambda: AdversarialMasker(VOCAB, 0.5, score_network=ConstantScores(float("nan"), 1.0))(
                torch.ones(1, 3, dtype=torch.int64), torch.tensor([3])
            ),
            ValueError,
            ["scores", "nan"],
        ),
        (
            lambda: AdversarialMasker(VOCAB, 0.5, score_network=ConstantScores(0.0, float("inf")))(
                torch.ones(1, 3, dtype=torch.int64), torch.tensor([3])
            ),
            ValueError,
            ["scores", "inf"],
        ),
        (
            lambda: drop_probabilities(
                torch.zeros(1, 2),
                torch.ones(1, 2),
                torch.tensor([1]),
                torch.ones(1, 2, dtype=torch.bool),
                num_samples=0,
            ),
            ValueError,
            ["num_samples", "0"],
        ),
    ],
)
def test_bad_input_names_argument_and_value(call, error, words) -> None:
    with pytest.raises(error) as info:
        call()
    for word in words:
        assert word in str(info.value)


# --- what the masker is given: a score network, a relaxation -----------------------------------


def test_a_built_score_network_refuses_every_setting_it_would_ignore() -> None:
    network = LSTMScoreNetwork(VOCAB, 4, 6)
    for setting in ({"std": "fixed"}, {"hidden_size": 8}, {"padding_idx": 0}, {"max_length": 9}):
        with pytest.raises(ValueError, match="score_network is a built LSTMScoreNetwork") as info:
            AdversarialMasker(VOCAB, 0.5, score_network=network, **setting)
        assert "\n" not in str(info.value) and next(iter(setting)) in str(info.value)
    assert AdversarialMasker(VOCAB, 0.5, score_network=network).score_network is network


def test_a_named_score_network_gets_its_settings_and_the_masker_checks_for_it() -> None:
    masker = adversarial(0.5, score_network="transformer", max_length=600, num_heads=2)
    assert isinstance(masker.score_network, TransformerScoreNetwork)
    assert masker.score_network.max_length == 600
    # The masker checked the input: the network it built does not check again.
    assert masker.validate_args is None and masker.score_network.validate_args is False
    tokens = random_tokens(torch.tensor([600, 300]), 600)
    out = masker(tokens, torch.tensor([600, 300]))
    assert out.k.tolist() == [300, 150]
    assert torch.equal(out.mask.sum(1).long(), out.k)


def test_no_padding_id_by_default_and_the_same_std_default_as_model_spec() -> None:
    # id 0 is a real token in GPT-2's vocabulary: the core assumes no padding id.
    assert adversarial(0.5).score_network.embedding.padding_idx is None
    assert adversarial(0.5, padding_idx=0).score_network.embedding.padding_idx == 0
    default_std = inspect.signature(LSTMScoreNetwork).parameters["std"].default
    assert adversarial(0.5).score_network.std_mode == default_std
    assert ModelSpec(vocab_size=VOCAB).std == default_std


def test_a_relaxation_function_works_as_its_registered_name() -> None:
    tokens = random_tokens(torch.tensor([6, 4]), 6)
    lengths = torch.tensor([6, 4])
    outputs = []
    for relaxation in ("euclidean", RELAXATIONS["euclidean"]):
        masker = adversarial(0.5, relaxation=relaxation)
        out = masker(tokens, lengths, generator=torch.Generator().manual_seed(1))
        (out.mask * torch.arange(6.0)).sum().backward()
        grads = [p.grad.clone() for p in masker.parameters() if p.grad is not None]
        outputs.append((out.mask.detach(), grads))
    (mask, grads), (mask_fn, grads_fn) = outputs
    assert torch.equal(mask, mask_fn)
    assert len(grads) == len(grads_fn) > 0
    assert all(torch.equal(a, b) for a, b in zip(grads, grads_fn, strict=True))


def test_register_score_network_adds_a_name_the_masker_accepts(monkeypatch) -> None:
    import advmask.scores

    monkeypatch.setattr(advmask.scores, "_SCORE_NETWORKS", dict(advmask.scores._SCORE_NETWORKS))
    monkeypatch.setattr(
        advmask.scores, "SCORE_NETWORKS", MappingProxyType(advmask.scores._SCORE_NETWORKS)
    )

    @register_score_network("constant-example")
    def constant(vocab_size, *, std=1.0, validate_args=None):
        return ConstantScores(0.0, std)

    assert "constant-example" in advmask.scores.SCORE_NETWORKS
    masker = AdversarialMasker(VOCAB, 0.5, score_network="constant-example", std=2.0)
    assert masker.score_network.std == 2.0
    with pytest.raises(ValueError, match="already registered"):
        register_score_network("constant-example")(constant)
    with pytest.raises(TypeError):
        advmask.scores.SCORE_NETWORKS["other"] = constant  # a read-only view
