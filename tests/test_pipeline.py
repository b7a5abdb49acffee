"""The step is written once (``accelsim.pipeline``): every entry point costs through it."""
from __future__ import annotations

import pytest

import accelsim
from accelsim import api, pipeline
from accelsim.hardware import load_hardware
from accelsim.model import lower as lowering
from accelsim.report.opcost import matmul_report
from accelsim.validate.predict import gemm_op
from accelsim.workload import Workload


@pytest.mark.parametrize("hw", ["h100-sxm", "tpu-v5e"])
@pytest.mark.parametrize("m, n, k", [(1, 4096, 4096), (64, 2048, 512), (4096, 4096, 4096)])
def test_op_command_and_validation_cost_a_lone_gemm_alike(hw, m, n, k):
    """`accelsim op` and validation's GEMM points once disagreed on the off-chip traffic of the
    same GEMM (one kept activations in L2); both now start every operand off chip."""
    chip = load_hardware(hw)
    report = matmul_report(chip, m=m, k=k, n=n, dtype="bf16")
    op = gemm_op(m, n, k, "bf16")
    # validation writes a 16-bit C from 16-bit inputs, the op command the input format: same here
    alone = pipeline.cost_alone(op, chip)
    assert alone.time_s == pytest.approx(report.time_s, rel=1e-12)
    assert alone.bytes == pytest.approx(report.bytes, rel=1e-12)


def test_a_lone_op_reads_every_operand_from_off_chip_memory():
    chip = load_hardware("h100-sxm")
    op = gemm_op(16, 256, 256, "bf16")  # small enough that its activations would fit in L2
    cost = pipeline.cost_alone(op, chip)
    assert cost.bytes["hbm"] >= op.bytes_moved


def test_the_engine_replays_the_costed_graph_without_lowering_again(monkeypatch):
    calls = []
    real = lowering.lower

    def counted(spec, workload):
        calls.append(workload)
        return real(spec, workload)

    monkeypatch.setattr(pipeline, "lower", counted)
    timeline = api.timeline("llama-3.2-1b", "h100-sxm", Workload("decode", 4, 1, 256), overlap="none")
    assert len(calls) == 1
    result = accelsim.simulate("llama-3.2-1b", "h100-sxm", Workload("decode", 4, 1, 256))
    assert float(timeline.makespan_s) == pytest.approx(result.latency_s, rel=1e-9)


def test_simulate_and_costed_step_are_one_step():
    workload = Workload("prefill", 2, 128, 0)
    step = api.costed_step("llama-3.2-1b", "h100-sxm", workload)
    assert step.result == accelsim.simulate("llama-3.2-1b", "h100-sxm", workload)
    assert [op.name for op in step.graph] == [c.op for c in step.result.ops]


def test_step_energy_counts_every_chip_and_group():
    energy = pipeline.step_joules(2.0, groups=3, chips_per_stage=4, static_w=10.0, chips=8, busy_s=0.5)
    assert energy == 2.0 * 3 * 4 + 10.0 * 8 * 0.5
