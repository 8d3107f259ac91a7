"""SequenceVAE: the data layout, what the masker sees, and the loss it returns."""

import pytest
import torch
import torch.nn.functional as F

from advmask import AdversarialMasker, UniformMasker
from advmask.row_draws import RowDraws
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


@pytest.mark.parametrize(("start", "stop"), [(0, 2), (1, 3), (2, 3)])
def test_rows_of_a_global_batch_get_the_posterior_noise_of_one_process(start, stop) -> None:
    # Eval mode: z is the only draw, so a block's loss terms are the whole batch's rows.
    vae = model().eval()
    tokens, lengths = batch([4, 6, 5])
    torch.manual_seed(1)
    whole = vae(tokens, lengths)
    after_whole = torch.get_rng_state()
    torch.manual_seed(1)
    rows = RowDraws(start, stop, 3)
    part = vae(tokens[start:stop], lengths[start:stop], row_draws=rows)
    assert torch.equal(torch.get_rng_state(), after_whole)
    torch.testing.assert_close(
        part.reconstruction, whole.reconstruction[start:stop], rtol=1e-12, atol=1e-12
    )
    if start > 0:  # without the rows, the block draws the noise of rows 0:stop - start
        torch.manual_seed(1)
        alone = vae(tokens[start:stop], lengths[start:stop])
        assert not torch.allclose(alone.reconstruction, part.reconstruction, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match=r"shape must have 2 rows \(rows 0:2 of 3\)"):
        vae(tokens, lengths, row_draws=RowDraws(0, 2, 3))


def test_loss_is_mean_reconstruction_plus_weighted_kl_plus_regularizer() -> None:
    masker = AdversarialMasker(
        vocab_size=VOCAB, rate=0.5, kl_weight=2.0, embedding_dim=4, hidden_size=4
    )
    vae = model(masker).train()
    tokens, lengths = batch([4, 6, 2])
    out = vae(tokens, lengths, beta=0.3)
    expected = out.reconstruction.mean() + 0.3 * out.kl.mean() + out.masker.regularizer
    torch.testing.assert_close(out.loss, expected, rtol=1e-12, atol=1e-12)
    assert float(out.masker.regularizer.detach()) > 0


def test_the_old_name_of_beta_is_refused_naming_the_new_one() -> None:
    # kl_weight is the adversary's lambda; on the VAE it would silently mean another weight.
    vae = model().train()
    tokens, lengths = batch([4, 6])
    with pytest.raises(TypeError, match=r"kl_weight is now called beta, got kl_weight=0\.3"):
        vae(tokens, lengths, kl_weight=0.3)
    with pytest.raises(TypeError, match="unexpected keyword argument 'betta'"):
        vae(tokens, lengths, betta=0.3)


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
        out = model(tokens, lengths, beta=1.0)
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


# --------------------------------------------------------------------------------------------
# One masking path: the model masks through advmask.MaskedEmbedding
# --------------------------------------------------------------------------------------------
def test_the_decoder_embedding_is_the_masked_embedding_holding_masker_and_fill() -> None:
    from advmask import MaskedEmbedding

    masker = UniformMasker(rate=0.5)
    vae = model(masker, fill="learned")
    wrapper = vae.decoder.embedding
    assert isinstance(wrapper, MaskedEmbedding) and vae.input_embedding is wrapper
    assert vae.masker is masker and wrapper.masker is masker
    assert vae.fill == wrapper.fill == "learned"
    assert vae.drop_vector is wrapper.drop_vector
    assert isinstance(wrapper, torch.nn.Embedding)  # the embedding itself, taken over
    # Nothing is registered twice: the masker and the drop vector live in the wrapper only.
    keys = set(vae.state_dict())
    assert "decoder.embedding.drop_vector" in keys and "decoder.embedding.weight" in keys
    assert not any(key.startswith("masker.") or key == "drop_vector" for key in keys)


