"""Torus (TPU ICI) collectives: slice shapes, wraparound, the axes a group spans, hand-worked
costs, the link-bandwidth bound, config errors, and switch/ring configs left exactly as they were.

Hand-worked figures use TPU v4's 45 GB/s per link each way and 1 us per hop (hw_configs/tpu-v4.yaml)
and a 1 MB payload (500,000 bf16 values = 1e6 bytes) unless a test says otherwise."""
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from accelsim.api import resolve_hardware, resolve_model, simulate
from accelsim.graph import Collective, Tensor
from accelsim.hardware import interconnect
from accelsim.hardware.spec import Interconnect
from accelsim.model.lower import lower
from accelsim.transform import Parallelism, shard
from accelsim.workload import Workload

REPO = Path(__file__).resolve().parent.parent
MB = Tensor("payload", (500_000,), "bf16")  # 1e6 bytes
US = 1e-6


@pytest.fixture(scope="module")
def v4():
    return resolve_hardware("tpu-v4")


def _op(pattern="all_reduce", group=4, grid=None, span="all", payload=MB):
    return Collective("c", (payload,), (payload,), pattern=pattern, group=group, grid=grid, span=span)


def _seconds(op, hw):
    (mapping,) = interconnect.mappings(op, hw)
    assert mapping is interconnect.TORUS
    return interconnect.cost(op, mapping, hw).time_s


def _links(**changes):
    base = {"link_bandwidth": "45 GB/s", "latency": "1 us", "energy": "1 pJ/B", "topology": "torus",
            "axes": 3, "wraparound": "always", "source": "test"}
    return Interconnect(**(base | changes))


# --- slice shapes and wraparound --------------------------------------------------------------

def test_most_cubic_rule_reproduces_published_slice_shapes():
    # v4: 2x2x4 is Google's 16-chip example (cloud.google.com/tpu/docs/types-topologies); 2x2x1,
    # 2x2x2 and the 4x4x4 cube from the JAX scaling book; v5e: the 2D table of
    # cloud.google.com/tpu/docs/supported-versions (2x2, 2x4, 4x4, 4x8, 8x8, 8x16, 16x16).
    v4 = {4: (1, 2, 2), 8: (2, 2, 2), 16: (2, 2, 4), 32: (2, 4, 4), 64: (4, 4, 4), 128: (4, 4, 8)}
    v5e = {4: (2, 2), 8: (2, 4), 16: (4, 4), 32: (4, 8), 64: (8, 8), 128: (8, 16), 256: (16, 16)}
    for chips, shape in v4.items():
        assert interconnect.most_cubic(chips, 3) == shape
    for chips, shape in v5e.items():
        assert interconnect.most_cubic(chips, 2) == shape


def test_configs_carry_the_published_shapes(v4):
    assert interconnect.slice_shape(v4.interconnect, 4) == (2, 2, 1)
    assert interconnect.slice_shape(v4.interconnect, 64) == (4, 4, 4)
    assert interconnect.slice_shape(v4.interconnect, 2) == (1, 1, 2)  # not listed: the rule
    v5e = resolve_hardware("tpu-v5e").interconnect
    assert interconnect.slice_shape(v5e, 128) == (8, 16)


def test_wraparound_rules(v4):
    links = v4.interconnect  # whole 4x4x4 cubes only, then on every axis
    assert interconnect.wraps(links, (2, 2, 4)) == (False, False, False)
    assert interconnect.wraps(links, (2, 4, 4)) == (False, False, False)
    assert interconnect.wraps(links, (4, 4, 4)) == (True, True, True)
    assert interconnect.wraps(links, (4, 4, 8)) == (True, True, True)
    v5e = resolve_hardware("tpu-v5e").interconnect  # an axis wraps at the full pod length 16
    assert interconnect.wraps(v5e, (8, 16)) == (False, True)
    assert interconnect.wraps(v5e, (16, 16)) == (True, True)
    assert interconnect.wraps(v5e, (4, 4)) == (False, False)


def test_pope_layout_x_on_one_axis_y_on_the_other_two(v4):
    links = v4.interconnect
    assert interconnect.group_axes(_op(group=4, grid=(4, 16), span="x"), links) == [(4, True)]
    assert interconnect.group_axes(_op(group=16, grid=(4, 16), span="y"), links) == [(4, True), (4, True)]
    assert interconnect.group_axes(_op(group=64, grid=(4, 16), span="all"), links) == [(4, True)] * 3
    # 16 chips as 2x8 on 2x2x4 (no wraparound): x one axis of 2, y the other 2 and the 4.
    assert interconnect.group_axes(_op(group=2, grid=(2, 8), span="x"), links) == [(2, False)]
    assert interconnect.group_axes(_op(group=8, grid=(2, 8), span="y"), links) == [(2, False), (4, False)]


