"""The event-driven engine against the analytical path, hand-worked schedules and trace export."""
from __future__ import annotations

import itertools
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accelsim.api import simulate
from accelsim.api import timeline as step_timeline
from accelsim.graph import Graph, MatMul, Tensor
from accelsim.hardware.base import OpCost
from accelsim.report.trace import timeline_plot, timeline_trace, trace_events
from accelsim.sim.engine import Machine, run
from accelsim.workload import Workload

BIG_BUFFER = Machine("test", clock_hz=1e9, buffer_bytes=1e12)


def op_cost(name: str, compute: float, hbm: float = 0.0, *, layer: int | None = None,
            additive: bool = False, kind: str = "matmul", onchip: float = 0.0) -> OpCost:
    memory = {k: v for k, v in (("hbm", hbm), ("l2", onchip)) if v}
    time = compute + hbm + onchip if additive else max(compute, hbm, onchip)
    return OpCost(name, kind, layer, time, compute, memory, {"hbm": hbm * 1e6, "l2": onchip * 1e6},
                  {}, 1.0, 1.0, "compute", "test")


def weight_graph(names: list[str]) -> Graph:
    """A chain of matmuls, each with its own weight (so its off-chip bytes are prefetchable)."""
    graph = Graph("chain")
    x = Tensor("x", (1, 8), "bf16")
    for name in names:
        w = Tensor(f"{name}.w", (8, 125_000), "bf16", "weight")  # 2 MB
        y = Tensor(f"{name}.out", (1, 8), "bf16")  # shapes only feed byte counts
        graph.add(MatMul(name, (x, w), (y,), m=1, k=8, n=125_000))
        x = y
    return graph


@pytest.fixture(scope="module")
def decode_step():
    return step_timeline("llama-3.1-8b", "h100-sxm", Workload("decode", 4, 1, 512), overlap="none")


def test_no_overlap_reproduces_the_analytical_sum_exactly(decode_step):
    result = simulate("llama-3.1-8b", "h100-sxm", Workload("decode", 4, 1, 512))
    # The kernels plus the runtime's host step (gpu.step_overhead), which the engine runs as one
    # task after them.
    times = [c.time_s for c in result.ops] + [result.step_overhead_s]
    assert decode_step.makespan_s == math.fsum(times)
    assert decode_step.makespan_s == pytest.approx(result.latency_s, rel=1e-12)
    # Nothing overlaps: the one critical chain is every op, back to back.
    assert sum(i.duration_s for i in decode_step.critical_path) == pytest.approx(decode_step.makespan_s)


@pytest.mark.parametrize("hw, workload, dtypes", [
    ("h100-sxm", Workload("decode", 8, 1, 1024), {}),
    ("h100-sxm", Workload("prefill", 1, 512, 0), {}),
    ("tpu-v5e", Workload("prefill", 1, 256, 0), {"weight_dtype": "int8"}),
])
def test_double_buffering_is_bounded_by_the_sum_and_the_busiest_resource(hw, workload, dtypes):
    tl = step_timeline("llama-3.1-8b", hw, workload, overlap="double_buffered", **dtypes)
    assert tl.makespan_s <= tl.analytical_s * (1 + 1e-12)
    assert tl.makespan_s >= tl.max_busy_s * (1 - 1e-12)
    assert tl.critical_path[-1].end_s == pytest.approx(tl.makespan_s)


def test_prefetch_hides_the_next_fetch_hand_worked():
    # A: compute 2, fetch 1; B: compute 1, fetch 2 (both overlap inside the op: time = max = 2).
    # Serial: 4.  Double-buffered: B's fetch runs on the DMA channel [1, 3] while A computes
    # [0, 2]; B computes [2, 3] and ends with its fetch at 3.
    costs = [op_cost("a", 2.0, 1.0), op_cost("b", 1.0, 2.0)]
    tl = run(costs, BIG_BUFFER, graph=weight_graph(["a", "b"]), overlap="double_buffered")
    assert tl.analytical_s == 4.0
    assert tl.makespan_s == 3.0
    dma = tl.by_resource()["dma:hbm"]
    assert [(i.name, i.start_s, i.end_s) for i in dma] == [("a", 0.0, 1.0), ("b", 1.0, 3.0)]


def test_additive_ops_wait_for_their_fetch_but_prefetch_the_next():
    # Each op: fetch 1 then compute 1 (terms add, time 2).  Serial 6; pipelined fetches: 4.
    costs = [op_cost(n, 1.0, 1.0, additive=True) for n in "abc"]
    tl = run(costs, BIG_BUFFER, graph=weight_graph(list("abc")), overlap="double_buffered")
    assert tl.analytical_s == 6.0
    assert tl.makespan_s == 4.0


def test_no_prefetch_when_operands_overflow_half_the_buffer():
    costs = [op_cost("a", 2.0, 1.0), op_cost("b", 1.0, 2.0)]  # 1 MB and 2 MB off chip
    small = Machine("small", clock_hz=1e9, buffer_bytes=3e6)  # half = 1.5 MB: b does not fit
    tl = run(costs, small, graph=weight_graph(["a", "b"]), overlap="double_buffered")
    assert tl.makespan_s == 4.0


