"""Parallel attention + MLP blocks (GPT-J, PaLM): one norm feeds both branches, both add into the
residual, and under tensor parallelism their partial sums are reduced once per layer."""
from pathlib import Path

import pytest

from accelsim.errors import ConfigError
from accelsim.graph import Collective, Elementwise, Norm
from accelsim.model.lower import lower
from accelsim.model.spec import load_model
from accelsim.transform import Parallelism, shard
from accelsim.workload import Workload

GPTJ = str(Path(__file__).resolve().parent.parent / "validation/models/gpt-j-6b.yaml")  # block: parallel
WL = Workload(phase="prefill", batch=1, prompt=128)


@pytest.fixture(scope="module")
def graphs():
    parallel = load_model(GPTJ)
    assert parallel.block == "parallel"
    sequential = parallel.model_copy(update={"block": "sequential"})
    return lower(parallel, WL), lower(sequential, WL)


def test_one_norm_feeds_both_branches(graphs):
    parallel, sequential = graphs
    assert sum(isinstance(op, Norm) for op in parallel) == 28 + 1  # + the final norm
    assert sum(isinstance(op, Norm) for op in sequential) == 2 * 28 + 1
    residual = next(op for op in parallel if op.name == "layers.0.parallel_residual")
    assert set(parallel.dag.predecessors(residual.name)) == {"embed", "layers.0.attn.o_proj",
                                                             "layers.0.mlp.down"}
    up = next(op for op in parallel if op.name == "layers.0.mlp.up")
    assert up.inputs[0].name == "layers.0.attn_norm.out"  # the MLP reads the same norm
    # same matmuls, same FLOPs: only the norms and residual adds differ
    assert parallel.total("tensor_flops") == pytest.approx(sequential.total("tensor_flops"))


@pytest.mark.parametrize("par, per_layer", [(Parallelism(tp=4), 1), (Parallelism(tp=8, tp_x=2), 1)])
def test_branches_are_reduced_once_per_layer(graphs, par, per_layer):
    parallel, sequential = graphs
    def all_reduces(graph, group):
        return [op for op in shard(graph, par) if isinstance(op, Collective) and op.layer == 3
                and op.pattern == "all_reduce" and op.group == group]
    assert len(all_reduces(parallel, par.tp_y)) == per_layer
    assert len(all_reduces(sequential, par.tp_y)) == 2
    merged = next(op for op in shard(parallel, par) if op.name == "layers.3.parallel_residual.partials")
    assert isinstance(merged, Elementwise) and len(merged.inputs) == 2


def test_parallel_block_needs_pre_norms(write):
    text = Path(GPTJ).read_text(encoding="utf-8").replace(
        "\nblock: parallel\n", "\nblock: parallel\nnorm_placement: pre_post\n")
    with pytest.raises(ConfigError, match="block 'parallel' needs norm_placement 'pre'"):
        load_model(str(write("bad.yaml", text)))