def test_group_that_takes_part_of_an_axis_is_a_line(v4):
    # 64 chips as 8x8: x = 8 takes one axis of 4 whole and half of another.
    links = v4.interconnect
    assert interconnect.group_axes(_op(group=8, grid=(8, 8), span="x"), links) == [(4, True), (2, False)]
    assert interconnect.group_axes(_op(group=8, grid=(8, 8), span="y"), links) == [(2, False), (4, True)]


def test_one_d_tensor_parallelism_on_four_chips_spans_two_axes_of_two(v4):
    graph = lower(resolve_model("llama-3.1-8b"), Workload(phase="decode", batch=1, context=128))
    sharded = shard(graph, Parallelism(tp=4))
    ar = next(op for op in sharded if isinstance(op, Collective) and op.pattern == "all_reduce"
              and op.layer == 0)
    assert (ar.grid, ar.span, ar.group) == ((1, 4), "y", 4)
    assert interconnect.group_axes(ar, v4.interconnect) == [(2, False), (2, False)]
    # 1 x 4096 bf16 = 8192 B; all-reduce sends 2 x 3/4 x 8192 = 12288 B over two lines of 2
    # (one link each way per axis: 45 + 45 GB/s) = 136.53 ns; hops 2 passes x (1 + 1) = 4 us.
    assert ar.payload_bytes == 8192
    assert _seconds(ar, v4) == pytest.approx(4e-6 + 136.5333e-9, rel=1e-6)


def test_every_tensor_parallel_collective_says_where_it_sits():
    graph = lower(resolve_model("llama-3.1-70b"), Workload(phase="decode", batch=8, context=128))
    sharded = shard(graph, Parallelism(tp=64, tp_x=4, attention="batch"))
    collectives = [op for op in sharded if isinstance(op, Collective)]
    assert {op.span for op in collectives} == {"x", "y", "all"}
    assert all(op.grid == (4, 16) for op in collectives)
    for op in collectives:
        assert op.group == {"x": 4, "y": 16, "all": 64}[op.span] or (
            op.pattern == "all_to_all" and 16 % op.group == 0)


def test_group_outside_its_span_is_refused():
    with pytest.raises(ValueError, match="not part of the x ranks"):
        _op(group=3, grid=(4, 16), span="x")


# --- hand-worked costs -------------------------------------------------------------------------

def test_all_reduce_one_mb_over_x_y_and_the_whole_cube(v4):
    # x = 4, one axis with wraparound: 2 x 3/4 x 1e6 B = 1.5e6 B over 2 x 45 GB/s = 16.667 us;
    # hops 2 passes x floor(4/2) = 4 us.  Total 20.667 us.
    assert _seconds(_op(group=4, grid=(4, 16), span="x"), v4) == pytest.approx(20.6667e-6, rel=1e-5)
    # y = 16 on two wrapped axes of 4: 2 x 15/16 x 1e6 = 1.875e6 B over 4 x 45 GB/s = 10.417 us;
    # hops 2 x (2 + 2) = 8 us.  Total 18.417 us.
    assert _seconds(_op(group=16, grid=(4, 16), span="y"), v4) == pytest.approx(18.4167e-6, rel=1e-5)
    # all 64 on three wrapped axes: 2 x 63/64 x 1e6 = 1.96875e6 B over 6 x 45 GB/s = 7.292 us;
    # hops 2 x 6 = 12 us.  Total 19.292 us.
    assert _seconds(_op(group=64, grid=(4, 16), span="all"), v4) == pytest.approx(19.2917e-6, rel=1e-5)


def test_axis_without_wraparound_costs_more(v4):
    # x = 4 on a 32-chip slice (2x4x4, no wraparound: not whole cubes): the 4-axis is a line,
    # 1.5e6 B over one link-direction 45 GB/s = 33.333 us, hops 2 x 3 = 6 us: 39.333 us.
    line = _seconds(_op(group=4, grid=(4, 8), span="x"), v4)
    ring = _seconds(_op(group=4, grid=(4, 16), span="x"), v4)
    assert line == pytest.approx(39.3333e-6, rel=1e-5)
    assert line > ring
    # the same group on the same shape with and without wraparound
    for pattern in ("all_reduce", "all_gather", "reduce_scatter", "all_to_all"):
        with_wrap = interconnect.torus_terms(pattern, [(4, True), (4, True)], 1e6, _links()).seconds
        without = interconnect.torus_terms(pattern, [(4, False), (4, False)], 1e6, _links()).seconds
        assert without > with_wrap


