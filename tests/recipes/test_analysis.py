"""The paper's analyses (advmask.seqvae.analysis) on a tiny model and a tiny trained run:
decoding, saliency, aggregates, the latent space, the score log and the rate ablation.

The commands of recipes/analyze.py are in tests/recipes/test_analyze_commands.py.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from advmask.seqvae.analysis import (
    STEPPERS,
    decode,
    drop_by_frequency,
    drop_by_position,
    interpolate,
    neighbourhood,
    posterior_means,
    prior_samples,
    rate_ablation,
    read_score_log,
    saliency_html,
    token_saliency,
)
from advmask.seqvae.analysis.decoding import stepper
from advmask.seqvae.data import EOS_ID, PAD_ID, collate
from advmask.seqvae.factory import (
    ModelSpec,
    build_sequence_vae,
    load_sequence_vae,
)
from tests.recipes._analysis_helpers import assert_png, assert_svg

torch.set_num_threads(1)


def tiny_model(decoder: str) -> torch.nn.Module:
    torch.manual_seed(0)
    spec = ModelSpec(
        vocab_size=15,
        embedding_dim=6,
        hidden_size=8,
        latent_dim=3,
        decoder=decoder,
        dropout="adversarial",
        rate=0.4,
        adversary_embedding_dim=4,
        adversary_hidden_size=4,
        encoder_init="pytorch",
    )
    return build_sequence_vae(spec).eval()


SENTENCES = [[5, 6, 7, 8, 9], [10, 11], [4, 4, 12, 13, 14, 5, 6, 7, 8]]


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("decoder", ["lstm", "double-lstm"])
def test_incremental_steps_reproduce_the_decoders_logits(decoder) -> None:
    model = tiny_model(decoder)
    assert type(model.decoder) in STEPPERS  # the incremental path, not the prefix fallback
    batch = collate(SENTENCES)
    z = torch.randn(3, 3, generator=torch.Generator().manual_seed(1))
    start, step = stepper(model.decoder)
    with torch.no_grad():
        state, logits = start(model.decoder, z), []
        for t in range(batch.tokens.shape[1] - 1):
            embedded = model.decoder.embedding(batch.tokens[:, t])
            step_logits, state = step(model.decoder, state, embedded, z)
            logits.append(step_logits)
        full = model.decoder(model.decoder.embedding(batch.tokens[:, :-1]), z)
    torch.testing.assert_close(torch.stack(logits, 1), full, atol=1e-5, rtol=1e-5)


def test_greedy_decoding_is_the_argmax_of_the_full_forward() -> None:
    """Teacher-forcing the decoded tokens back in must give back the same arg-max tokens."""
    model = tiny_model("double-lstm")
    z = 3 * torch.randn(4, 3, generator=torch.Generator().manual_seed(2))
    out = decode(model, z, max_length=6)
    with torch.no_grad():
        logits = model.decoder(model.decoder.embedding(out.tokens[:, :-1]), z)
    logits[..., :2] = -math.inf  # PAD and BOS are never decoded
    predicted = logits.argmax(-1)
    steps = torch.arange(out.tokens.shape[1] - 1)
    valid = steps < (out.lengths - 1).unsqueeze(1)
    assert torch.equal(predicted[valid], out.tokens[:, 1:][valid])


def test_decoding_stops_at_eos_or_max_length_and_pads_after() -> None:
    model = tiny_model("lstm")
    z = torch.randn(16, 3, generator=torch.Generator().manual_seed(3))
    out = decode(model, z, max_length=4, sample=True, generator=torch.Generator().manual_seed(0))
    assert out.tokens.shape[1] <= 4 + 2
    for row, length, finished in zip(out.tokens, out.lengths, out.finished, strict=True):
        words = row[1 : length - 1] if finished else row[1:length]
        assert (words != EOS_ID).all() and (words != PAD_ID).all()
        assert (row[length:] == PAD_ID).all()
        assert bool(finished) == (row[length - 1] == EOS_ID)
        assert len(words) <= 4
    assert [len(w) for w in out.words()] == [
        int(n) - 2 + (not f) for n, f in zip(out.lengths, out.finished, strict=True)
    ]


def test_sampled_decoding_is_seeded() -> None:
    model = tiny_model("double-lstm")
    z = torch.randn(8, 3, generator=torch.Generator().manual_seed(4))

    def run(seed):
        return decode(model, z, sample=True, generator=torch.Generator().manual_seed(seed)).tokens

    assert torch.equal(run(7), run(7))
    assert not torch.equal(run(7), run(8))


def test_decode_rejects_bad_arguments() -> None:
    model = tiny_model("lstm")
    with pytest.raises(ValueError, match="max_length must be an int >= 1, got 0"):
        decode(model, torch.zeros(1, 3), max_length=0)
    with pytest.raises(ValueError, match="z must have 2 dimensions"):
        decode(model, torch.zeros(3))


# --------------------------------------------------------------------------------------------
# Saliency
# --------------------------------------------------------------------------------------------
def test_saliency_probabilities_sum_to_k_and_vanish_off_the_words(adversarial) -> None:
    batch = collate([[4, 5, 6, 7, 8, 9, 10, 11], [12, 13, 14], [4, 4, 4, 4, 4]])
    num_samples = 2000
    saliency = token_saliency(
        adversarial,
        batch.tokens,
        batch.lengths,
        num_samples=num_samples,
        generator=torch.Generator().manual_seed(0),
    )
    p = saliency.probability
    assert p.shape == batch.tokens.shape
    assert ((p >= 0) & (p <= 1)).all()
    # BOS, EOS and padding are never dropped.
    assert (p[~saliency.eligible] == 0).all()
    assert (p[:, 0] == 0).all()
    assert torch.equal(saliency.eligible.sum(1), batch.lengths - 2)
    # Every sample drops exactly K, so the average of the S masks sums to K exactly (up to
    # float32 rounding); the per-token Monte-Carlo error (std <= 0.5 / sqrt(S) ~ 0.011) only
    # moves individual entries.
    torch.testing.assert_close(p.sum(1), saliency.k.float(), atol=1e-4, rtol=0)
    assert torch.equal(saliency.k, torch.tensor([2, 1, 2]))  # round_half_up(0.3 * n)
    assert torch.equal(saliency.sampled.sum(1), saliency.k)
    assert not (saliency.sampled & ~saliency.eligible).any()
    assert (saliency.standard_error <= 0.5 / math.sqrt(num_samples) + 1e-7).all()


def test_saliency_agrees_with_the_masker_score_distribution(adversarial) -> None:
    """With K = 1 the drop probability of a word is P(its score is the smallest); a second,
    independent estimate from the masker's own training-mode draws must agree within
    Monte-Carlo error: both have std <= 0.5 / sqrt(S); 5 std of the difference is
    5 * sqrt(2) * 0.5 / sqrt(S)."""
    batch = collate([[12, 13, 14]])
    num_samples = 3000
    saliency = token_saliency(
        adversarial,
        batch.tokens,
        batch.lengths,
        num_samples=num_samples,
        generator=torch.Generator().manual_seed(1),
    )
    masker = adversarial.masker.train()
    generator = torch.Generator().manual_seed(2)
    counts = torch.zeros(batch.tokens.shape[1] - 1)
    inputs = batch.tokens[:, :-1]
    is_bos = torch.arange(inputs.shape[1]) == 0
    with torch.no_grad():
        for _ in range(num_samples // 100):
            out = masker(
                inputs.expand(100, -1),
                (batch.lengths - 1).expand(100),
                protected=is_bos,
                generator=generator,
            )
            counts += out.mask.sum(0)
    adversarial.masker.eval()
    tolerance = 5 * math.sqrt(2) * 0.5 / math.sqrt(num_samples)
    torch.testing.assert_close(
        saliency.probability[0, :-1], counts / num_samples, atol=tolerance, rtol=0
    )


def test_uniform_saliency_is_exactly_k_over_n(runs) -> None:
    model, _ = load_sequence_vae(runs / "uniform-seed0" / "best.pt")
    batch = collate([[4, 5, 6, 7, 8], [9, 10]])
    saliency = token_saliency(model, batch.tokens, batch.lengths)
    assert saliency.num_samples == 0
    expected = torch.tensor([2 / 5, 1 / 2])  # K = round_half_up(0.4 * n)
    for row, n in enumerate((5, 2)):
        assert torch.allclose(saliency.probability[row, 1 : n + 1], expected[row].expand(n))
    assert (saliency.probability[:, 0] == 0).all()


def test_saliency_refuses_a_model_without_masker() -> None:
    spec = ModelSpec(vocab_size=15, embedding_dim=4, hidden_size=4, latent_dim=2)
    model = build_sequence_vae(spec).eval()
    batch = collate([[4, 5]])
    with pytest.raises(ValueError, match=r"model\.masker is None"):
        token_saliency(model, batch.tokens, batch.lengths)


def test_saliency_html_shades_and_boxes_every_word(adversarial, runs) -> None:
    from advmask.seqvae.data import Vocabulary

    vocab = Vocabulary.load(runs / "adversarial-seed0" / "vocab.json")
    batch = collate([[4, 5, 6, 7, 8], [9, 10, 11]])
    saliency = token_saliency(
        adversarial,
        batch.tokens,
        batch.lengths,
        num_samples=50,
        generator=torch.Generator().manual_seed(0),
    )
    page = saliency_html(saliency, vocab)
    assert page.count('class="w') == 8
    assert page.count('class="w dropped"') == int(saliency.k.sum())
    assert page.count("P(dropped) = ") == 8


# --------------------------------------------------------------------------------------------
# Aggregates
# --------------------------------------------------------------------------------------------
def test_profiles_average_the_right_tokens(adversarial) -> None:
    batch = collate([[4, 30, 3, 5], [3, 200]])
    saliency = token_saliency(
        adversarial,
        batch.tokens,
        batch.lengths,
        num_samples=10,
        generator=torch.Generator().manual_seed(0),
    )
    p = saliency.probability
    frequency = drop_by_frequency([saliency], edges=(10, 100))
    assert frequency.labels == ("1-10", "11-100", ">100", "<unk>")
    assert frequency.count.tolist() == [2, 1, 1, 2]
    expected = [
        (p[0, 1] + p[0, 4]) / 2,  # ids 4 and 5: ranks 1 and 2
        p[0, 2],  # id 30: rank 27
        p[1, 2],  # id 200: rank 197
        (p[0, 3] + p[1, 1]) / 2,  # the two <unk>
    ]
    torch.testing.assert_close(frequency.probability, torch.stack(expected).double())
    torch.testing.assert_close(
        frequency.uniform, torch.tensor([0.25, 0.25, 0.5, (0.25 + 0.5) / 2], dtype=torch.float64)
    )
    position = drop_by_position([saliency], max_position=3)
    assert position.labels == ("1", "2", "3+")
    assert position.count.tolist() == [2, 2, 2]
    torch.testing.assert_close(position.probability[2], ((p[0, 3] + p[0, 4]) / 2).double())


# --------------------------------------------------------------------------------------------
# Latent space
# --------------------------------------------------------------------------------------------
def test_interpolation_endpoints_decode_the_posterior_means(adversarial) -> None:
    source, target = [4, 5, 6, 7], [8, 9, 10]
    walk = interpolate(adversarial, source, target, num_steps=4, max_length=12)
    means = posterior_means(adversarial, [source, target])
    assert torch.equal(walk.z[0], means[0]) and torch.equal(walk.z[-1], means[1])
    ends = decode(adversarial, means, max_length=12)
    assert walk.decoded.words()[0] == ends.words()[0]
    assert walk.decoded.words()[-1] == ends.words()[1]
    assert walk.weights.tolist() == pytest.approx([0, 1 / 3, 2 / 3, 1])


def test_neighbourhood_and_prior_samples_are_seeded(adversarial) -> None:
    def around(seed):
        return neighbourhood(
            adversarial, [4, 5, 6], 4, generator=torch.Generator().manual_seed(seed)
        )

    a, b = around(0), around(0)
    assert torch.equal(a.z, b.z) and torch.equal(a.decoded.tokens, b.decoded.tokens)
    mean = posterior_means(adversarial, [[4, 5, 6]])[0]
    tight = neighbourhood(
        adversarial, [4, 5, 6], 4, scale=1e-6, generator=torch.Generator().manual_seed(0)
    )
    torch.testing.assert_close(tight.z, mean.expand(4, -1), atol=1e-5, rtol=0)
    samples = prior_samples(adversarial, 5, generator=torch.Generator().manual_seed(0))
    again = prior_samples(adversarial, 5, generator=torch.Generator().manual_seed(0))
    assert samples.z.shape == (5, adversarial.decoder.latent_dim)
    assert torch.equal(samples.decoded.tokens, again.decoded.tokens)


# --------------------------------------------------------------------------------------------
# The lambda study's log and the rate ablation
# --------------------------------------------------------------------------------------------
def test_recipe_logs_score_statistics_for_the_lambda_study(runs) -> None:
    columns = read_score_log(runs / "adversarial-seed0")
    steps = columns["step"]
    assert steps == [2.0 * (i + 1) for i in range(len(steps))] and len(steps) == 6  # 12 steps
    for name in ("score_l1", "score_mean_abs", "score_std", "adversary_grad_norm"):
        assert all(math.isfinite(v) for v in columns[name]), name
    assert all(v > 0 for v in columns["adversary_grad_norm"])
    assert all(v == 1.0 for v in columns["score_std"])  # the recipe's default std is fixed
    # l1 over a sentence's words is at least the per-word mean |score| (sentences >= 1 word).
    assert all(
        l1 >= mean for l1, mean in zip(columns["score_l1"], columns["score_mean_abs"], strict=True)
    )
    assert not (runs / "uniform-seed0" / "scores.csv").exists()  # no adversary, nothing logged


def write_metrics(run_dir, dropout, rate, seed, neg_elbo, kl, mi):
    run_dir.mkdir(parents=True)
    metrics = {
        "model": f"ptb {dropout} [{rate}]",
        "dropout": dropout,
        "rate": rate,
        "seed": seed,
        "test": {"neg_elbo": neg_elbo, "kl": kl, "mutual_information": mi},
    }
    (run_dir / "metrics.json").write_text(json.dumps(metrics))


def test_rate_ablation_groups_by_kind_and_rate_over_seeds(tmp_path, analyze, capsys) -> None:
    values = {
        ("uniform", 0.2): [(100.0, 1.0, 0.5), (102.0, 3.0, 1.5)],
        ("uniform", 0.4): [(98.0, 4.0, 2.0)],
        ("adversarial", 0.2): [(97.0, 5.0, 3.0), (99.0, 7.0, 4.0), (95.0, 6.0, 5.0)],
    }
    dirs = []
    for (kind, rate), seeds in values.items():
        for seed, (neg_elbo, kl, mi) in enumerate(seeds):
            run_dir = tmp_path / "ptb" / f"{kind}-{rate}-seed{seed}"
            write_metrics(run_dir, kind, rate, seed, neg_elbo, kl, mi)
            dirs.append(run_dir)
    points = analyze.main(["rate-ablation", *map(str, dirs)])
    assert [(p.dropout, p.rate, p.seeds) for p in points] == [
        ("adversarial", 0.2, (0, 1, 2)),
        ("uniform", 0.2, (0, 1)),
        ("uniform", 0.4, (0,)),
    ]
    adversarial = points[0].metrics
    assert adversarial["neg_elbo"].mean == pytest.approx(97.0)
    assert adversarial["neg_elbo"].std == pytest.approx(2.0)  # sample std of 97, 99, 95
    assert adversarial["kl"].mean == pytest.approx(6.0) and adversarial["kl"].std == 1.0
    assert points[1].metrics["mutual_information"].std == pytest.approx(math.sqrt(0.5))
    assert points[2].metrics["kl"].std == 0.0
    out = tmp_path / "ptb" / "analysis"
    saved = json.loads((out / "rate_ablation.json").read_text())
    assert saved[0]["neg_elbo"] == {"mean": 97.0, "std": 2.0}
    assert_png(out / "rate_ablation.png")
    assert_svg(out / "rate_ablation.svg")
    assert rate_ablation([]) == []
