"""Hostile-input and every-config review of 2026-12-08: each case below failed before its fix,
driven through ``accelsim.cli.main`` in-process as a user would type it."""
import json

import pytest


def _one_line_error(code: int, err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


# --- dataflow systems choose a split the model allows ------------------------------------------

@pytest.mark.parametrize("model, hw, extra", [
    # 4 query heads (1 KV head) cannot be split 8 ways (a GroqNode) nor 16 (an SN40L node)
    ("gemma-3-1b", "groq-lpu", ()),
    ("gemma-3-1b", "sn40l", ()),
    ("recurrentgemma-2b", "groq-lpu", ()),
    ("bitnet-b1.58-2b4t", "sn40l", ("--phase", "prefill", "--prompt", "256")),
    # Mamba-2's chunked prefill has activation-by-activation matmuls tensor parallelism cannot cut
    ("mamba2-2.7b", "groq-lpu", ("--phase", "prefill", "--prompt", "256")),
    # a lone --chips gives the system's size; its split is the system's choice
    ("gemma-3-1b", "groq-lpu", ("--chips", "16")),
])
def test_dataflow_default_split_fits_the_model(cli, model, hw, extra):
    """Refused before with 'the 8 ranks that split heads must divide the attention heads (4)'
    although the chips hold the model: the default layout now falls back to a smaller
    tensor-parallel split (whole-layer pipeline stages at worst)."""
    code, out, err = cli("run", "--model", model, "--hw", hw, *extra, "--json")
    assert code == 0, err
    row = json.loads(out)
    tp = int(row["layout"].split("tp=")[1].split()[0]) if "tp=" in row["layout"] else 1
    assert row["chips"] % tp == 0 and row["latency_s"] > 0, row["layout"]


def test_dataflow_explicit_split_still_refused_in_one_line(cli):
    """--tp with --pp is the user's own split: not silently changed."""
    code, _, err = cli("run", "--model", "gemma-3-1b", "--hw", "groq-lpu", "--tp", "8", "--pp", "2")
    _one_line_error(code, err, "8 ranks", "attention heads (4)")