def test_all_gather_and_reduce_scatter_hand_worked():
    links = _links(wraparound="never")
    # all_gather of a 1e6 B shard over a line of 8: 7e6 B over 45 GB/s = 155.556 us + 7 hops.
    link = interconnect.torus_terms("all_gather", [(8, False)], 1e6, links)
    seconds, sent = link.seconds, link.sent
    assert sent == 7e6
    assert seconds == pytest.approx(162.5556e-6, rel=1e-6)
    # reduce_scatter of 8e6 B over two lines of 2 and 4: 7/8 x 8e6 = 7e6 B over 90 GB/s
    # = 77.778 us, hops 1 + 3 = 4 us.
    seconds = interconnect.torus_terms("reduce_scatter", [(2, False), (4, False)], 8e6, links).seconds
    assert seconds == pytest.approx(81.7778e-6, rel=1e-6)


def test_all_to_all_hand_worked_and_energy_per_hop(v4):
    # One wrapped axis of 4: each chip sends 1e6/4 B to each chip at distances 0, 1, 2, 1, so
    # its bytes cross 0.25e6 x (1 + 2 + 1) = 1e6 link-bytes; over 2 x 45 GB/s = 11.111 us;
    # the farthest piece is 2 hops away: 2 us.  Total 13.111 us.
    op = _op(pattern="all_to_all", group=4, grid=(4, 16), span="x")
    cost = interconnect.cost(op, interconnect.TORUS, v4)
    assert cost.time_s == pytest.approx(13.1111e-6, rel=1e-5)
    assert cost.bytes["link"] == pytest.approx(1e6)
    assert cost.energy_j["interconnect"] == pytest.approx(1e6 * v4.interconnect.energy)
    # A line of 4: distances from each chip average (0+1+2+3 + 1+0+1+2 + 2+1+0+1 + 3+2+1+0)/16
    # = 1.25 hops, so 1.25e6 link-bytes over 45 GB/s = 27.778 us, + 3 hops.
    link = interconnect.torus_terms("all_to_all", [(4, False)], 1e6, _links())
    seconds, sent = link.seconds, link.sent
    assert sent == pytest.approx(1.25e6)
    assert seconds == pytest.approx(30.7778e-6, rel=1e-5)


def test_send_is_one_hop_over_one_link(v4):
    # 1e6 B over one 45 GB/s link = 22.222 us + 1 us.
    assert _seconds(_op(pattern="send", group=2), v4) == pytest.approx(23.2222e-6, rel=1e-5)


def test_energy_is_bytes_sent_times_link_energy(v4):
    cost = interconnect.cost(_op(group=16, grid=(4, 16), span="y"), interconnect.TORUS, v4)
    assert cost.bytes["link"] == pytest.approx(1.875e6)
    assert cost.energy_j["interconnect"] == pytest.approx(1.875e6 * v4.interconnect.energy)


@settings(max_examples=60, deadline=None)
@given(lengths=st.lists(st.integers(2, 16), min_size=1, max_size=3),
       rings=st.lists(st.booleans(), min_size=3, max_size=3),
       pattern=st.sampled_from(["all_reduce", "all_gather", "reduce_scatter", "all_to_all"]),
       payload=st.floats(1.0, 1e9))
def test_never_faster_than_the_links_allow(lengths, rings, pattern, payload):
    """Whatever the axes, each chip must receive its share through at most 2 links per spanned
    axis at 45 GB/s, so no collective beats received bytes / (2 x axes x 45 GB/s)."""
    axes = list(zip(lengths, rings))
    p = 1
    for n in lengths:
        p *= n
    received = {"all_reduce": 2 * (p - 1) / p * payload, "all_gather": (p - 1) * payload,
                "reduce_scatter": (p - 1) / p * payload, "all_to_all": (p - 1) / p * payload}[pattern]
    links = _links(latency="0 s")
    seconds = interconnect.torus_terms(pattern, axes, payload, links).seconds
    assert seconds >= received / (2 * len(lengths) * 45e9) * (1 - 1e-12)


# --- configs -------------------------------------------------------------------------------------

def _v4_with(mutate) -> str:
    data = yaml.safe_load((REPO / "hw_configs" / "tpu-v4.yaml").read_text())
    mutate(data["interconnect"])
    return yaml.safe_dump(data)


BAD_TORUS = {
    "missing link bandwidth": (lambda d: d.pop("link_bandwidth"), "needs link_bandwidth"),
    "bandwidth on a torus": (lambda d: d.update(bandwidth="270 GB/s"), "not bandwidth"),
    "misspelt key": (lambda d: d.update(wrap_lenght=4), "interconnect.wrap_lenght"),
    "unknown wraparound": (lambda d: d.update(wraparound="sometimes"), "whole_cubes"),
    "rule without length": (lambda d: d.pop("wrap_length"), "needs wrap_length"),
    "shape of wrong size": (lambda d: d["slice_shapes"].update({8: [2, 2, 4]}), "slice_shapes 8"),
    "torus key on a ring": (lambda d: d.update(topology="ring", bandwidth="270 GB/s"),
                            "is a torus key"),
}


