"""``flag`` fields, ``--preset`` parsing and the exit status of a recipe's failures."""

from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass

import pytest
from rich.console import Console

from advmask.training.cli import UserError, exit_codes, flag, parse_config, parse_with_presets
from advmask.training.divergence import DivergedError
from advmask.training.signals import InterruptedRunError


@dataclass
class Config:
    preset: str = flag("small", "settings to start from", ("small", "big"))
    epochs: int = flag(3, "most epochs", minimum=1)
    lr: float = flag(1.0, "learning rate", exclusive_minimum=0.0, maximum=10.0)
    tokenizer: str = flag("word", "how lines are split", ("word", "char"))
    widths: tuple[int, ...] = flag((4, 8), "hidden sizes", minimum=1)
    tags: list = flag(["a"], "labels")  # noqa: RUF009 - mutable, copied per instance by flag
    options: dict = flag({"k": 1}, "options")  # noqa: RUF009


PRESETS = {
    "small": {"epochs": 2, "lr": 0.5},
    "big": {"epochs": 20, "tokenizer": "char"},
}


def fields() -> dict[str, dataclasses.Field]:
    return {field.name: field for field in dataclasses.fields(Config)}


# ------------------------------------------------------------------------------------------
# flag
# ------------------------------------------------------------------------------------------
def test_flag_puts_help_choices_and_range_in_the_metadata() -> None:
    assert dict(fields()["lr"].metadata) == {
        "help": "learning rate",
        "exclusive_minimum": 0.0,
        "maximum": 10.0,
    }
    assert dict(fields()["tokenizer"].metadata) == {
        "help": "how lines are split",
        "choices": ("word", "char"),
    }
    assert fields()["epochs"].default == 3


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--lr", "0"], "argument --lr: must be > 0.0 and <= 10.0, got 0.0"),
        (["--lr", "11"], "argument --lr: must be > 0.0 and <= 10.0, got 11.0"),
        (["--epochs", "0"], "argument --epochs: must be >= 1, got 0"),
        (["--widths", "4", "0"], "argument --widths: must be >= 1, got 0"),
        (["--tokenizer", "bpe"], "argument --tokenizer: invalid choice: 'bpe'"),
    ],
)
def test_flag_ranges_and_choices_are_checked_when_parsed(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        parse_config(Config, argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert expected in err


def test_flag_refuses_a_misspelt_limit() -> None:
    """``minumum=1`` would otherwise be kept as metadata that nothing checks."""
    with pytest.raises(TypeError, match=r"unknown limits \['minumum'\]"):
        flag(3, "most epochs", minumum=1)


def test_flag_copies_list_and_dict_defaults_per_instance() -> None:
    """A shared default would let one run's mutation leak into every later config."""
    first, second = Config(), Config()
    assert first.tags == ["a"] and first.options == {"k": 1}
    assert first.tags is not second.tags and first.options is not second.options
    first.tags.append("b")
    first.options["k"] = 2
    assert Config().tags == ["a"] and Config().options == {"k": 1}
    assert isinstance(Config().options, dict) and isinstance(Config().tags, list)


def test_flag_keeps_immutable_defaults_as_plain_defaults() -> None:
    assert fields()["widths"].default == (4, 8)
    assert fields()["widths"].default_factory is dataclasses.MISSING


# ------------------------------------------------------------------------------------------
# parse_with_presets
# ------------------------------------------------------------------------------------------
def test_the_first_preset_is_the_default() -> None:
    config = parse_with_presets(Config, PRESETS, [])
    assert (config.preset, config.epochs, config.lr, config.tokenizer) == ("small", 2, 0.5, "word")


@pytest.mark.parametrize("argv", [["--preset", "big"], ["--preset=big"]])
def test_a_chosen_preset_sets_the_defaults_and_the_rest_stay_the_dataclasss(
    argv: list[str],
) -> None:
    config = parse_with_presets(Config, PRESETS, argv)
    assert (config.preset, config.epochs, config.tokenizer) == ("big", 20, "char")
    assert config.lr == 1.0  # big does not set it: not small's 0.5


def test_flags_override_the_preset_wherever_they_are() -> None:
    before = parse_with_presets(Config, PRESETS, ["--epochs", "5", "--preset", "big"])
    after = parse_with_presets(Config, PRESETS, ["--preset", "big", "--epochs", "5"])
    assert before == after
    assert (after.preset, after.epochs, after.tokenizer) == ("big", 5, "char")


def test_help_shows_the_chosen_presets_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    """A parser built before the preset is known would show the dataclass's 3 epochs."""
    with pytest.raises(SystemExit) as info:
        parse_with_presets(Config, PRESETS, ["--preset", "big", "--help"], description="Toy.")
    assert info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps at the terminal width
    assert "Toy." in out
    assert "most epochs (range >= 1; default: 20)" in out
    assert "how lines are split (default: char)" in out
    assert "settings to start from (default: big)" in out


def test_an_unknown_preset_is_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parse_with_presets(Config, PRESETS, ["--preset", "huge"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert "'huge'" in err


# ------------------------------------------------------------------------------------------
# exit_codes
# ------------------------------------------------------------------------------------------
def console_and_output() -> tuple[Console, io.StringIO]:
    output = io.StringIO()
    return Console(file=output, width=200), output


@pytest.mark.parametrize(
    ("error", "status", "line"),
    [
        (UserError("runs/a holds a run\nwith other settings"), 2, "error: runs/a holds a run with other settings\n"),  # noqa: E501
        (DivergedError("loss is not finite at step 3 (epoch 1)"), 1, "error: loss is not finite at step 3 (epoch 1)\n"),  # noqa: E501
    ],
    ids=["user-error", "diverged"],
)  # fmt: skip
def test_exit_codes_turns_errors_into_one_stderr_line_and_a_status(
    error: Exception, status: int, line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    console, _ = console_and_output()
    with pytest.raises(SystemExit) as info, exit_codes(console):
        raise error
    assert info.value.code == status
    assert capsys.readouterr().err == line


def test_exit_codes_honoured_stop_is_status_130_with_its_message(
    capsys: pytest.CaptureFixture[str],
) -> None:
    console, output = console_and_output()
    with pytest.raises(SystemExit) as info, exit_codes(console):
        raise InterruptedRunError("stopped at step 5; checkpoint in runs/a/last.pt")
    assert info.value.code == 130
    assert output.getvalue() == "stopped at step 5; checkpoint in runs/a/last.pt\n"
    assert capsys.readouterr().err == ""


def test_exit_codes_second_ctrl_c_is_status_130(capsys: pytest.CaptureFixture[str]) -> None:
    console, output = console_and_output()
    with pytest.raises(SystemExit) as info, exit_codes(console):
        raise KeyboardInterrupt
    assert info.value.code == 130
    assert output.getvalue() == "interrupted\n"


def test_exit_codes_lets_bugs_and_success_through() -> None:
    """A bug keeps its traceback: only the failures a user can act on become one line."""
    console, _ = console_and_output()
    with pytest.raises(KeyError), exit_codes(console):
        raise KeyError("bug")
    with exit_codes(console):
        result = 1 + 1
    assert result == 2
