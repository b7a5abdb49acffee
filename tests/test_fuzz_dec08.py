"""Property tests for the input formats the issue-21 fuzz tests (``test_fuzz_inputs.py``) did not
reach: serving runtime presets (``runtimes/*.yaml`` or a path to one) and the number-list options
every workload command parses (``--batch 1,8``, ``--context 1k,8k``, ``--prompt``, serve's
``--rates``).  The property is the project's: a valid input gives finite results, anything else
ends with exit 2 and one line -- never ``internal error``, a traceback, a hang or NaN/inf.

Fixed-seed (derandomised) and small, as the CI profile of ``test_fuzz_inputs.py``;
``ACCELSIM_FUZZ_SCALE`` multiplies the counts."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from fuzz_inputs import RESULT_KEYS, TINY_MODEL, assert_finite, corrupted, dump_yaml, fuzz, mutated, run_cli
from hypothesis import given
from hypothesis import strategies as st

REPO = Path(__file__).resolve().parent.parent
RUNTIME_DOCS = {p.stem: yaml.safe_load(p.read_text(encoding="utf-8"))
                for p in sorted((REPO / "runtimes").glob("*.yaml"))}
@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fuzz08")
    (root / "tiny.yaml").write_text(dump_yaml(TINY_MODEL), encoding="utf-8")
    return root


def test_every_bundled_runtime_is_fuzzed():
    assert {"vllm", "sglang", "tensorrt-llm", "accelsim"} <= set(RUNTIME_DOCS)


@fuzz(60)
@given(data=st.data(), name=st.sampled_from(sorted(RUNTIME_DOCS)))
def test_runtime_presets(scratch, data, name):
    raw = data.draw(corrupted(dump_yaml(data.draw(mutated(RUNTIME_DOCS[name])))))
    path = scratch / f"{name}.yaml"
    path.write_bytes(raw)
    code, out, _ = run_cli("run", "--model", str(scratch / "tiny.yaml"), "--runtime", str(path),
                           "--context", "64", "--json")
    if code == 0:
        assert_finite(json.loads(out), RESULT_KEYS)


# Pieces a list option is typed from: digits, the k suffix, separators and the typos around them.
_PIECES = st.sampled_from(["0", "1", "2", "8", "64", "1k", "2k", "1K", "k", ",", ",,", " ", "-1", "1.5",
                           "1e3", "nan", "inf", "0x10", "١", "99999999999999999999", "16777217", "1_000"])
LIST_TEXT = st.lists(_PIECES, min_size=0, max_size=5).map("".join)


@fuzz(60)
@given(option=st.sampled_from(["--batch", "--context", "--prompt"]), text=LIST_TEXT)
def test_workload_list_options(scratch, option, text):
    phase = "prefill" if option == "--prompt" else "decode"
    code, out, _ = run_cli("run", "--model", str(scratch / "tiny.yaml"), "--phase", phase, option, text,
                           "--json")
    if code == 0:
        rows = json.loads(out)
        for row in rows if isinstance(rows, list) else [rows]:
            assert_finite(row, RESULT_KEYS)


@fuzz(25)
@given(text=st.lists(st.sampled_from(["1", "0.5", "4", "1e-7", "1e9", "2e9", ",", ",,", " ", "-2", "nan",
                                      "inf", "1e400", "x", "1/2"]), min_size=0, max_size=4).map("".join))
def test_serve_rates(scratch, text):
    code, out, _ = run_cli("serve", "--model", str(scratch / "tiny.yaml"), "--rates", text, "--requests", "4",
                           "--prompt", "32", "--output", "2", "--out", str(scratch / "serve"), "--force",
                           "--json")
    if code == 0:
        assert_finite(json.loads(out))
