"""Command-line flags derived from a configuration dataclass."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pytest
from hypothesis import given
from hypothesis import strategies as st

from advmask.training.cli import add_config_arguments, parse_config


@dataclass(frozen=True)
class Config:
    preset: str = field(default="synthetic", metadata={"help": "start from", "choices": ("a", "b")})
    dropout: tuple[str, ...] = field(
        default=("none", "uniform"), metadata={"choices": ("none", "uniform", "adversarial")}
    )
    seed: tuple[int, ...] = (0,)
    rate: float = 0.3
    epochs: int = 10
    compile: bool = False
    resume: bool = True
    threads: Optional[int] = None  # noqa: UP045 - the typing.Optional spelling is supported too
    data_dir: str | None = field(default=None, metadata={"help": "50% of the corpus"})
    widths: tuple[float, ...] | None = None
    pair: tuple[int, int] = (1, 2)
    out: Path = Path("runs")
    tags: tuple[str, ...] = field(default_factory=lambda: ("x", "y"))
    derived: int = field(default=0, init=False)


@dataclass
class Required:
    name: str
    size: int = 3


def test_defaults_without_flags() -> None:
    assert parse_config(Config, []) == Config()


def test_every_kind_of_flag() -> None:
    argv = [
        "--preset", "b", "--dropout", "adversarial", "none", "--seed", "3", "4", "5",
        "--rate", "0.25", "--epochs", "7", "--compile", "--no-resume", "--threads", "4",
        "--data-dir", "/data/ptb", "--widths", "0.5", "1.5", "--pair", "8", "9", "--out", "x/y",
    ]  # fmt: skip
    config = parse_config(Config, argv)
    assert config == Config(
        preset="b", dropout=("adversarial", "none"), seed=(3, 4, 5), rate=0.25, epochs=7,
        compile=True, resume=False, threads=4, data_dir="/data/ptb", widths=(0.5, 1.5),
        pair=(8, 9), out=Path("x/y"),
    )  # fmt: skip
    # Types, not just values: tuples (not argparse's lists) of the item type.
    assert type(config.seed) is tuple and all(type(s) is int for s in config.seed)
    assert type(config.widths) is tuple and type(config.rate) is float
    assert isinstance(config.out, Path)


def test_precedence_flags_then_defaults_then_dataclass() -> None:
    preset = {"rate": 0.5, "epochs": 99, "seed": [1, 2], "compile": True}
    config = parse_config(Config, ["--epochs", "3", "--no-compile"], defaults=preset)
    assert config.rate == 0.5  # from defaults
    assert config.epochs == 3  # the flag wins
    assert config.compile is False  # an explicit --no-compile beats a True default
    assert config.seed == (1, 2)  # list in defaults -> tuple
    assert config.threads is None and config.preset == "synthetic"  # dataclass defaults


def test_optional_none_from_defaults() -> None:
    config = parse_config(Config, [], defaults={"widths": None, "threads": None})
    assert config.widths is None and config.threads is None
    assert parse_config(Config, [], defaults={"widths": [1.0]}).widths == (1.0,)


@pytest.mark.parametrize(
    "argv",
    [
        ["--preset", "c"],
        ["--dropout", "none", "bogus"],
        ["--epochs", "1.5"],
        ["--rate", "fast"],
        ["--seed"],
        ["--pair", "1"],
        ["--pair", "1", "2", "3"],
        ["--compile", "yes"],
        ["--derived", "1"],
        ["--unknown", "1"],
    ],
)
def test_bad_flags_exit_with_one_error_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        parse_config(Config, argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "usage:" not in err


def test_bad_choice_message_names_value(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_config(Config, ["--dropout", "none", "bogus"])
    err = capsys.readouterr().err
    assert "--dropout" in err and "invalid choice" in err and "bogus" in err


def test_defaults_are_checked() -> None:
    with pytest.raises(ValueError, match=r"not fields of Config: \['bogus'\]"):
        parse_config(Config, [], defaults={"bogus": 1})
    with pytest.raises(ValueError, match="derived"):
        parse_config(Config, [], defaults={"derived": 1})  # init=False: not settable
    with pytest.raises(ValueError, match=r"preset must be one of.*'c'"):
        parse_config(Config, [], defaults={"preset": "c"})
    with pytest.raises(ValueError, match="dropout must be one of"):
        parse_config(Config, [], defaults={"dropout": ("none", "bad")})


def test_help_shows_defaults_and_survives_percent(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parse_config(Config, ["--help"], description="a recipe")
    assert info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "a recipe" in out
    assert "start from (default: synthetic)" in out
    assert "50% of the corpus (default: None)" in out
    assert "--compile, --no-compile" in out
    assert "default: ('x', 'y')" in out  # default_factory evaluated, not shown as None
    assert "--derived" not in out


def test_required_field_from_flag_or_defaults() -> None:
    assert parse_config(Required, ["--name", "n"]) == Required("n", 3)
    assert parse_config(Required, [], defaults={"name": "m"}) == Required("m", 3)
    with pytest.raises(TypeError, match="name"):
        parse_config(Required, [])


def test_add_config_arguments_on_existing_parser() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dirs", nargs="*")
    add_config_arguments(parser, Config)
    namespace = parser.parse_args(["a", "b", "--seed", "2"])
    assert namespace.run_dirs == ["a", "b"] and namespace.seed == [2]
    assert namespace.rate is None and namespace.compile is None  # "not given" is None


@dataclass
class BadList:
    values: list[int] = field(default_factory=list)


@dataclass
class BadUnion:
    value: int | str = 0


@dataclass
class BadTuple:
    value: tuple[int, str] = (0, "a")


@pytest.mark.parametrize("config_type", [BadList, BadUnion, BadTuple])
def test_unsupported_types_raise(config_type: type) -> None:
    with pytest.raises(TypeError, match="value"):
        parse_config(config_type, [])


def test_not_a_dataclass() -> None:
    with pytest.raises(TypeError, match="dataclass"):
        parse_config(dict, [])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="dataclass"):
        parse_config(Config(), [])  # type: ignore[arg-type]


def _to_argv(config: Config) -> list[str]:
    """Flags that spell out every init field of ``config``."""
    argv: list[str] = []
    for f in dataclasses.fields(config):
        if not f.init:
            continue
        value, flag = getattr(config, f.name), "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + flag[2:])
        elif isinstance(value, tuple):
            argv += [flag, *map(str, value)]
        elif value is not None:
            # "--rate=-1e-05": argparse would read a separate "-1e-05" as an option.
            argv.append(f"{flag}={value}")
    return argv


@given(
    preset=st.sampled_from(["a", "b"]),
    dropout=st.lists(st.sampled_from(["none", "uniform", "adversarial"]), min_size=1, max_size=3),
    seed=st.lists(st.integers(-5, 10**6), min_size=1, max_size=4),
    rate=st.floats(-1e6, 1e6, allow_nan=False),
    epochs=st.integers(0, 10**9),
    compile=st.booleans(),
    resume=st.booleans(),
    threads=st.none() | st.integers(1, 64),
    widths=st.none() | st.lists(st.floats(0, 10), min_size=1, max_size=3).map(tuple),
)
def test_round_trip_through_flags(
    preset: str,
    dropout: list[str],
    seed: list[int],
    rate: float,
    epochs: int,
    compile: bool,
    resume: bool,
    threads: int | None,
    widths: tuple[float, ...] | None,
) -> None:
    config = Config(
        preset=preset, dropout=tuple(dropout), seed=tuple(seed), rate=rate, epochs=epochs,
        compile=compile, resume=resume, threads=threads, widths=widths,
    )  # fmt: skip
    # str(float) round-trips exactly, so the parsed config must be equal, not just close.
    assert parse_config(Config, _to_argv(config)) == config


@dataclass(frozen=True)
class Ranged:
    lr: float = field(default=1.0, metadata={"help": "step size", "exclusive_minimum": 0.0})
    rate: float | None = field(default=None, metadata={"minimum": 0.0, "maximum": 1.0})
    seeds: tuple[int, ...] = field(default=(0,), metadata={"minimum": 0})
    epochs: int = field(default=3, metadata={"help": "passes (default: three)", "minimum": 1})


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--lr", "0"], "argument --lr: must be > 0.0, got 0.0"),
        (["--lr=nan"], "argument --lr: must be a finite number, got nan"),
        (["--lr=-inf"], "argument --lr: must be a finite number, got -inf"),
        (["--rate", "1.5"], "argument --rate: must be >= 0.0 and <= 1.0, got 1.5"),
        (["--seeds", "1", "-2"], "argument --seeds: must be >= 0, got -2"),
        (["--epochs", "0"], "argument --epochs: must be >= 1, got 0"),
    ],
)
def test_ranges_are_checked_when_parsed(argv, expected, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        parse_config(Ranged, argv)
    err = capsys.readouterr().err
    assert info.value.code == 2
    assert err.startswith(f"error: {expected}") and err.count("\n") == 1, err


def test_in_range_values_and_none_pass() -> None:
    config = parse_config(Ranged, ["--lr", "1e-9", "--rate", "1", "--seeds", "0", "3"])
    assert config == Ranged(lr=1e-9, rate=1.0, seeds=(0, 3))


def test_out_of_range_defaults_are_a_programming_error() -> None:
    with pytest.raises(ValueError, match=r"default of lr must be > 0\.0, got -1"):
        parse_config(Ranged, [], defaults={"lr": -1.0})


def test_help_shows_the_given_defaults_and_ranges_once(capsys) -> None:
    with pytest.raises(SystemExit):
        parse_config(Ranged, ["--help"], defaults={"lr": 0.5, "seeds": [1, 2]})
    out = " ".join(capsys.readouterr().out.split())
    assert "step size (range > 0.0; default: 0.5)" in out
    assert "--seeds SEEDS [SEEDS ...] range >= 0; default: (1, 2)" in out
    assert out.endswith("passes (default: three) (range >= 1)")  # its own default only
    assert out.count("default:") == 4  # lr, rate, seeds and the one epochs states itself
