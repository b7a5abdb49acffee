"""A model's vital statistics, counted from its lowered graphs (one source of truth)."""
from __future__ import annotations

from accelsim.graph import Graph, MatMul
from accelsim.model.lower import lower, lower_mtp
from accelsim.model.spec import ModelSpec
from accelsim.workload import Workload


def _touched_fraction(graph: Graph) -> dict[str, float]:
    """Per weight, the fraction of it one step reads: MoE experts and absorbed-MLA halves are
    read in slices (``MatMul.b_fraction``, which covers a GEMM's every weight operand: stacked
    expert biases too); every other use reads the whole tensor."""
    fraction: dict[str, float] = {}
    for op in graph:
        for i, t in enumerate(op.inputs):
            if t.role != "weight":
                continue
            part = op.b_fraction if isinstance(op, MatMul) and i >= 1 else 1.0
            fraction[t.name] = min(1.0, fraction.get(t.name, 0.0) + part)
    return fraction


def active_params(graph: Graph) -> int:
    """Weights touched by one token (lower a batch-1 decode step). The embedding table counts
    whole, as in published active counts; MoE counts the top-k routed plus shared experts."""
    weights = graph.weights()
    return round(sum(weights[name].elements * f for name, f in _touched_fraction(graph).items()))


def resident_bytes(graph: Graph, role: str) -> float:
    """KV cache (role "kv_cache": cached entries read plus new ones written) or recurrent state
    (role "state": each sequence's carried state, read once) as it stands after the step."""
    total = 0.0
    for op in graph:
        accesses = op.reads() + (op.writes() if role == "kv_cache" else ())
        total += sum(a.tensor.nbytes for a in accesses if a.tensor.role == role)
    return total


def kv_bytes(spec: ModelSpec, context: int, batch: int = 1) -> float:
    """KV cache after a decode step that found ``context`` tokens cached (context+1 stored)."""
    return resident_bytes(lower(spec, Workload("decode", batch=batch, prompt=1, context=context)), "kv_cache")


def mtp_params(spec: ModelSpec) -> int | None:
    """Weights of the multi-token-prediction modules beyond those they share with the main model
    (the embedding table and the LM head); None for a model without one."""
    if spec.mtp is None:
        return None
    shared = lower(spec, Workload(phase="decode", batch=1, prompt=1, context=0)).weights()
    own: dict[str, int] = {}
    for depth in range(spec.mtp.num_layers):
        mtp = lower_mtp(spec, Workload(phase="decode", batch=1, prompt=1, context=0), depth)
        own.update({name: w.elements for name, w in mtp.weights().items() if name not in shared})
    return sum(own.values())


def describe_model(spec: ModelSpec) -> dict:
    graph = lower(spec, Workload(phase="decode", batch=1, prompt=1, context=0))
    kinds = spec.layer_kinds
    windows = [k.window for k in kinds if k.window is not None]
    widest = max(windows, default=0)
    # Past the widest window only global layers keep growing; the two-point difference there is exact.
    growth = kv_bytes(spec, widest + 1) - kv_bytes(spec, widest) if windows else None
    per_token = resident_bytes(graph, "kv_cache")
    active = active_params(graph)
    return {
        "name": spec.name,
        "family": spec.family,
        "num_layers": spec.num_layers,
        "params_total": graph.param_count,
        "params_active": active,
        "published_params_total": spec.published.params_total if spec.published else None,
        "published_params_active": spec.published.params_active if spec.published else None,
        **({"params_mtp": mtp_params(spec),
            "published_params_mtp": spec.published.params_mtp if spec.published else None}
           if spec.mtp is not None else {}),
        "weight_bytes": graph.weight_bytes,
        "kv_bytes_per_token": per_token,
        "kv_bytes_per_token_past_window": growth if growth is not None else per_token,
        "kv_window_tokens": widest or None,
        "state_bytes_per_sequence": resident_bytes(graph, "state"),
        "layer_kinds": [k.label() for k in kinds],
        "layer_kind_counts": _counts(k.label() for k in kinds),
        "source": spec.source,
        "spec": spec.model_dump(mode="json", exclude_none=True),
    }


def _counts(labels) -> dict[str, int]:
    counts: dict[str, int] = {}
    for label in labels:
        counts[label] = counts.get(label, 0) + 1
    return counts
