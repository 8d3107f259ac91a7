"""The KL baselines a sequence VAE is compared with, by name.

A baseline decides two things of the training loss
``mean_b(rec_b) + beta_t * KL_term``: the KL weight ``beta_t`` of the 1-based step ``t``, and
the free bits ``lambda`` (nats per latent dimension) of the KL term
(:func:`~advmask.seqvae.schedules.free_bits_kl`, 0 = the plain KL). Evaluation always uses the
unweighted ELBO, so every baseline is reported under the same evaluator.

==============  ==================================================================================
``annealing``   linear KL annealing from ``kl_start`` to 1 over ``kl_warmup_steps`` (Bowman et al.
                2016, as He et al. 2019 run it); the default
``beta-vae``    a fixed KL weight ``beta`` (Higgins et al. 2017)
``cyclical``    ``kl_cycles`` cycles over the run, rising from 0 to 1 over ``kl_cycle_ratio`` of
                each, then holding 1 (Fu et al. 2019)
``free-bits``   ``annealing`` plus a KL floor of ``free_bits`` nats per latent dimension (Kingma
                et al. 2016)
==============  ==================================================================================

A setting of its own (``beta``, ``kl_cycles``, ``kl_cycle_ratio``, ``free_bits``) away from its
default is refused with any other baseline, rather than silently ignored.

Example:
    >>> baseline = make_baseline("beta-vae", BaselineSettings(beta=0.5), total_steps=100)
    >>> baseline.kl_weight(1), baseline.free_bits, baseline.tag
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
        free_bits: nats per latent dimension of ``free-bits``.
    """

    kl_start: float = 0.1
    kl_warmup_steps: float = 30000
    beta: float = 1.0
    kl_cycles: int = 4
    kl_cycle_ratio: float = 0.5
    free_bits: float = 0.0

    @classmethod
    def of(cls, settings: object) -> BaselineSettings:
        """The attributes of ``settings`` named as these fields (for example a recipe's config).

        Example:
            >>> from types import SimpleNamespace
            >>> config = SimpleNamespace(beta=0.5, kl_start=0.1, kl_warmup_steps=10, kl_cycles=4,
            ...                          kl_cycle_ratio=0.5, free_bits=0.0, lr=1.0)
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
    """

    name: str
    schedule: KLSchedule
    free_bits: float
    tag: str

    def kl_weight(self, step: int) -> float:
        """``beta_t`` of the 1-based ``step``."""
        return self.schedule(step)


class BaselineSettingError(ValueError):
    """A setting the chosen baseline does not take; ``setting`` names it."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(message)
        self.setting = setting


def _annealing(settings: BaselineSettings, total_steps: int) -> Baseline:
    schedule = LinearKLAnnealing(start=settings.kl_start, warmup_steps=settings.kl_warmup_steps)
    return Baseline("annealing", schedule, 0.0, baseline_tag("annealing", settings))


def _beta_vae(settings: BaselineSettings, total_steps: int) -> Baseline:
    return Baseline("beta-vae", ConstantKL(settings.beta), 0.0, baseline_tag("beta-vae", settings))


def _cyclical(settings: BaselineSettings, total_steps: int) -> Baseline:
    schedule = CyclicalKLAnnealing(
        total_steps=total_steps, num_cycles=settings.kl_cycles, ratio=settings.kl_cycle_ratio
    )
    return Baseline("cyclical", schedule, 0.0, baseline_tag("cyclical", settings))


def _free_bits(settings: BaselineSettings, total_steps: int) -> Baseline:
    schedule = _annealing(settings, total_steps).schedule
    return Baseline("free-bits", schedule, settings.free_bits, baseline_tag("free-bits", settings))


BASELINES: dict[str, Callable[[BaselineSettings, int], Baseline]] = {
    "annealing": _annealing,
    "beta-vae": _beta_vae,
    "cyclical": _cyclical,
    "free-bits": _free_bits,
}
"""Baselines by name; each builds a :class:`Baseline` from ``(settings, total_steps)``."""

# The settings only one baseline reads: set away from the default, they choose it.
_OWNER = {
    "beta": "beta-vae",
    "kl_cycles": "cyclical",
    "kl_cycle_ratio": "cyclical",
    "free_bits": "free-bits",
}


# The value that defines a baseline, named in its tag.
_DEFINED_BY = {"beta-vae": "beta", "free-bits": "free_bits"}


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
        owner, value = _OWNER.get(field.name, name), getattr(settings, field.name)
        if owner != name and value != getattr(defaults, field.name):
            raise BaselineSettingError(
                field.name, f"{field.name} applies only to baseline {owner!r}, not {name!r}"
            )
    if name == "free-bits" and not settings.free_bits > 0:
        raise BaselineSettingError(
            "free_bits", f"baseline 'free-bits' needs free_bits > 0, got {settings.free_bits}"
        )


def make_baseline(name: str, settings: object, total_steps: int) -> Baseline:
    """The baseline ``name`` with ``settings``, for a run of ``total_steps`` updates.

    Args:
        name: a key of :data:`BASELINES`.
        settings: a :class:`BaselineSettings`, or anything with its attributes (a recipe's
            config); the settings of other baselines must keep their defaults.
        total_steps: updates the run may take (the span of ``cyclical``'s cycles, >= 1).

    Raises:
        ValueError: see :func:`check_baseline`, or a setting out of its range.
    """
    settings = BaselineSettings.of(settings)
    check_baseline(name, settings)
    return BASELINES[name](settings, total_steps)
