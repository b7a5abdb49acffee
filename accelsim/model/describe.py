"""A model's vital statistics, counted from its lowered graph (one source of truth)."""
from __future__ import annotations

from accelsim.graph import Graph
from accelsim.model.lower import lower
from accelsim.model.spec import ModelSpec
from accelsim.workload import Workload


def active_params(graph: Graph) -> int:
    """Weights touched by one token. Equal to the total for dense models."""
    return graph.param_count


def describe_model(spec: ModelSpec) -> dict:
    graph = lower(spec, Workload(phase="decode", batch=1, prompt=1, context=0))
    return {
        "name": spec.name,
        "family": spec.family,
        "num_layers": spec.num_layers,
        "params_total": graph.param_count,
        "params_active": active_params(graph),
        "published_params_total": spec.published.params_total if spec.published else None,
        "weight_bytes": graph.weight_bytes,
        "kv_bytes_per_token": spec.kv_bytes_per_token,
        "state_bytes_per_sequence": 0,
        "layer_kinds": ["attention+mlp"] * spec.num_layers,
        "source": spec.source,
        "spec": spec.model_dump(mode="json"),
    }
