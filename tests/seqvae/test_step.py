"""One training step without sharding objects, and the checks of a run's settings."""

from __future__ import annotations

import copy
import json
from types import SimpleNamespace

import pytest
import torch

from advmask.seqvae.data import collate
from advmask.seqvae.factory import ModelSpec, build_sequence_vae
from advmask.seqvae.identity import holds_run
from advmask.seqvae.settings import SettingError, check_schedules, check_settings
from advmask.seqvae.step import Optimizers, StepSettings, train_step
from advmask.training.distributed import shard_batch
from advmask.training.loop import Budget
from advmask.training.optim import adam

SPEC = ModelSpec(
    vocab_size=30,
    embedding_dim=8,
    hidden_size=8,
    latent_dim=4,
    dropout="adversarial",
    rate=0.4,
    adversary_embedding_dim=8,
    adversary_hidden_size=8,
)


def trained_once(as_shard: bool) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """One step from seed 0 on a fixed batch; (statistics, parameters after the step)."""
    torch.manual_seed(0)
    model = build_sequence_vae(SPEC).train()
    optimizers = Optimizers(
        torch.optim.SGD(model.vae_parameters(), lr=0.5), adam(model.masker.parameters(), 1e-2)
    )
    batch = collate([[5, 6, 7, 8], [9, 10], [11, 12, 13]])
    given = shard_batch(batch, rank=0, world_size=1) if as_shard else batch
    stats = train_step(model, given, 0.3, optimizers, StepSettings(grad_clip=1.0))
    return stats, copy.deepcopy(model.state_dict())


def test_a_plain_batch_takes_the_step_of_its_one_process_shard_to_the_bit() -> None:
    plain_stats, plain_weights = trained_once(as_shard=False)
    shard_stats, shard_weights = trained_once(as_shard=True)
    assert plain_stats.keys() == shard_stats.keys()
    assert all(torch.equal(plain_stats[k], shard_stats[k]) for k in plain_stats)
    assert all(torch.equal(plain_weights[k], shard_weights[k]) for k in plain_weights)
    # ... and the step did something: the weights moved from the initial ones.
    torch.manual_seed(0)
    initial = build_sequence_vae(SPEC).state_dict()
    assert any(not torch.equal(initial[k], plain_weights[k]) for k in initial)


def test_budget_takes_keywords_only() -> None:
    with pytest.raises(TypeError):
        Budget(3, 5)  # type: ignore[misc]
    assert Budget(epochs=3, patience=5).log_every == 50


SETTINGS = dict(
    decoder="lstm",
    decoder_init="authors",
    hidden_size=8,
    transformer_heads=2,
    dropout=("uniform",),
    seed=(0,),
    rate=(0.4,),
    kl_weight=(1.0,),
    device="cpu",
    relaxation="euclidean",
    relaxation_options=(),
    baseline="annealing",
    beta=1.0,
    kl_start=0.1,
    kl_warmup_steps=10,
    kl_cycles=4,
    kl_cycle_ratio=0.5,
    free_bits=0.0,
    pretrain_epochs=1,
    svi_steps=10,
    svi_lr=1.0,
    epochs=2,
    batch_size=2,
)


@pytest.mark.parametrize(
    ("change", "setting", "fragment"),
    [
        ({"decoder": "transformer", "decoder_init": "pytorch"}, "decoder_init", "'pytorch'"),
        ({"decoder": "transformer", "transformer_heads": 3}, "transformer_heads", "got 3"),
        ({"seed": (1, 0, 1)}, "seed", "1 is given twice"),
        ({"device": "gpu"}, "device", "'gpu'"),
        (
            {"relaxation": "sst", "relaxation_options": ("temperature=-1",)},
            "relaxation_options",
            "-1",
        ),
        ({"kl_cycles": 3}, "kl_cycles", "applies only to baseline 'cyclical'"),
        ({"out": "/proc/version/runs"}, "out", "is a file"),
    ],
)
def test_settings_that_cannot_make_a_run_name_the_setting(change, setting, fragment, tmp_path):
    settings = SimpleNamespace(**{**SETTINGS, "out": str(tmp_path), **change})
    with pytest.raises(SettingError, match=fragment) as raised:
        check_settings(settings)
    assert raised.value.setting == setting


def test_good_settings_pass(tmp_path) -> None:
    check_settings(SimpleNamespace(**SETTINGS, out=str(tmp_path)))


def test_a_schedule_longer_than_the_run_names_its_setting() -> None:
    # 6 sequences in batches of 2: 3 steps per epoch, 2 epochs, 6 steps for 7 cycles.
    settings = SimpleNamespace(**{**SETTINGS, "baseline": "cyclical", "kl_cycles": 7})
    train = [[5, 6]] * 6
    with pytest.raises(SettingError, match=r"the run has 6, got 7 \(epochs 2 x 3 steps") as raised:
        check_schedules(settings, train)
    assert raised.value.setting == "kl_cycles"
    check_schedules(SimpleNamespace(**{**SETTINGS, "baseline": "cyclical", "kl_cycles": 6}), train)


def test_a_folder_holds_the_run_of_its_config_only(tmp_path) -> None:
    record = {"seed": 0, "rate": 0.4, "model": {"dropout": "uniform"}}
    assert not holds_run(tmp_path, record)  # no config.json
    (tmp_path / "config.json").write_text("{not json")
    assert not holds_run(tmp_path, record)
    (tmp_path / "config.json").write_text(json.dumps(record))
    assert holds_run(tmp_path, record)
    assert not holds_run(tmp_path, {**record, "seed": 1})
