"""Flags and file checks shared by the analysis tests."""

SCORE_FLAGS = ["--score-log-every", "2", "--threads", "1"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    assert len(data) > 5000, (path, len(data))


def assert_svg(path) -> None:
    text = path.read_text()
    assert "<svg" in text and len(text) > 5000, path
