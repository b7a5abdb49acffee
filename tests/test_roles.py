"""Ops carry roles from lowering, and the transforms read roles, not shapes."""
from pathlib import Path

import pytest

from accelsim.graph import OP_ROLES, Collective, Elementwise, Graph, MatMul, Tensor
from accelsim.model.lower import lower
from accelsim.model.spec import load_model
from accelsim.transform import Parallelism, fuse, shard
from accelsim.workload import Workload

MODELS = sorted(Path(__file__).resolve().parent.parent.glob("models/*.yaml"))
WORKLOADS = [Workload("decode", batch=2, context=128), Workload("prefill", batch=2, prompt=128, context=0)]


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.stem)
def test_every_lowered_op_has_a_role(path):
    spec = load_model(str(path))
    for workload in WORKLOADS:
        graph = lower(spec, workload)
        missing = [op.name for op in graph if op.role not in OP_ROLES]
        assert not missing, f"{path.stem} {workload.phase}: ops without a role: {missing[:5]}"
        assert graph.batch == workload.batch


@pytest.mark.parametrize("name, par", [("llama-3.1-8b", Parallelism(tp=4, pp=2)),
                                       ("deepseek-v3", Parallelism(tp=4, dp=2, ep=8)),
                                       ("llama-3.1-70b", Parallelism(tp=8, tp_x=2))])
def test_sharded_ops_keep_roles(name, par):
    graph = shard(lower(load_model(name), WORKLOADS[0]), par)
    assert all(op.role in OP_ROLES for op in graph)
    assert {op.role for op in graph if isinstance(op, Collective)} <= {"collective", "send"}
    fused = fuse(graph, "epilogue")
    assert all(op.role in OP_ROLES for op in fused)


def test_unknown_role_is_refused_and_collectives_still_check_their_grid():
    x = Tensor("x", (4, 8), "bf16")
    with pytest.raises(ValueError, match="role 'qkvv' is not one of"):
        Elementwise("e", (x,), (x,), role="qkvv")
    with pytest.raises(ValueError, match="replicas"):
        Elementwise("e", (x,), (x,), role="act", replicas=0)
    with pytest.raises(ValueError, match="is not part of"):
        Collective("c", (x,), (x,), role="collective", group=3, grid=(2, 2), span="x")


def _linear(name: str, x: Tensor, n: int, role: str, stacked: int | None = None) -> tuple[MatMul, Tensor]:
    shape = (stacked, x.shape[-1], n) if stacked else (x.shape[-1], n)
    w = Tensor(f"{name}.weight", shape, "bf16", "weight")
    y = Tensor(f"{name}.out", (x.shape[0], n), "bf16")
    return MatMul(name, (x, w), (y,), layer=0, role=role, m=x.shape[0], k=x.shape[-1], n=n), y


def test_tensor_parallelism_follows_roles_not_shapes():
    # A projection as wide as a QKV one, and a 3-D weight: their roles say they are an imported
    # linear of unknown purpose, so tensor and expert parallelism replicate them.
    x = Tensor("x", (4, 64), "bf16")
    g = Graph(name="roles", batch=4)
    up, h = _linear("a", x, 3 * 64, "linear")
    g.add(up)
    stacked, _ = _linear("b", h, 64, "linear", stacked=4)
    g.add(stacked)
    out = shard(g, Parallelism(tp=4, ep=4))
    assert [op.name for op in out] == ["a", "b"]
    assert all(op.replicas == 4 and op.flops == g.ops[i].flops for i, op in enumerate(out))
    # The same first matmul tagged as an MLP up-projection splits by columns.
    g2 = Graph(name="roles", batch=4)
    up2, h2 = _linear("a", x, 3 * 64, "gate_up")
    g2.add(up2)
    down, _ = _linear("d", h2, 64, "down")
    g2.add(down)
    out2 = {op.name: op for op in shard(g2, Parallelism(tp=4))}
    assert out2["a"].n == 48 and out2["d"].k == 48 and "d.all_reduce" in out2


def test_fusion_reads_roles():
    # A pointwise op that halves its input is a gated activation only when its role says it is
    # an activation.
    x = Tensor("x", (4, 64), "bf16")
    g_act, g_other = Graph(name="a"), Graph(name="b")
    for g, role in ((g_act, "act"), (g_other, "pointwise")):
        up, h = _linear("up", x, 128, "gate_up")
        g.add(up)
        y = Tensor("act.out", (4, 64), "bf16")
        g.add(Elementwise("act", (h,), (y,), layer=0, role=role, elements=256, ops_per_element=5))
    assert len(fuse(g_act, "epilogue", ("gated_activation",))) == 2
    assert len(fuse(g_other, "epilogue", ("gated_activation",))) == 1


def test_imported_ops_have_roles():
    torch = pytest.importorskip("torch")
    from accelsim.importers.torch_export import import_module
    module = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.LayerNorm(16))
    graph = import_module(module, (torch.randn(2, 8),)).graph
    assert [op.role for op in graph] == ["linear", "pointwise", "norm"]
    sharded = shard(graph, Parallelism(tp=2))  # unknown purpose: replicated, never guessed
    assert all(op.replicas == 2 for op in sharded)
