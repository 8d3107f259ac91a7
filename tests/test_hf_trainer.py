"""Adversarial word dropout in a Hugging Face ``Trainer``: PTB text, a checkpoint, a resume.

A tiny random GPT-2 (no download) with an :class:`advmask.AdversarialMasker` is trained on the
first lines of PTB for four steps, saving a checkpoint every two; a second run resumes from the
first checkpoint and must end where the uninterrupted run ended (the Trainer restores the
weights, the adversary included, the optimiser, the scheduler and the random state). The final
checkpoint then loads into a plain ``GPT2LMHeadModel``, without advmask.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch

from advmask import AdversarialMasker, MaskedEmbedding, mask_input_embeddings

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate", reason="transformers' Trainer needs accelerate")

PTB = Path(__file__).resolve().parents[2] / "shared" / "data" / "ptb"
LINES, MAX_WORDS, PAD, BOS = 200, 20, 0, 1


def ptb_examples() -> tuple[list[dict[str, torch.Tensor]], int]:
    """The first ``LINES`` training sentences as ``[BOS, words]`` ids; and the vocabulary size."""
    lines = (PTB / "train.txt").read_text(encoding="utf-8").splitlines()[:LINES]
    sentences = [line.split()[:MAX_WORDS] for line in lines if line.strip()]
    counts = Counter(word for sentence in sentences for word in sentence)
    ids = {word: index for index, (word, _) in enumerate(counts.most_common(), start=2)}
    examples = [
        {"input_ids": torch.tensor([BOS, *(ids[word] for word in sentence)])}
        for sentence in sentences
    ]
    return examples, len(ids) + 2


def collate(examples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Right-padded ``input_ids``, ``attention_mask`` (1 = a token) and ``labels``."""
    rows = [example["input_ids"] for example in examples]
    input_ids = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=PAD)
    lengths = torch.tensor([len(row) for row in rows])
    attention_mask = (torch.arange(input_ids.shape[1]) < lengths[:, None]).long()
    labels = input_ids.masked_fill(attention_mask == 0, -100)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


class AdvmaskTrainer(transformers.Trainer):
    """Adds the adversary's regulariser to the loss; BOS and padding are never dropped."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        masked = model.get_input_embeddings()
        is_bos = torch.arange(inputs["input_ids"].shape[1]) == 0
        with masked.valid_inputs(attention_mask=inputs["attention_mask"], protected=is_bos):
            outputs = model(**inputs)
        loss = outputs.loss + masked.regularizer
        return (loss, outputs) if return_outputs else loss


def build(vocab_size: int) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=vocab_size, n_positions=32, n_embd=32, n_layer=2, n_head=2, pad_token_id=PAD
    )
    model = transformers.GPT2LMHeadModel(config)
    masker = AdversarialMasker(vocab_size, rate=0.3, embedding_dim=16, hidden_size=32)
    masked = mask_input_embeddings(model, masker)
    # The adversary has its own learning rate: one optimiser, two parameter groups, in an
    # order that does not depend on object ids (a resume maps the saved state by position).
    adversary = list(masked.masker.parameters())
    adversary_ids = {id(parameter) for parameter in adversary}
    optimizer = torch.optim.AdamW(
        [
            {"params": [p for p in model.parameters() if id(p) not in adversary_ids], "lr": 1e-3},
            {"params": adversary, "lr": 3e-3, "weight_decay": 0.0},
        ]
    )
    return model, optimizer


def train(output_dir: Path, examples, vocab_size: int, resume: Path | None = None):
    model, optimizer = build(vocab_size)
    args = transformers.TrainingArguments(
        output_dir=str(output_dir),
        max_steps=4,
        save_steps=2,
        per_device_train_batch_size=16,
        logging_steps=1,
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    trainer = AdvmaskTrainer(
        model=model,
        args=args,
        train_dataset=examples,
        data_collator=collate,
        optimizers=(optimizer, None),
    )
    trainer.train(resume_from_checkpoint=None if resume is None else str(resume))
    return model, trainer


@pytest.mark.skipif(not (PTB / "train.txt").is_file(), reason="PTB not in ../shared/data/ptb")
def test_trainer_checkpoints_resumes_and_reloads_without_advmask(tmp_path) -> None:
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        examples, vocab_size = ptb_examples()
        model, trainer = train(tmp_path / "run", examples, vocab_size)
        masked = model.get_input_embeddings()
        assert isinstance(masked, MaskedEmbedding) and masked.masker.reversal.step == 4
        losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
        assert len(losses) == 4 and all(loss == loss for loss in losses)  # no NaN
        checkpoint = tmp_path / "run" / "checkpoint-2"
        assert (checkpoint / "model.safetensors").is_file()

        resumed, _ = train(tmp_path / "resumed", examples, vocab_size, resume=checkpoint)
        resumed_masked = resumed.get_input_embeddings()
        assert resumed_masked.masker.reversal.step == 4
        # The adversary was restored and trained on: its weights are those of the
        # uninterrupted run, as are the model's.
        for key, value in model.state_dict().items():
            torch.testing.assert_close(resumed.state_dict()[key], value, msg=key)
        assert not torch.equal(
            resumed_masked.masker.score_network.head.weight,
            build(vocab_size)[0].get_input_embeddings().masker.score_network.head.weight,
        )

        plain, info = transformers.GPT2LMHeadModel.from_pretrained(
            tmp_path / "run" / "checkpoint-4", output_loading_info=True
        )
        assert not info["missing_keys"]
        batch = collate(examples[:8])
        del batch["labels"]
        model.eval()
        plain.eval()
        with torch.no_grad():
            assert torch.equal(plain(**batch).logits, model(**batch).logits)
    finally:
        transformers.logging.set_verbosity(verbosity)
