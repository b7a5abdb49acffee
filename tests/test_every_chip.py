"""Every bundled hardware config runs `serve`, `run` and `compare` end to end (issue 14).

`accelsim serve --hw groq-lpu` used to end in ``internal error: AttributeError:
'DataflowMemory' object has no attribute 'dram'``: serving asked the spec which memory levels
it had instead of asking its backend.  Each chip now either runs (exit 0) or refuses in one
clear line (exit 2), never a traceback; the SRAM-only dataflow systems must run.
"""
from __future__ import annotations

import pytest

from accelsim import hardware
from accelsim.config import loader

CHIPS = sorted(loader.bundled_names("hw_configs"))
MUST_RUN = {"groq-lpu", "cerebras-wse3"}
SMALL = "llama-3.2-1b"


def _model_for(name: str) -> str:
    """A model the chip can hold: its own where its weights are in silicon, else a small one."""
    chip = hardware.load_hardware(name)
    return hardware.backend(chip).fixed_model(chip) or SMALL


def _ok_or_one_line(code: int, err: str, name: str) -> None:
    assert "internal error" not in err and "Traceback" not in err, err
    assert code in (0, 2), (code, err)
    if code == 2:
        assert name not in MUST_RUN, err
        assert len(err.strip().splitlines()) == 1, err


def test_the_dataflow_systems_are_bundled():
    assert MUST_RUN <= set(CHIPS)


@pytest.mark.parametrize("name", CHIPS)
def test_serve_runs_or_refuses_in_one_line(cli, tmp_path, name):
    code, out, err = cli("serve", "--model", _model_for(name), "--hw", name, "--requests", "4",
                         "--rate", "2", "--rates", "2", "--prompt", "64", "--output", "8",
                         "--out", str(tmp_path / "serve"))
    _ok_or_one_line(code, err, name)
    if code == 0:
        assert "throughput" in out


@pytest.mark.parametrize("name", CHIPS)
def test_run_runs_or_refuses_in_one_line(cli, name):
    code, out, err = cli("run", "--model", _model_for(name), "--hw", name, "--batch", "2",
                         "--context", "64")
    _ok_or_one_line(code, err, name)


def test_compare_over_every_chip(cli, tmp_path):
    """One model on every bundled chip: those that cannot run it are listed, not fatal."""
    args = ["compare", "--model", SMALL, "--batch", "1", "--context", "64",
            "--out", str(tmp_path / "compare")]
    for name in CHIPS:
        args += ["--hw", name]
    code, out, err = cli(*args)
    assert code == 0, err
    for name in MUST_RUN:
        assert name in out


@pytest.mark.parametrize("name", sorted(MUST_RUN))
def test_serve_on_dataflow_counts_kv_capacity_over_its_chips(name):
    """The KV capacity of an SRAM-only system is the SRAM of the chips it spans beyond the
    weights, and every step runs on that one system."""
    from accelsim import api
    costs = api.cost_model(SMALL, name)
    assert costs.chips >= 1
    chip = costs.hw
    free = costs.cache_capacity_bytes(1.0)
    assert free == pytest.approx(hardware.backend(chip).main_memory(chip).capacity * costs.chips
                                 - costs.weight_bytes)
    assert costs.dtypes["parallelism"].chips == costs.chips


@pytest.mark.parametrize("name", CHIPS)
def test_sweep_runs_around_every_chip(cli, tmp_path, name):
    """A two-point design space around each bundled chip (its memory derate varied) sweeps to
    a results file: the fast path, or one by one for kinds that choose their own chip count."""
    space = tmp_path / "space.yaml"
    space.write_text(f"name: around-{name}\nbase: {name}\n"
                     "workload: {phase: decode, batch: 1, context: 64}\n"
                     "parameters:\n  - key: efficiency.memory\n    values: [0.7, 0.9]\n"
                     "objectives: {tokens_per_s: max}\n")
    code, out, err = cli("sweep", "--model", _model_for(name), "--space", str(space),
                         "--out", str(tmp_path / "dse"))
    assert code == 0, err
    rows = (tmp_path / "dse" / "results.csv").read_text().strip().splitlines()
    assert len(rows) == 3 and all(",ok," in row for row in rows[1:]), rows
