"""How the CLI writes sizes and counts: one file reads the same here as in a file manager."""

from __future__ import annotations

import pytest

from lambdaserve.cli.render import plural, size_text


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0 B"), (999, "999 B"), (1000, "1.0 kB"), (10_141_156, "10.1 MB"), (2_500_000_000, "2.5 GB")],
)
def test_sizes_are_in_decimal_units(size: int, text: str) -> None:
    assert size_text(size) == text


def test_counts_agree_with_their_nouns() -> None:
    assert [plural(n, "module") for n in (0, 1, 2)] == ["0 modules", "1 module", "2 modules"]
