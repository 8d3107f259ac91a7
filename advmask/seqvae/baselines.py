"""The KL baselines a sequence VAE is compared with, by name.

A baseline decides the training loss ``mean_b(rec_b) + beta_t * KL_term``: the KL weight
``beta_t`` of the 1-based step ``t`` and the free bits ``lambda`` (nats per latent dimension) of
the KL term (:func:`~advmask.seqvae.schedules.free_bits_kl`, 0 = the plain KL); three of them
also change how a step trains (:class:`~advmask.seqvae.trainer.BaselineTrainer` carries that
out). Evaluation always uses the unweighted ELBO of the amortised encoder, so every baseline
is reported under the same evaluator.

==============  ==================================================================================
``annealing``   linear KL annealing from ``kl_start`` to 1 over ``kl_warmup_steps`` (Bowman et al.
                2016, as He et al. 2019 run it); the default
``beta-vae``    a fixed KL weight ``beta`` (Higgins et al. 2017)
``cyclical``    ``kl_cycles`` cycles over the run, rising from 0 to 1 over ``kl_cycle_ratio`` of
                each, then holding 1 (Fu et al. 2019)
``free-bits``   ``annealing`` plus a KL floor of ``free_bits`` nats per latent dimension (Kingma
                et al. 2016)
``lagging``     ``annealing`` with aggressive inference-network training: encoder-only updates
                before each decoder update while the held-out MI keeps improving
                (He et al. 2019; :mod:`~advmask.seqvae.lagging`)
``fbp``         ``pretrain_epochs`` as an autoencoder (KL weight 0), then the decoder is
                initialised again and ``free-bits`` training starts, its annealing with it
                (Li et al. 2019)
``sa-vae``      ``annealing`` with semi-amortised inference: ``svi_steps`` SVI steps of size
                ``svi_lr`` refine the posterior of each sequence, the encoder is trained
                through them (Kim et al. 2018; :mod:`~advmask.seqvae.semi_amortized`)
==============  ==================================================================================

A setting of its own (``beta``, ``kl_cycles``, ``kl_cycle_ratio``, ``free_bits``,
``pretrain_epochs``, ``svi_steps``, ``svi_lr``) away from its default is refused with any
other baseline, rather than silently ignored.

Example:
    >>> baseline = make_baseline("beta-vae", BaselineSettings(beta=0.5), total_steps=100)
    >>> baseline.beta(1), baseline.free_bits, baseline.tag
    (0.5, 0.0, 'beta-vae 0.5')
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

from advmask.seqvae.schedules import (
    ConstantKL,
    CyclicalKLAnnealing,
    KLSchedule,
    LinearKLAnnealing,
)

__all__ = [
    "BASELINES",
    "Baseline",
    "BaselineSettingError",
    "BaselineSettings",
    "baseline_tag",
    "check_baseline",
    "check_schedule",
    "make_baseline",
]


@dataclass(frozen=True)
class BaselineSettings:
    """The settings the baselines read (a recipe's flags of the same names).

    Attributes:
        kl_start: KL weight before the first update (``annealing``, ``free-bits``).
        kl_warmup_steps: updates from ``kl_start`` to 1 (``annealing``, ``free-bits``).
        beta: the fixed KL weight of ``beta-vae``.
        kl_cycles: number of cycles of ``cyclical``.
        kl_cycle_ratio: fraction of each cycle spent rising (``cyclical``).
        free_bits: nats per latent dimension of ``free-bits`` and ``fbp``.
        pretrain_epochs: epochs of autoencoder pretraining of ``fbp``.
        svi_steps: SVI steps per batch of ``sa-vae``.
        svi_lr: their step size.
    """

    kl_start: float = 0.1
    kl_warmup_steps: float = 30000
    beta: float = 1.0
    kl_cycles: int = 4
    kl_cycle_ratio: float = 0.5
    free_bits: float = 0.0
    pretrain_epochs: int = 1
    svi_steps: int = 10
    svi_lr: float = 1.0

    @classmethod
    def of(cls, settings: object) -> BaselineSettings:
        """The attributes of ``settings`` named as these fields (for example a recipe's config).

        Example:
            >>> from types import SimpleNamespace
            >>> config = SimpleNamespace(beta=0.5, kl_start=0.1, kl_warmup_steps=10, kl_cycles=4,
            ...                          kl_cycle_ratio=0.5, free_bits=0.0, pretrain_epochs=1,
            ...                          svi_steps=10, svi_lr=1.0, lr=1.0)
            >>> BaselineSettings.of(config).beta
            0.5
        """
        return cls(**{field.name: getattr(settings, field.name) for field in fields(cls)})


@dataclass(frozen=True)
class Baseline:
    """One baseline, built for one run.

    Attributes:
        name: its key in :data:`BASELINES`.
        schedule: the KL weight by 1-based step.
        free_bits: ``lambda``, free nats per latent dimension in the loss (0 = off).
        tag: how table rows name it: the name, and the value that defines it
            (``"beta-vae 0.5"``, ``"free-bits 1"``).
        pretrain_steps: ``fbp``: steps of autoencoder pretraining; the decoder is initialised
            again before step ``pretrain_steps + 1`` (0 = no pretraining).
        aggressive: ``lagging``: train the encoder aggressively while held-out MI improves.
        svi_steps: ``sa-vae``: SVI steps refining each posterior (0 = amortised inference).
        svi_lr: their step size.
    """

    name: str
    schedule: KLSchedule
    free_bits: float
    tag: str
    pretrain_steps: int = 0
    aggressive: bool = False
    svi_steps: int = 0
    svi_lr: float = 1.0

    def beta(self, step: int) -> float:
        """``beta_t`` of the 1-based ``step``."""
        return self.schedule(step)

    @property
    def runs_in_one_process(self) -> bool:
        """``lagging`` and ``sa-vae``: their extra updates and refinements would bypass the
        averaging of gradients across processes (DDP)."""
        return self.aggressive or self.svi_steps > 0


class BaselineSettingError(ValueError):
    """A setting the chosen baseline does not take; ``setting`` names it."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(message)
        self.setting = setting


class _AfterPretraining:
    """``0`` for the first ``pretrain_steps`` steps, then ``schedule`` started afresh."""

    def __init__(self, schedule: KLSchedule, pretrain_steps: int) -> None:
        self.schedule, self.pretrain_steps = schedule, pretrain_steps

    def __call__(self, step: int) -> float:
        return 0.0 if step <= self.pretrain_steps else self.schedule(step - self.pretrain_steps)


def _annealing(settings: BaselineSettings, total_steps: int, steps_per_epoch: int) -> Baseline:
    schedule = LinearKLAnnealing(start=settings.kl_start, warmup_steps=settings.kl_warmup_steps)
    return Baseline("annealing", schedule, 0.0, baseline_tag("annealing", settings))


def _beta_vae(settings: BaselineSettings, total_steps: int, steps_per_epoch: int) -> Baseline:
    return Baseline("beta-vae", ConstantKL(settings.beta), 0.0, baseline_tag("beta-vae", settings))


def _cyclical(settings: BaselineSettings, total_steps: int, steps_per_epoch: int) -> Baseline:
    schedule = CyclicalKLAnnealing(
        total_steps=total_steps, num_cycles=settings.kl_cycles, ratio=settings.kl_cycle_ratio
    )
    return Baseline("cyclical", schedule, 0.0, baseline_tag("cyclical", settings))


def _free_bits(settings: BaselineSettings, total_steps: int, steps_per_epoch: int) -> Baseline:
    schedule = _annealing(settings, total_steps, steps_per_epoch).schedule
    return Baseline("free-bits", schedule, settings.free_bits, baseline_tag("free-bits", settings))


def _lagging(settings: BaselineSettings, total_steps: int, steps_per_epoch: int) -> Baseline:
    schedule = _annealing(settings, total_steps, steps_per_epoch).schedule
    return Baseline("lagging", schedule, 0.0, "lagging", aggressive=True)


def _fbp(settings: BaselineSettings, total_steps: int, steps_per_epoch: int) -> Baseline:
    pretrain_steps = settings.pretrain_epochs * steps_per_epoch
    if pretrain_steps >= total_steps:
        epochs = total_steps // steps_per_epoch
        raise BaselineSettingError(
            "pretrain_epochs",
            f"fbp's pretrain_epochs must be below the run's epochs ({epochs}), "
            f"got {settings.pretrain_epochs}",
        )
    schedule = _AfterPretraining(_annealing(settings, total_steps, steps_per_epoch).schedule,
                                 pretrain_steps)  # fmt: skip
    tag = baseline_tag("fbp", settings)
    return Baseline("fbp", schedule, settings.free_bits, tag, pretrain_steps=pretrain_steps)


def _sa_vae(settings: BaselineSettings, total_steps: int, steps_per_epoch: int) -> Baseline:
    schedule = _annealing(settings, total_steps, steps_per_epoch).schedule
    tag = baseline_tag("sa-vae", settings)
    return Baseline(
        "sa-vae", schedule, 0.0, tag, svi_steps=settings.svi_steps, svi_lr=settings.svi_lr
    )


BASELINES: dict[str, Callable[[BaselineSettings, int, int], Baseline]] = {
    "annealing": _annealing,
    "beta-vae": _beta_vae,
    "cyclical": _cyclical,
    "free-bits": _free_bits,
    "lagging": _lagging,
    "fbp": _fbp,
    "sa-vae": _sa_vae,
}
"""Baselines by name; each builds a :class:`Baseline` from ``(settings, total_steps,
steps_per_epoch)``."""

# The settings only some baselines read: set away from the default, they choose them.
_OWNERS = {
    "beta": ("beta-vae",),
    "kl_cycles": ("cyclical",),
    "kl_cycle_ratio": ("cyclical",),
    "free_bits": ("free-bits", "fbp"),
    "pretrain_epochs": ("fbp",),
    "svi_steps": ("sa-vae",),
    "svi_lr": ("sa-vae",),
}


# The value that defines a baseline, named in its tag.
_DEFINED_BY = {
    "beta-vae": "beta",
    "free-bits": "free_bits",
    "fbp": "free_bits",
    "sa-vae": "svi_steps",
}


def baseline_tag(name: str, settings: object) -> str:
    """How folders and table rows name a baseline: ``"annealing"``, ``"cyclical"``, or the name
    and the value that defines it (``"beta-vae 0.5"``, ``"free-bits 1"``).

    ``settings``: a :class:`BaselineSettings`, or anything with its attributes (a config).

    Example:
        >>> baseline_tag("free-bits", BaselineSettings(free_bits=1.0))
        'free-bits 1'
    """
    defined_by = _DEFINED_BY.get(name)
    return name if defined_by is None else f"{name} {getattr(settings, defined_by):g}"


def check_baseline(name: str, settings: object) -> None:
    """Refuse an unknown name, and settings of another baseline.

    ``settings``: a :class:`BaselineSettings`, or anything with its attributes (a config).

    Raises:
        ValueError: ``name`` is not a key of :data:`BASELINES`.
        BaselineSettingError: a setting of another baseline differs from its default, or
            ``free-bits`` has ``free_bits == 0``.
    """
    if name not in BASELINES:
        raise ValueError(f"baseline must be one of {tuple(BASELINES)}, got {name!r}")
    settings, defaults = BaselineSettings.of(settings), BaselineSettings()
    for field in fields(BaselineSettings):
        owners, value = _OWNERS.get(field.name, (name,)), getattr(settings, field.name)
        if name not in owners and value != getattr(defaults, field.name):
            which = " or ".join(repr(owner) for owner in owners)
            raise BaselineSettingError(
                field.name, f"{field.name} applies only to baseline {which}, not {name!r}"
            )
    if name in _OWNERS["free_bits"] and not settings.free_bits > 0:
        raise BaselineSettingError(
            "free_bits", f"baseline {name!r} needs free_bits > 0, got {settings.free_bits}"
        )


def make_baseline(
    name: str, settings: object, total_steps: int, steps_per_epoch: int | None = None
) -> Baseline:
    """The baseline ``name`` with ``settings``, for a run of ``total_steps`` updates.

    Args:
        name: a key of :data:`BASELINES`.
        settings: a :class:`BaselineSettings`, or anything with its attributes (a recipe's
            config); the settings of other baselines must keep their defaults.
        total_steps: updates the run may take (the span of ``cyclical``'s cycles, >= 1).
        steps_per_epoch: updates per epoch (``fbp``'s pretraining is counted in epochs);
            None: ``total_steps``.

    Raises:
        ValueError: see :func:`check_baseline`, or a setting out of its range
            (:class:`BaselineSettingError` naming it where it is one of the settings).
    """
    settings = BaselineSettings.of(settings)
    check_baseline(name, settings)
    return BASELINES[name](settings, total_steps, steps_per_epoch or total_steps)


def check_schedule(name: str, settings: object, total_steps: int, steps_per_epoch: int) -> None:
    """Refuse a baseline whose schedule does not fit a run of ``total_steps`` updates.

    Args:
        name, settings, total_steps, steps_per_epoch: as in :func:`make_baseline`.

    Raises:
        BaselineSettingError: naming the setting: ``kl_cycles`` for more cycles than steps,
            ``baseline`` for another schedule that does not fit.

    Example:
        >>> try:
        ...     check_schedule("cyclical", BaselineSettings(kl_cycles=4), 3, 3)
        ... except BaselineSettingError as error:
        ...     print(f"{error.setting}: {error}")
        kl_cycles: each cycle needs a step at least, and the run has 3, got 4
    """
    try:
        make_baseline(name, settings, total_steps, steps_per_epoch)
    except BaselineSettingError:
        raise
    except ValueError as error:
        if name == "cyclical":
            cycles = BaselineSettings.of(settings).kl_cycles
            raise BaselineSettingError(
                "kl_cycles",
                f"each cycle needs a step at least, and the run has {total_steps}, got {cycles}",
            ) from None
        raise BaselineSettingError("baseline", f"{name}: {error}") from None
