"""Issue 20's one-by-one speed work (a decoder layer lowered once per kind and repeated, fusion
planned once per graph structure, each op's chip numbers read once) must not change one figure.

``FINGERPRINTS`` holds, for a varied sample of steps (dense, hybrid, MoE and MLA models;
prefill and decode; tp / pp / ep / dp / 2D layouts; gpu, systolic, hardwired and dataflow
chips), the headline figures and a digest of every figure, every op row and every kernel of
the joined graph, recorded on main before that work (commit db0791c).  The headline figures are
compared to rtol 1e-12 (so a failure says which figure moved and by how much) and the digests
exactly.  A deliberate change to the model's numbers re-records them:
``PYTHONPATH=. python tests/test_simulate_fingerprints.py --record`` (on the commit before a
speed change, then check the speed change against them)."""
from __future__ import annotations

import hashlib
import json
import math
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from accelsim import api
from accelsim.errors import AccelsimError
from accelsim.transform import Parallelism
from accelsim.workload import Workload

FINGERPRINTS = Path(__file__).resolve().parent / "data" / "simulate_fingerprints.json"


def _par(**kw) -> Parallelism:
    return Parallelism(**kw)


# (model, chip, workload, formats, layout)
SAMPLE: list[tuple[str, str, dict, dict, dict]] = [
    ("llama-3.1-8b", "h100-sxm", {"phase": "decode", "batch": 7, "context": 3000}, {"kv_dtype": "fp8"}, {}),
    ("llama-3.1-8b", "h100-sxm", {"phase": "decode", "batch": 32, "context": 8192},
     {"weight_dtype": "fp8", "kv_dtype": "fp8"}, {}),
    ("llama-3.1-8b", "h100-sxm", {"phase": "prefill", "batch": 2, "prompt": 512}, {}, {}),
    ("llama-3.1-8b", "tpu-v5p", {"phase": "decode", "batch": 16, "context": 8192}, {"weight_dtype": "fp8"}, {}),
    ("llama-3.1-8b", "hardwired-llama-3.1-8b", {"phase": "decode", "batch": 2, "context": 600}, {}, {}),
    ("llama-3.1-8b", "h100-sxm", {"phase": "decode", "batch": 8, "context": 2048}, {}, {"tp": 4, "tp_x": 2}),
    ("llama-3.1-70b", "groq-lpu", {"phase": "decode", "batch": 4, "context": 2048}, {}, {}),
    ("llama-3.1-70b", "h100-sxm", {"phase": "decode", "batch": 16, "context": 4096}, {}, {"tp": 4, "pp": 2}),
    ("llama-3.1-70b", "hardwired-llama-3.1-70b", {"phase": "prefill", "batch": 1, "prompt": 256}, {}, {}),
    ("gpt2", "cerebras-wse3", {"phase": "decode", "batch": 2, "context": 512}, {}, {}),
    ("jamba-v0.1", "h100-sxm", {"phase": "decode", "batch": 4, "context": 4096}, {}, {"tp": 2}),
    ("jamba-v0.1", "tpu-v4", {"phase": "prefill", "batch": 1, "prompt": 1024}, {}, {"tp": 4}),
    ("mixtral-8x7b", "h200", {"phase": "decode", "batch": 12, "context": 1500}, {}, {"tp": 2, "ep": 2}),
    ("deepseek-v3", "b200", {"phase": "decode", "batch": 64, "context": 2048}, {"weight_dtype": "fp8"},
     {"tp": 8, "ep": 8}),
    ("qwen3-235b-a22b", "mi300x", {"phase": "prefill", "batch": 2, "prompt": 1024}, {},
     {"tp": 4, "ep": 4}),
    ("llama-3.1-8b", "h200", {"phase": "decode", "batch": 10, "context": 1200}, {"kv_dtype": "fp8"},
     {"tp": 2, "dp": 2, "attention": "batch"}),
    ("gemma-2-9b", "mi300x", {"phase": "prefill", "batch": 3, "prompt": 700}, {}, {"pp": 2}),
    ("gemma-3-1b", "a100-sxm", {"phase": "decode", "batch": 5, "context": 6000}, {}, {}),
    ("recurrentgemma-2b", "tpu-v5e", {"phase": "decode", "batch": 8, "context": 3000}, {}, {}),
    ("mamba2-2.7b", "h100-sxm", {"phase": "decode", "batch": 16, "context": 1000}, {}, {}),
    ("stripedhyena-7b", "h100-sxm", {"phase": "prefill", "batch": 1, "prompt": 2048}, {}, {}),
    ("rwkv7-2.9b", "b200", {"phase": "decode", "batch": 9, "context": 100}, {}, {}),
    ("mmfreelm-1.3b", "fpga-ternary-mmfree", {"phase": "decode", "batch": 1, "context": 512}, {}, {}),
    ("gpt-oss-120b", "h200", {"phase": "decode", "batch": 6, "context": 2500}, {}, {"tp": 2}),
    ("qwen2.5-7b", "sn40l", {"phase": "decode", "batch": 2, "context": 900}, {}, {}),
]