def test_training_and_dropped_reconstruction_go_through_masked_embedding(monkeypatch) -> None:
    # Spy on the wrapper's forward and drop: the VAE's training step must call them (and what
    # forward returns must be what the decoder reads), so that a fix made in MaskedEmbedding
    # reaches the model and the two paths cannot diverge again. The VAE checks the ids at its
    # entry and calls the wrapper's forward past its id check (_embed_and_mask), the part of
    # forward that embeds and masks: that is the part spied on.
    from advmask.embedding import MaskedEmbedding

    calls = {"forward": 0, "drop": 0}
    forward, drop = MaskedEmbedding._embed_and_mask, MaskedEmbedding.drop
    marker = 1e3  # added to the wrapper's output: visible in the loss if the decoder reads it

    def spy_forward(self, *args, **kwargs):
        calls["forward"] += 1
        return forward(self, *args, **kwargs) + marker

    def spy_drop(self, *args, **kwargs):
        calls["drop"] += 1
        return drop(self, *args, **kwargs)

    vae = model(UniformMasker(rate=0.5), fill="unk").train()
    tokens, lengths = batch([4, 6, 2])
    torch.manual_seed(3)
    plain = vae(tokens, lengths)
    monkeypatch.setattr(MaskedEmbedding, "_embed_and_mask", spy_forward)
    monkeypatch.setattr(MaskedEmbedding, "drop", spy_drop)
    torch.manual_seed(3)
    spied = vae(tokens, lengths)
    assert calls == {"forward": 1, "drop": 1}
    assert spied.masker is vae.input_embedding.last_output
    assert not torch.equal(spied.loss, plain.loss)
    z = torch.randn(3, 3, dtype=torch.float64)
    drop_mask = torch.zeros(3, tokens.shape[1] - 1, dtype=torch.float64)
    drop_mask[:, 1] = 1.0
    vae.reconstruction_nll(tokens, lengths, z, drop_mask)
    assert calls == {"forward": 1, "drop": 2}


def test_the_unk_id_is_passed_in_not_hard_coded() -> None:
    from advmask.seqvae.factory import ModelSpec, build_sequence_vae
    from advmask.seqvae.vae import DEFAULT_UNK_ID

    assert DEFAULT_UNK_ID == UNK_ID  # the default is the vocabulary's <unk>
    torch.manual_seed(0)
    vae = SequenceVAE(
        LSTMEncoder(VOCAB, 8, 12, 3), DoubleLSTMDecoder(VOCAB, 8, 12, 3), fill="unk", unk_id=7
    )
    assert torch.equal(vae.fill_vector(), vae.decoder.embedding.weight[7])
    spec = ModelSpec(vocab_size=VOCAB, embedding_dim=8, hidden_size=8, latent_dim=3, fill="unk")
    assert build_sequence_vae(spec).input_embedding.fill_id == UNK_ID
    built = build_sequence_vae(ModelSpec(**{**spec.__dict__, "unk_id": 9}))
    assert torch.equal(built.fill_vector(), built.decoder.embedding.weight[9])
    with pytest.raises(ValueError, match=r"unk_id must be an id in \[0, 30\)"):
        SequenceVAE(
            LSTMEncoder(VOCAB, 8, 12, 3), LSTMDecoder(VOCAB, 8, 12, 3), fill="unk", unk_id=VOCAB
        )


def test_a_decoder_already_masked_is_refused() -> None:
    from advmask import mask_input_embeddings

    decoder = DoubleLSTMDecoder(VOCAB, 8, 12, 3)
    mask_input_embeddings(decoder, None)
    with pytest.raises(ValueError, match="already masked"):
        SequenceVAE(LSTMEncoder(VOCAB, 8, 12, 3), decoder)


def test_vae_parameters_keep_the_order_of_the_earlier_layout() -> None:
    # Optimiser states of earlier runs index the VAE's parameters by position, and gradient
    # clipping sums their norms in this order: the drop vector stays last, the embedding's
    # weight first among the decoder's.
    vae = model(AdversarialMasker(vocab_size=VOCAB, rate=0.5, embedding_dim=4, hidden_size=4),
                fill="learned")  # fmt: skip
    names = {id(p): name for name, p in vae.named_parameters()}
    order = [names[id(p)] for p in vae.vae_parameters()]
    encoder = [name for name, _ in vae.encoder.named_parameters()]
    decoder = [name for name, _ in vae.decoder.named_parameters()]
    decoder = [n for n in decoder if not n.startswith("embedding.masker.") and "drop" not in n]
    assert order == [
        *(f"encoder.{name}" for name in encoder),
        *(f"decoder.{name}" for name in decoder),
        "decoder.embedding.drop_vector",
    ]
    assert order[len(encoder)] == "decoder.embedding.weight"


def test_a_model_copies_after_a_training_step() -> None:
    # torch.optim.swa_utils.AveragedModel deep-copies the model; the masker's output of the
    # last step (kept by the embedding wrapper) must not stop it.
    import copy

    vae = model(AdversarialMasker(vocab_size=VOCAB, rate=0.5, embedding_dim=4, hidden_size=4))
    tokens, lengths = batch([4, 6])
    vae.train()(tokens, lengths).loss.backward()
    twin = copy.deepcopy(vae)
    assert twin.input_embedding.last_output is None
    assert twin.masker is not vae.masker
    assert twin.state_dict().keys() == vae.state_dict().keys()
