"""The command line of recipes/analyze.py: one subcommand per analysis, each with its own flags
(refused before any run is read, so no run is trained here)."""

from __future__ import annotations

import re

import pytest

from tests.recipes.test_analyze_commands import _one_line_error


def test_help_lists_the_studies(analyze, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        analyze.main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "lambda-study" in out and "rate-ablation" in out


# Each subcommand, what only its help says, and a value of one of its flags that it refuses.
SUBCOMMANDS = {
    "saliency": ("(repeatable)", ["--num-sentences", "0"]),
    "dropped": ("--max-position", ["--max-position", "0"]),
    "interpolate": ("--steps", ["--steps", "1"]),
    "homotopy": ("--scale", ["--scale", "-1"]),
    "sample": ("z ~ N(0, I)", ["--max-length", "0"]),
    "pmi": ("--num-resamples", ["--z", "median"]),
    "lambda-study": ("score statistics", ["--threads", "0"]),
    "rate-ablation": ("against the rate", ["--split", "train"]),
}


@pytest.mark.parametrize("command", list(SUBCOMMANDS))
def test_each_subcommand_has_its_own_help(analyze, capsys, command) -> None:
    with pytest.raises(SystemExit) as info:
        analyze.main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: analyze.py {command} ")
    assert SUBCOMMANDS[command][0] in " ".join(out.split())  # help text is wrapped
    for other, (only_there, _) in SUBCOMMANDS.items():  # no flag of another analysis
        if other != command and only_there.startswith("--"):
            assert only_there not in out, (command, other)


@pytest.mark.parametrize("command", list(SUBCOMMANDS))
def test_each_subcommand_names_a_bad_value_in_one_line(analyze, capsys, command, tmp_path):
    flag, value = SUBCOMMANDS[command][1]
    _one_line_error(
        capsys,
        rf"argument {flag}: .*{re.escape(value)}.* \(see analyze\.py {command} --help\)",
        lambda: analyze.main([command, str(tmp_path / "run"), flag, value]),
    )
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("command", "old", "new"),
    [
        ("saliency", "--samples", "--num-samples"),
        ("dropped", "--max-sequences", "--num-sentences"),
        ("pmi", "--samples", "--num-samples"),
        ("pmi", "--max-sequences", "--num-sentences"),
        ("pmi", "--resamples", "--num-resamples"),
    ],
)
def test_renamed_flags_are_refused_naming_the_new_name(analyze, capsys, command, old, new):
    for argv in ([command, "RUN", old, "5"], ["RUN", command, f"{old}=5"]):
        _one_line_error(
            capsys,
            rf"argument {old}: renamed {new} \(see analyze\.py {command} --help\)",
            lambda argv=argv: analyze.main(argv),
        )
    # Where the old flag never meant that (homotopy's --num-samples counts codes), it is unknown.
    _one_line_error(
        capsys,
        "unrecognized arguments: --samples 5",
        lambda: analyze.main(["homotopy", "RUN", "--samples", "5"]),
    )
