"""Hostile inputs on ``efficiency.expert_gemm`` (merged 2026-12-07), typed into a --hw file as a
user would and run through the CLI in-process: each must end with exit 2 and one line naming the
file and the key.  Each case was taken silently before its fix (a coerced value or a dropped row)."""
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TABLE = "      512: {64: 0.114, 128: 0.169, 256: 0.192, 512: 0.232, 1024: 0.337}"


def _edited(tmp_path: Path, row: str) -> str:
    """mi355x.yaml with its first gate+up row replaced by ``row``, as text (quotes and YAML
    booleans survive only as typed)."""
    text = (REPO / "hw_configs" / "mi355x.yaml").read_text(encoding="utf-8")
    assert TABLE in text
    path = tmp_path / "chip.yaml"
    path.write_text(text.replace(TABLE, row), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("row, needles", [
    # a quoted share was parsed as a number
    ("      512: {64: '0.114', 128: 0.169}", ("width 512, rows 64", "plain number", "'0.114'")),
    # YAML's true was a share of 1.0
    ("      512: {64: true, 128: 0.169}", ("width 512, rows 64", "plain number", "True")),
    # YAML's true was 1 row per expert
    ("      512: {true: 0.114, 128: 0.169}", ("rows per expert", "positive integer", "True")),
    # '512' and 512 became one width, the second table silently replacing the first
    ("      '512': {64: 0.5}\n      512: {64: 0.114, 128: 0.169}", ("width 512 given twice (also as '512')",)),
    # the same for rows per expert within one width
    ("      512: {'64': 0.5, 64: 0.114}", ("rows per expert (at width 512) 64 given twice (also as '64')",)),
])
def test_expert_gemm_table_typos_are_one_line(cli, tmp_path, row, needles):
    hw = _edited(tmp_path, row)
    code, _, err = cli("run", "--model", "mixtral-8x7b", "--hw", hw, "--chips", "8", "--tp", "8")
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith(f"error: {hw}: efficiency.expert_gemm.up"), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_a_plain_table_still_loads(cli, tmp_path):
    """The refusals above leave a well-formed table (unsorted rows, one width) alone."""
    hw = _edited(tmp_path, "      512: {1024: 0.337, 64: 0.114}")
    code, _, err = cli("run", "--model", "mixtral-8x7b", "--hw", hw, "--chips", "8", "--tp", "8")
    assert code == 0, err
