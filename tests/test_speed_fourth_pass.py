"""Issue 20, fourth pass on one-by-one ``simulate``: a GEMM's tilings ranked together as arrays,
dependencies worked out from the op list, copy kernels merged from the kernel they copy, memos
keyed by a graph that go with it, and lowered graphs kept only while they come back.  Each must
leave every answer as it was: checked here against the definitions they replace."""
from __future__ import annotations

import gc

import pytest

from accelsim import hardware, pipeline
from accelsim.graph import Attention, Graph, MatMul, Tensor
from accelsim.memo import ByIdentity
from accelsim.model import lower as lowering
from accelsim.model.spec import load_model
from accelsim.sim import mapper
from accelsim.transform import fusion
from accelsim.workload import Workload

WORKLOADS = [Workload(phase="decode", batch=3, context=700), Workload(phase="prefill", batch=2, prompt=96)]


def _gemm(m: int, k: int, n: int, a: str = "bf16", b: str = "bf16", count: int = 1,
          rows: int | None = None, b_fraction: float = 1.0) -> MatMul:
    x = Tensor("x", (count, m, k), a, "activation")
    w = Tensor("w", (count, k, n), b, "weight")
    y = Tensor("y", (count, m, n), a, "activation")
    return MatMul("gemm", (x, w), (y,), role="linear", m=m, k=k, n=n, count=count, rows=rows,
                  b_fraction=b_fraction)


GEMMS = [_gemm(1, 4096, 4096), _gemm(7, 4096, 14336, b="fp8"), _gemm(3000, 128, 50),
         _gemm(1, 8192, 128256), _gemm(33, 5000, 77, a="fp8", b="fp8"), _gemm(16, 2048, 1408, count=8,
                                                                             rows=64, b_fraction=0.5),
         _gemm(1, 1, 1), _gemm(4097, 4097, 4097, b="int4")]


@pytest.mark.parametrize("chip", ["h100-sxm", "h200", "b200", "mi300x"])
def test_tilings_ranked_together_pick_the_mapping_costing_each_in_turn_picks(chip):
    hw = hardware.load_hardware(chip)
    backend = hardware.backend(hw)
    for op in GEMMS:
        graph = Graph("g")
        graph.add(op)
        placement = backend.place(graph, hw, None, None)
        mappings = backend.mappings(op, hw)
        costs = [backend.cost(op, m, hw, placement) for m in mappings]
        keys = backend.ranks(op, mappings, hw, placement)
        assert keys is not None and len(keys) == len(mappings) > 1
        # the keys are the very numbers costing each mapping alone gives
        assert keys == [(c.time_s, c.energy_total) for c in costs]
        definition = min(costs, key=mapper.rank)  # the mapper's rule, one mapping at a time
        assert mapper.best_cost(op, hw, backend, placement) == definition


def test_ops_other_than_gemms_and_attention_are_costed_one_by_one():
    # fused attention's tilings are ranked as arrays since the sixth pass (tests/test_speed_sixth_pass.py)
    hw = hardware.load_hardware("h100-sxm")
    graph = lowering.lower(load_model("llama-3.2-1b"), WORKLOADS[0])
    backend = hardware.backend(hw)
    placement = backend.place(graph, hw, None, None)
    for op in graph:
        if not isinstance(op, (MatMul, Attention)):
            assert backend.ranks(op, backend.mappings(op, hw), hw, placement) is None


def _edges_as_added(graph: Graph) -> list[tuple[str, str, str]]:
    """The definition: each input's producer looked up as its op is added."""
    producer: dict[str, str] = {}
    edges = []
    for op in graph:
        edges += [(producer[t.name], op.name, t.name) for t in op.inputs if t.name in producer]
        producer.update((t.name, op.name) for t in op.outputs)
    return edges


@pytest.mark.parametrize("name", ["llama-3.1-8b", "jamba-v0.1", "deepseek-v3"])
def test_dependencies_follow_the_op_list(name):
    for workload in WORKLOADS:
        graph = fusion.fuse(lowering.lower(load_model(name), workload))
        assert graph._edges == _edges_as_added(graph)
        assert sorted(graph.dag.edges(data="tensor")) == sorted(_edges_as_added(graph))


def test_dependencies_are_found_again_after_an_op_is_added():
    graph = Graph("g")
    a = Tensor("a", (2,), "bf16")
    b = Tensor("b", (2,), "bf16")
    graph.add(MatMul("first", (a,), (b,)))
    assert graph._edges == [] and graph.dag.number_of_edges() == 0
    graph.add(MatMul("second", (b,), (Tensor("c", (2,), "bf16"),)))
    assert graph._edges == [("first", "second", "b")]
    assert list(graph.dag.edges) == [("first", "second")]
    with pytest.raises(ValueError, match="duplicate op name"):
        graph.add(MatMul("second", (a,), (b,)))