@pytest.mark.parametrize("case", sorted(BAD_TORUS))
def test_bad_torus_config_is_one_clear_line(case, cli, write):
    mutate, fragment = BAD_TORUS[case]
    path = write("bad-torus.yaml", _v4_with(mutate))
    code, out, err = cli("run", "--hw", str(path))
    lines = err.strip().splitlines()
    assert code == 2 and out == ""
    assert len(lines) == 1, err
    assert str(path) in lines[0] and "interconnect" in lines[0] and fragment in lines[0], lines[0]


def test_switch_and_ring_configs_cost_exactly_as_before():
    """Link seconds and link bytes of every collective, summed, as the model prints them (same
    configs and workloads as before the torus existed; the HGX figures moved once since, in
    issue 17's accuracy pass: a switch offers the ring alone, NCCL's intra-node tree being a
    chain, and the A100/H100/H200 links take the measured 5.56 us + 1.98 us per ring step).
    Link terms only: the chips' calibrated compute constants move independently of the
    interconnect.  H100 TP8 by hand: 161 all-reduces of 8 x 8192 x 2 B, each 5.56 us + 14 x
    1.98 us + 1.75 x 131,072 B / 450 GB/s = 33.79 us, plus one all-gather."""
    decode8 = Workload(phase="decode", batch=8, context=2048)
    before = [  # model, hw, workload, parallelism, link seconds, link bytes, collectives
        ("llama-3.1-70b", "h100-sxm", decode8, Parallelism(tp=8), 0.0054635558222222306, 38725120.0, 162),
        ("llama-3.1-70b", "a100-sxm", decode8, Parallelism(tp=4, pp=2), 0.0028824200533333357,
         16662016.0, 163),
        ("llama-3.1-70b", "h100-sxm", decode8, Parallelism(tp=8, tp_x=2), 0.0068571997155555155,
         34595872.0, 644),
        # groq-lpu's link latency changed in issue 18 (calibrated: 1.43 us per step); the cost
        # law is the one pinned before: 71 sends x 1.43 us + 1,413,214 B / 240 GB/s.
        ("llama-3.1-8b", "groq-lpu", Workload(phase="decode", batch=1, context=2048), Parallelism(pp=72),
         71 * 1.43e-6 + 1413214.0 / 240e9, 1413214.0, 71),
    ]
    for model, hw, wl, par, seconds, nbytes, count in before:
        chip = resolve_hardware(hw)
        if chip.interconnect is not None:  # those figures are at the line rate (efficiency 1)
            chip = chip.model_copy(update={"interconnect": chip.interconnect.model_copy(update={"efficiency": 1.0})})
        r = simulate(model, chip, wl, parallelism=par)
        collectives = [c for c in r.ops if c.kind == "collective"]
        assert len(collectives) == count
        assert sum(c.memory_s.get("link", 0.0) for c in collectives) == pytest.approx(seconds, rel=1e-12)
        assert sum(c.bytes.get("link", 0.0) for c in collectives) == pytest.approx(nbytes, rel=1e-12)
    # A switch ignores where the group sits: h100 all-reduce of 1e6 B over 4 at NCCL's 370 of
    # NVLink 4's 450 GB/s (interconnect.efficiency 0.822), hand-worked: ring 5.56 us + 6 x 1.98 us
    # + 1.5e6 B / (450 GB/s x 0.822) = 21.495 us (a switch offers no tree), with or without a grid.
    h100 = resolve_hardware("h100-sxm")
    assert h100.interconnect is not None and h100.interconnect.efficiency == pytest.approx(0.822)
    for op in (_op(group=4), _op(group=4, grid=(4, 16), span="x")):
        best = min(interconnect.cost(op, m, h100).time_s for m in interconnect.mappings(op, h100))
        assert best == pytest.approx(5.56e-6 + 6 * 1.98e-6 + 1.5e6 / (450e9 * 0.822), rel=1e-5)


def test_tpu_v4_pope_run_charges_torus_axes():
    wl = Workload(phase="decode", batch=64, context=2048)
    r = simulate("llama-3.1-70b", "tpu-v4", wl, parallelism=Parallelism(tp=64, tp_x=4))
    mappings = {c.mapping for c in r.ops if c.kind == "collective"}
    assert any(m.startswith("all_reduce torus 4(w)x4(w)") for m in mappings), mappings
    assert any(m.startswith("reduce_scatter torus 4(w) ") for m in mappings), mappings
