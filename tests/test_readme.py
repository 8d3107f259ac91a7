"""The README's code runs as written (a stale example fails CI)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def test_readme_has_exactly_two_setup_commands() -> None:
    commands = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.DOTALL)
    assert [c.strip() for c in commands] == [
        "pip install -e . && python recipes/seqvae_awd.py",
        'pip install -e ".[test]" && python -m pytest',
    ]


def test_readme_python_examples_run() -> None:
    blocks = python_blocks()
    assert blocks, "README.md lost its code example"
    for block in blocks:
        exec(compile(block, str(README), "exec"), {})