def test_fetch_of_an_activation_waits_for_its_producer():
    # Without a graph nothing says the bytes are weights: fetches wait for the previous op.
    costs = [op_cost("a", 2.0, 1.0), op_cost("b", 1.0, 2.0)]
    assert run(costs, BIG_BUFFER, overlap="double_buffered").makespan_s == 4.0


def test_two_stage_pipeline_throughput_is_set_by_the_slower_stage():
    stage_a, stage_b = 1e-3, 3e-3
    costs = [op_cost("a", stage_a, layer=0), op_cost("b", stage_b, layer=1)]
    pipeline = Machine("pipe", clock_hz=1e9, buffer_bytes=1e12, pipelined=True)
    groups = 10
    tl = run(costs, pipeline, overlap="double_buffered", groups=groups)
    ends = sorted(i.end_s for i in tl.intervals if i.resource == "stage 1")
    gaps = {round(b - a, 12) for a, b in itertools.pairwise(ends)}
    assert gaps == {stage_b}
    assert tl.makespan_s == pytest.approx(stage_a + groups * stage_b)
    assert tl.utilisation()["stage 1"] == pytest.approx(groups * stage_b / tl.makespan_s)
    # The serial engine runs the same work with no overlap at all.
    assert run(costs, pipeline, overlap="none", groups=groups).makespan_s == pytest.approx(
        groups * (stage_a + stage_b))


def test_hardwired_trip_matches_the_analytical_schedule():
    workload = Workload("decode", 4, 1, 256)
    result = simulate("llama-3.1-8b", "hardwired-llama-3.1-8b", workload)
    tl = step_timeline("llama-3.1-8b", "hardwired-llama-3.1-8b", workload, overlap="double_buffered",
                       rounds=2)
    first = max(i.end_s for i in tl.intervals if i.group == 0 and i.round == 0)
    second = max(i.end_s for i in tl.intervals if i.group == 0 and i.round == 1)
    assert "trip-bound" in result.notes[0]
    assert first == pytest.approx(result.latency_s, rel=1e-9)  # embed..lm_head + 33 stage hops
    assert second - first == pytest.approx(result.latency_s, rel=1e-6)  # steady-state round


def test_quantised_compute_is_whole_cycles_and_never_faster():
    costs = [op_cost(f"op{i}", 1.234567e-7 * (i + 1)) for i in range(20)]
    tl = run(costs, BIG_BUFFER, overlap="none", quantise=True)
    for iv in tl.intervals:
        if iv.resource == "compute":
            assert iv.cycles == pytest.approx(round(iv.cycles), abs=1e-6)
    assert tl.analytical_s <= tl.makespan_s <= tl.analytical_s + len(costs) / 1e9


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(1e-7, 1e-3), st.floats(0, 1e-3), st.booleans()), min_size=1, max_size=12))
def test_property_bounds_hold_for_any_chain(specs):
    costs = [op_cost(f"o{i}", c, h, additive=add) for i, (c, h, add) in enumerate(specs)]
    graph = weight_graph([c.op for c in costs])
    serial = run(costs, BIG_BUFFER, graph=graph, overlap="none")
    overlapped = run(costs, BIG_BUFFER, graph=graph, overlap="double_buffered")
    assert serial.makespan_s == math.fsum(c.time_s for c in costs)
    assert overlapped.makespan_s <= serial.makespan_s * (1 + 1e-12)
    assert overlapped.makespan_s >= overlapped.max_busy_s * (1 - 1e-12)


def test_chrome_trace_is_valid_trace_event_json(tmp_path, decode_step):
    path = timeline_trace(decode_step, tmp_path / "trace.json", "decode")
    data = json.loads(path.read_text())
    complete = [e for e in data["traceEvents"] if e["ph"] == "X"]
    assert len(complete) == len(decode_step.intervals)
    names = {e["args"]["name"] for e in data["traceEvents"] if e["ph"] == "M" and e["name"] == "process_name"}
    assert names == set(decode_step.resources())
    first = min(decode_step.intervals, key=lambda i: (i.start_s, i.resource))
    event = next(e for e in complete if e["name"] == first.name)
    assert event["ts"] == pytest.approx(first.start_s * 1e6)
    assert event["dur"] == pytest.approx(first.duration_s * 1e6)
    assert all(isinstance(e["pid"], int) and isinstance(e["tid"], int) for e in data["traceEvents"])


def test_counters_and_timeline_plot(tmp_path, decode_step):
    from accelsim.report.trace import Counter
    events = trace_events(decode_step.intervals[:3], [Counter("queue", ((0.0, 1.0), (1e-3, 2.0)))])
    assert [e["args"]["queue"] for e in events if e["ph"] == "C"] == [1.0, 2.0]
    png = timeline_plot(decode_step, tmp_path / "timeline.png", "decode")
    assert png.stat().st_size > 1000


def test_bad_overlap_is_one_line():
    from accelsim.errors import AccelsimError
    with pytest.raises(AccelsimError, match="overlap must be one of"):
        run([op_cost("a", 1.0)], BIG_BUFFER, overlap="triple")