def _case_id(case) -> str:
    model, chip, workload, formats, layout = case
    return " ".join([model, chip, *(f"{k}={v}" for k, v in {**workload, **formats, **layout}.items())])


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def fingerprint(case) -> dict:
    """The step's headline figures and digests of everything else it reports."""
    model, chip, workload, formats, layout = case
    try:
        step = api.costed_step(model, chip, Workload(**workload), parallelism=_par(**layout) if layout else None,
                               **formats)
    except AccelsimError as err:
        return {"error": str(err)}
    result = step.result
    rest = {f.name: getattr(result, f.name) for f in fields(result) if f.name != "ops"}
    rows = [[getattr(c, f.name) for f in fields(c)] for c in result.ops]
    kernels = [repr(op) for op in step.graph]
    return {"latency_s": result.latency_s, "tokens_per_s": result.tokens_per_s,
            "joules_per_token": result.joules_per_token, "ops": len(result.ops),
            "result": _digest(repr(sorted(rest.items()))), "rows": _digest(repr(rows)),
            "graph": _digest("\n".join(kernels))}


def _recorded() -> dict:
    return json.loads(FINGERPRINTS.read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", SAMPLE, ids=_case_id)
def test_every_figure_and_op_row_equals_main(case):
    expected = _recorded()[_case_id(case)]
    got = fingerprint(case)
    assert ("error" in got) == ("error" in expected), got.get("error") or expected.get("error")
    if "error" in got:
        assert got["error"] == expected["error"]
        return
    for figure in ("latency_s", "tokens_per_s", "joules_per_token"):
        assert math.isclose(got[figure], expected[figure], rel_tol=1e-12, abs_tol=0.0), figure
    assert got["ops"] == expected["ops"]
    for part in ("result", "rows", "graph"):
        assert got[part] == expected[part], f"{part} differs from main's"


def test_the_sample_spans_kinds_layouts_phases_and_families():
    from accelsim import hardware
    kinds = {hardware.load_hardware(chip).kind for _, chip, _, _, _ in SAMPLE}
    assert kinds == {"gpu", "systolic", "hardwired", "dataflow"}
    assert {w["phase"] for _, _, w, _, _ in SAMPLE} == {"prefill", "decode"}
    assert {k for *_, layout in SAMPLE for k in layout} >= {"tp", "pp", "ep", "dp", "tp_x"}
    recorded = _recorded()
    assert sum("error" not in recorded[_case_id(c)] for c in SAMPLE) >= len(SAMPLE) - 2


if __name__ == "__main__" and sys.argv[1:] == ["--record"]:
    FINGERPRINTS.write_text(json.dumps({_case_id(c): fingerprint(c) for c in SAMPLE}, indent=1) + "\n",
                            encoding="utf-8")
