"""SequenceVAE: the data layout, what the masker sees, and the loss it returns."""

import pytest
import torch
import torch.nn.functional as F

from advmask import AdversarialMasker, UniformMasker
from advmask.seqvae.data.vocab import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from advmask.seqvae.models import DoubleLSTMDecoder, LSTMDecoder, LSTMEncoder
from advmask.seqvae.vae import SequenceVAE

VOCAB = 30


def batch(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """[BOS, words, EOS, PAD..] rows with L_b words each; lengths are L_b + 2."""
    generator = torch.Generator().manual_seed(seed)
    width = max(lengths) + 2
    tokens = torch.full((len(lengths), width), PAD_ID)
    for row, num_words in enumerate(lengths):
        tokens[row, 0] = BOS_ID
        tokens[row, 1 : num_words + 1] = torch.randint(4, VOCAB, (num_words,), generator=generator)
        tokens[row, num_words + 1] = EOS_ID
    return tokens, torch.tensor(lengths) + 2


def model(masker=None, fill="zero", decoder=DoubleLSTMDecoder, dtype=torch.float64):
    torch.manual_seed(0)
    vae = SequenceVAE(
        LSTMEncoder(VOCAB, 8, 12, 3),
        decoder(VOCAB, 8, 12, 3, dropout_in=0.0, dropout_out=0.0),
        masker,
        fill=fill,
    )
    return vae.to(dtype)


@pytest.mark.parametrize("decoder", [LSTMDecoder, DoubleLSTMDecoder])
def test_reconstruction_counts_words_and_eos_but_not_bos_or_padding(decoder) -> None:
    vae = model(decoder=decoder).eval()
    tokens, lengths = batch([3, 0, 5])
    z = torch.randn(3, 3, dtype=torch.float64)
    nll = vae.reconstruction_nll(tokens, lengths, z)
    logits = vae.decoder(vae.decoder.embedding(tokens[:, :-1]), z)
    for row in range(3):
        steps = int(lengths[row]) - 1  # L_b + 1 predictions: the words and EOS
        expected = F.cross_entropy(logits[row, :steps], tokens[row, 1 : steps + 1], reduction="sum")
        torch.testing.assert_close(nll[row], expected, rtol=1e-12, atol=1e-12)
    # Extra padding columns change nothing.
    padded = torch.cat([tokens, torch.full((3, 4), PAD_ID)], 1)
    torch.testing.assert_close(
        vae.reconstruction_nll(padded, lengths, z), nll, rtol=1e-10, atol=1e-10
    )


def test_masker_sees_decoder_inputs_and_never_drops_bos_eos_or_padding() -> None:
    seen = {}

    class Spy(UniformMasker):
        def forward(self, tokens, lengths, **kwargs):
            out = super().forward(tokens, lengths, **kwargs)
            seen.update(tokens=tokens, lengths=lengths, out=out)
            return out

    vae = model(Spy(rate=1.0)).train()
    tokens, lengths = batch([3, 0, 5, 1])
    vae(tokens, lengths)
    assert torch.equal(seen["tokens"], tokens[:, :-1])
    mask = seen["out"].mask
    # rate 1: exactly the words are dropped, i.e. input positions 1..L_b.
    positions = torch.arange(mask.shape[1])
    words = (positions >= 1) & (positions <= (lengths - 2).unsqueeze(1))
    assert torch.equal(mask.bool(), words)
    assert torch.equal(seen["out"].k, lengths - 2)


def test_eval_mode_does_not_mask_and_is_deterministic_given_z() -> None:
    vae = model(AdversarialMasker(vocab_size=VOCAB, rate=0.5, embedding_dim=4, hidden_size=4))
    vae = vae.to(torch.float64).eval()
    tokens, lengths = batch([4, 6])
    torch.manual_seed(1)
    out = vae(tokens, lengths)
    assert out.masker is None
    torch.manual_seed(1)
    assert torch.equal(vae(tokens, lengths).loss, out.loss)


def test_loss_is_mean_reconstruction_plus_weighted_kl_plus_regularizer() -> None:
    masker = AdversarialMasker(
        vocab_size=VOCAB, rate=0.5, kl_weight=2.0, embedding_dim=4, hidden_size=4
    )
    vae = model(masker).train()
    tokens, lengths = batch([4, 6, 2])
    out = vae(tokens, lengths, kl_weight=0.3)
    expected = out.reconstruction.mean() + 0.3 * out.kl.mean() + out.masker.regularizer
    torch.testing.assert_close(out.loss, expected, rtol=1e-12, atol=1e-12)
    assert float(out.masker.regularizer.detach()) > 0


def test_free_bits_change_the_loss_not_the_reported_kl() -> None:
    vae = model().eval()
    tokens, lengths = batch([4, 6, 2])
    torch.manual_seed(3)
    plain = vae(tokens, lengths)
    torch.manual_seed(3)
    free = vae(tokens, lengths, free_bits=5.0)
    torch.testing.assert_close(free.kl, plain.kl)
    # every dimension is below 5 nats: the KL term is the constant D * 5 = 15
    torch.testing.assert_close(free.loss, free.reconstruction.mean() + 15.0, rtol=1e-12, atol=0)


def test_adversary_is_separate_and_gets_the_reversed_gradient() -> None:
    masker = AdversarialMasker(
        vocab_size=VOCAB, rate=0.5, kl_weight=0.0, embedding_dim=4, hidden_size=4
    )
    vae = model(masker).train()
    vae_ids = {id(p) for p in vae.vae_parameters()}
    assert vae_ids.isdisjoint(id(p) for p in masker.parameters())
    tokens, lengths = batch([6, 5, 4, 6])
    torch.manual_seed(5)
    out = vae(tokens, lengths)
    adversary = list(masker.parameters())
    vae_params = vae.vae_parameters()
    grads = torch.autograd.grad(out.loss, adversary + vae_params, allow_unused=True)
    adv_grads = grads[: len(adversary)]
    assert any(g is not None and g.abs().sum() > 0 for g in adv_grads)
    # The regulariser reaches only the adversary: no VAE parameter depends on it.
    torch.manual_seed(5)
    out = vae(tokens, lengths)
    reg_grads = torch.autograd.grad(
        out.masker.regularizer + 0.0 * out.loss, vae_params, allow_unused=True
    )
    assert all(g is None or torch.all(g == 0) for g in reg_grads)


def test_unk_fill_equals_replacing_the_token_id() -> None:
    vae = model(fill="unk").eval()
    tokens, lengths = batch([5, 3])
    z = torch.randn(2, 3, dtype=torch.float64)
    drop = torch.zeros(2, tokens.shape[1] - 1, dtype=torch.float64)
    drop[0, 2] = drop[1, 1] = 1.0
    replaced = tokens[:, :-1].clone()
    replaced[0, 2] = replaced[1, 1] = UNK_ID
    logits = vae.decoder(vae.decoder.embedding(replaced), z)
    token_nll = F.cross_entropy(logits.transpose(1, 2), tokens[:, 1:], reduction="none")
    valid = torch.arange(token_nll.shape[1]) < (lengths - 1).unsqueeze(1)
    expected = torch.where(valid, token_nll, 0.0).sum(1)
    assert torch.equal(vae.reconstruction_nll(tokens, lengths, z, drop), expected)


def test_log_likelihood_matches_reconstruction_per_sample() -> None:
    vae = model().eval()
    tokens, lengths = batch([4, 2, 6])
    z = torch.randn(5, 3, 3, dtype=torch.float64)
    log_lik = vae.log_likelihood(tokens, lengths, z, max_rows=4)
    for sample in range(5):
        torch.testing.assert_close(
            log_lik[sample],
            -vae.reconstruction_nll(tokens, lengths, z[sample]),
            rtol=1e-10,
            atol=1e-10,
        )


def test_bad_fill_is_rejected() -> None:
    with pytest.raises(ValueError, match="fill"):
        model(fill="mask")


def test_adversary_with_zero_scores_trains_the_vae_exactly_like_uniform_dropout() -> None:
    # lambda -> infinity pulls the scores to N(0, 1): then the adversarial masker is exactly-K
    # uniform dropout, and the VAE's loss and gradients must be those of UniformMasker given
    # the same noise (no other difference between the two training paths).
    from advmask.seqvae.factory import ModelSpec, build_sequence_vae

    sizes = dict(
        vocab_size=50, embedding_dim=16, hidden_size=24, latent_dim=4, rate=0.4, std="fixed",
        adversary_embedding_dim=8, adversary_hidden_size=8,
    )  # fmt: skip
    torch.manual_seed(0)
    uniform = build_sequence_vae(ModelSpec(**sizes, dropout="uniform")).train()
    adversarial = build_sequence_vae(ModelSpec(**sizes, dropout="adversarial")).train()
    adversarial.load_state_dict(uniform.state_dict(), strict=False)
    with torch.no_grad():
        adversarial.masker.score_network.head.weight.zero_()
    tokens = torch.randint(4, 50, (6, 10))
    lengths = torch.tensor([10, 9, 8, 6, 5, 3])
    tokens = torch.where(torch.arange(10) < lengths[:, None], tokens, 0)
    results = []
    for model in (uniform, adversarial):
        torch.manual_seed(123)
        out = model(tokens, lengths, kl_weight=1.0)
        model.zero_grad()
        out.loss.backward()
        grads = {
            name: p.grad for name, p in model.named_parameters() if p in set(model.vae_parameters())
        }
        results.append((out.masker.mask.detach(), out.loss.detach(), grads))
    (mask_u, loss_u, grads_u), (mask_a, loss_a, grads_a) = results
    assert torch.equal(mask_u, mask_a)
    torch.testing.assert_close(loss_a, loss_u)
    assert grads_u.keys() == grads_a.keys()
    for name in grads_u:
        torch.testing.assert_close(grads_a[name], grads_u[name], msg=name)