def _rebuilt(graph: Graph) -> Graph:
    plain = Graph(name=graph.name, batch=graph.batch)
    for op in graph:
        plain.add(op)
    return plain


@pytest.mark.parametrize("name, unfused", [("llama-3.1-8b", ()), ("deepseek-v3", ("context_rope",)),
                                           ("jamba-v0.1", ("gated_activation",)), ("gemma-2-9b", ())])
def test_copy_kernels_equal_kernels_merged_from_their_own_members(name, unfused):
    spec = load_model(name)
    for workload in WORKLOADS:
        lowered = lowering.lower(spec, workload)
        marked = fusion.fuse(lowered, "epilogue", unfused)
        plain = fusion.fuse(_rebuilt(lowered), "epilogue", unfused)  # no copy marks: merged afresh
        assert len(marked.ops) == len(plain.ops)
        for x, y in zip(marked.ops, plain.ops):
            assert type(x) is type(y) and x == y and vars(x) == vars(y), x.name
        assert any(i != j for i, j in enumerate(marked.originals()))


class _Thing:
    """A weakly referable object standing for a graph."""


def test_a_weak_entry_goes_with_its_object():
    memo: ByIdentity[int] = ByIdentity(4, weak=True)
    made = []
    thing = _Thing()
    assert memo.get((thing,), "x", lambda: made.append(1) or 7) == 7
    assert memo.get((thing,), "x", lambda: made.append(1) or 8) == 7  # a hit while it lives
    assert len(made) == 1 and len(memo) == 1
    del thing
    gc.collect()
    assert len(memo) == 0


def test_answers_about_a_graph_go_with_the_graph():
    from accelsim.hardware import common
    hw = hardware.load_hardware("h100-sxm")
    graph = lowering.lower(load_model("llama-3.2-1b"), Workload(phase="decode", batch=3, context=123))
    fused = pipeline.chip_graph(graph, hw)
    backend = hardware.backend(hw)
    mapper.map_graph(fused, hw, backend, backend.place(fused, hw, None, None))
    common.footprint(graph)
    common.peak_activation_bytes(fused)
    ids = {id(graph), id(fused)}
    memos = (pipeline._FUSED, mapper._KEYS, common._FOOTPRINTS, common._PEAKS)

    def held() -> list[int]:
        return [sum(1 for key in memo._entries if ids & set(key[0])) for memo in memos]

    assert held() == [1, 1, 2, 1]
    del graph, fused
    gc.collect()
    assert held() == [0, 0, 0, 0]


def _asker(memo: ByIdentity[int]):
    owner = _Thing()
    made: list[object] = []

    def ask(key: object) -> int:
        return memo.get((owner,), key, lambda: made.append(key) or len(made))
    return ask, made


def test_a_doorkeeper_holds_one_new_entry_while_nothing_comes_back_and_keeps_a_returning_one():
    memo: ByIdentity[int] = ByIdentity(8, doorkeeper=True)
    ask, made = _asker(memo)
    for i in range(ByIdentity._WARMUP):  # too new to tell: kept as made
        ask(i)
    assert len(memo) == 8
    for i in range(100, 200):  # nothing comes back: each new key held until the next one
        ask(i)
    assert len(memo) == 8 + 1  # the warm-up's last eight and the latest new key
    ask(199)  # asked right after: a hit, kept from now on
    ask(150)  # asked again after it went: made again, then kept
    assert made.count(199) == 1 and made.count(150) == 2
    for i in range(300, 306):
        ask(i)
    made.clear()
    ask(199)
    ask(150)
    assert made == []
    memo.clear()
    assert len(memo) == 0


def test_a_doorkeeper_keeps_every_entry_again_once_entries_come_back():
    memo: ByIdentity[int] = ByIdentity(8, doorkeeper=True)
    ask, made = _asker(memo)
    for i in range(200):  # nothing comes back
        ask(i)
    ask(500)
    ask(501)
    ask(500)  # went when 501 came: made again
    assert made.count(500) == 2
    for i in range(40):  # a cycle of four keys, revisited
        ask(1000 + i % 4)
    made.clear()
    ask(600)
    ask(601)
    ask(600)  # entries come back now: 600 was kept as made
    assert made == [600, 601]


def test_extending_a_graph_equals_adding_each_op():
    graph = fusion.fuse(lowering.lower(load_model("llama-3.2-1b"), WORKLOADS[0]))
    added, extended = Graph("g"), Graph("g")
    for op, copy_of in zip(graph.ops, graph.originals()):
        added.add(op, None if copy_of == len(added.ops) else copy_of)
    extended.extend(graph.ops, [None if j == i else j for i, j in enumerate(graph.originals())])
    assert extended.ops == added.ops and extended.originals() == added.originals() == graph.originals()
    assert extended._edges == added._edges
    with pytest.raises(ValueError, match="duplicate op name"):
        extended.extend(graph.ops[:1], [None])
