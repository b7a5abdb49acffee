"""Property tests over hostile inputs (issue 21): every bundled config kind and every foreign
format, mutated, ends as a valid spec with finite, non-negative results, or as the project's own
error (exit 2, one line).  No case may reach ``internal error``, hang or print NaN/inf.

The CI profile is fixed-seed (derandomised) and runs about 2,100 cases; ``ACCELSIM_FUZZ_SCALE``
multiplies every count (``benchmarks/bench_fuzz.py`` runs the long profile).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from fuzz_inputs import (
    HF_DOCS,
    HOSTILE,
    HW_DOCS,
    MODEL_DOCS,
    RESULT_KEYS,
    SCALESIM_CFG,
    SCALESIM_TOPOLOGY,
    SPACE_DOCS,
    STUDY_DOCS,
    TINY_MODEL,
    TRACE_ROWS,
    assert_finite,
    corrupted,
    csv_text,
    dump_json,
    dump_yaml,
    fuzz,
    mutated,
    mutated_rows,
    own_error,
    run_cli,
    time_limit,
)
from hypothesis import given
from hypothesis import strategies as st

CASES: dict[str, int] = {}  # cases run per format (the long profile reports them)


def _count(kind: str) -> None:
    CASES[kind] = CASES.get(kind, 0) + 1


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fuzz")
    (root / "tiny.yaml").write_text(dump_yaml(TINY_MODEL), encoding="utf-8")
    return root


def _write(root: Path, name: str, data: bytes) -> str:
    path = root / name
    path.write_bytes(data)
    return str(path)


@fuzz(450)
@given(data=st.data(), name=st.sampled_from(sorted(HW_DOCS)))
def test_hardware_configs(scratch, data, name):
    _count("hardware")
    raw = data.draw(corrupted(dump_yaml(data.draw(mutated(HW_DOCS[name])))))
    path = _write(scratch, f"{name}.yaml", raw)
    model = "llama-3.1-8b" if name.startswith("hardwired") else str(scratch / "tiny.yaml")
    code, out, _ = run_cli("run", "--model", model, "--hw", path, "--context", "64", "--json")
    if code == 0:
        assert_finite(json.loads(out), RESULT_KEYS)


@fuzz(350)
@given(data=st.data(), name=st.sampled_from(sorted(MODEL_DOCS)))
def test_model_configs(scratch, data, name):
    _count("model")
    raw = data.draw(corrupted(dump_yaml(data.draw(mutated(MODEL_DOCS[name])))))
    path = _write(scratch, f"{name}.yaml", raw)
    code, out, _ = run_cli("models", "show", path, "--json")
    if code == 0:
        assert_finite(json.loads(out), ("params_total", "params_active"))
        if data.draw(st.integers(0, 3)) == 0:  # a quarter also run a step
            code, out, _ = run_cli("run", "--model", path, "--hw", "h100-sxm", "--context", "64", "--json")
            if code == 0:
                assert_finite(json.loads(out), RESULT_KEYS)


@fuzz(450)
@given(data=st.data(), name=st.sampled_from(sorted(HF_DOCS)))
def test_hugging_face_configs(scratch, data, name):
    _count("hf")
    raw = data.draw(corrupted(dump_json(data.draw(mutated(HF_DOCS[name])))))
    path = _write(scratch, "config.json", raw)
    code, out, _ = run_cli("models", "show", path, "--json")
    if code == 0:
        assert_finite(json.loads(out), ("params_total", "params_active"))


@fuzz(200)
@given(data=st.data(), name=st.sampled_from(sorted(SPACE_DOCS)))
def test_design_spaces(scratch, data, name):
    from accelsim.dse import search
    from accelsim.dse.evaluate import Job
    from accelsim.dse.fastpath import evaluate_points
    from accelsim.dse.space import METRICS, load_space
    from accelsim.model.spec import load_model
    from accelsim.workload import Workload
    _count("space")
    raw = data.draw(corrupted(dump_yaml(data.draw(mutated(SPACE_DOCS[name])))))
    path = _write(scratch, f"{name}.yaml", raw)
    space = own_error(load_space, path)
    if space is None:
        return
    w = space.spec.workload
    job = Job(space, load_model("llama-3.1-8b"), Workload(w.phase, w.batch, w.prompt, w.context))
    points = search.random_points(space, 3, data.draw(st.integers(0, 1000)))
    with time_limit():
        rows = own_error(evaluate_points, job, points) or []
    for row in rows:
        if row["status"] == "ok":
            assert_finite({m: row[m] for m in METRICS if row.get(m) is not None}, tuple(METRICS))


@fuzz(100)
@given(data=st.data(), name=st.sampled_from(sorted(STUDY_DOCS)))
def test_study_files(scratch, data, name):
    from accelsim.api import load_study
    _count("study")
    raw = data.draw(corrupted(dump_yaml(data.draw(mutated(STUDY_DOCS[name])))))
    study = own_error(load_study, _write(scratch, f"{name}.yaml", raw))  # running one: e2e tests
    if study is not None:
        assert "/" not in study.name and not study.name.startswith(".")


def _cfg_text(values: dict) -> str:
    lines = ["[general]", "run_name = fuzz", "", "[architecture_presets]"]
    lines += [f"{k} : {v}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


@fuzz(300)
@given(data=st.data())
def test_scalesim_inputs(scratch, data):
    _count("scalesim")
    cfg = dict(SCALESIM_CFG)
    for _ in range(data.draw(st.integers(0, 2))):
        key = data.draw(st.sampled_from(sorted(cfg)))
        if data.draw(st.booleans()):
            cfg[key] = data.draw(st.one_of(HOSTILE, st.sampled_from(["128 %", "%(x)s", "64", "ws", "IS"])))
        else:
            cfg.pop(key)
    cfg_path = _write(scratch, "scale.cfg", data.draw(corrupted(_cfg_text(cfg))))
    rows = data.draw(mutated_rows(SCALESIM_TOPOLOGY)) if data.draw(st.booleans()) else SCALESIM_TOPOLOGY
    topo_path = _write(scratch, "topology.csv", data.draw(corrupted(csv_text(rows))))
    code, out, _ = run_cli("op", "--scalesim-cfg", cfg_path, "--topology", topo_path, "--json")
    if code == 0:
        assert_finite(json.loads(out))


@pytest.fixture(scope="module")
def tiny_costs(scratch):
    from accelsim import api
    return api.cost_model(str(scratch / "tiny.yaml"), "h100-sxm")


@fuzz(300)
@given(data=st.data())
def test_request_traces(scratch, tiny_costs, data):
    from accelsim import api
    from accelsim.sim import serving
    _count("trace")
    rows = data.draw(mutated_rows(TRACE_ROWS))
    path = _write(scratch, "trace.csv", data.draw(corrupted(csv_text(rows))))
    requests = own_error(api.load_trace, path)
    if not requests:
        return
    with time_limit():
        result = own_error(serving.serve, requests, tiny_costs, serving.ServeConfig(), 4.0)
    if result is not None:
        summary = result.summary()
        assert_finite(summary, ("throughput_tokens_per_s", "joules_per_token"))


@fuzz(25)
@given(args=st.lists(st.sampled_from(["--rate", "--requests", "--slo-ttft", "--slo-tpot", "--cv",
                                      "--prompt", "--output", "--max-batch", "--rates"]),
                     min_size=1, max_size=2, unique=True),
       value=st.sampled_from(["nan", "inf", "-inf", "0", "-1", "1e400", "100000000", "1e-320", "1e-300",
                              "abc", "", "1,nan", "2,inf"]))
def test_serve_options(scratch, args, value):
    _count("serve-options")
    flat = [part for a in args for part in (a, value)]
    code, out, _ = run_cli("serve", "--model", str(scratch / "tiny.yaml"), *flat, "--requests", "8",
                           "--out", str(scratch / "serve"), "--force", "--json") \
        if "--requests" not in args else \
        run_cli("serve", "--model", str(scratch / "tiny.yaml"), *flat, "--out", str(scratch / "serve"),
                "--force", "--json")
    if code == 0:
        assert_finite(json.loads(out))


# The issue-16 serving features' options, each with valid and hostile values, combined.
FEATURE_OPTIONS: dict[str, list[str] | None] = {
    "--shared-prefix": ["0", "32", "63", "-1", "1e3", "nan", "100000", "abc"],
    "--prefix-cache": None,
    "--kv-offload": ["host", "none", "disk", ""],
    "--spec-decode": ["mtp", "llama-3.2-1b", "no-such-model", ""],
    "--spec-k": ["0", "1", "3", "1000", "x"],
    "--spec-accept": ["0", "0.7", "1", "1.5", "nan", "-inf"],
    "--disagg": ["prefill=h100-sxm:1,decode=h100-sxm:1", "prefill=h100-sxm:1", "prefill=h100-sxm:0,decode=h100-sxm:1",
                 "prefill=h100-sxm:1,decode=hardwired-llama-3.1-8b:1", ",,", "prefill=h100-sxm:1e9,decode=h100-sxm:1"],
    "--kv-link": ["infiniband", "nvlink", "x"],
    "--power-limit": ["300", "0", "1 kW", "nan", "1e9"],
}


@fuzz(30)
@given(keys=st.lists(st.sampled_from(sorted(FEATURE_OPTIONS)), min_size=1, max_size=4, unique=True), data=st.data())
def test_serving_feature_options_combined(scratch, keys, data):
    _count("serve-features")
    flat: list[str] = []
    for key in keys:
        values = FEATURE_OPTIONS[key]
        flat += [key] if values is None else [key, data.draw(st.sampled_from(values))]
    code, out, _ = run_cli("serve", "--model", "llama-3.2-1b", *flat, "--requests", "4", "--prompt", "96",
                           "--output", "4", "--concurrency", "2", "--out", str(scratch / "features"), "--force",
                           "--json")
    if code == 0:
        assert_finite(json.loads(out))


def test_mutations_reach_every_kind_of_value():
    # The strategies must produce the hostile values the issue lists, not only benign ones.
    from fuzz_inputs import SPECIAL
    assert any(isinstance(v, float) and math.isnan(v) for v in SPECIAL)
    assert 10**400 in SPECIAL and 1e-320 in SPECIAL and [1] in SPECIAL
    assert yaml.safe_load(dump_yaml({"a": float("inf")}))["a"] == float("inf")
