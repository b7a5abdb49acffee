"""The one-by-one speed work (issue 20) memoises stages of the pipeline across ``simulate`` calls:
the typed model, lowering, fusion, per-graph footprints and op shape classes, best op costs per
chip, the trust label, the bundled-name listing.  None of it may change an answer: a step
computed with every memo warm (after other chips, formats and shapes) must equal the same step
computed cold, an edited file must be seen at once, and the shared op costs must equal each op
costed by the mapper's own definition."""
from __future__ import annotations

import math
from pathlib import Path

from accelsim import api, hardware, pipeline
from accelsim.config import loader
from accelsim.hardware import base, common
from accelsim.sim import mapper
from accelsim.transform import fusion
from accelsim.workload import Workload

REPO = Path(__file__).resolve().parent.parent

# Varied the way a one-by-one loop varies them: chips, shapes, formats (decode and prefill).
SAMPLE = [
    ("h100-sxm", Workload(phase="decode", batch=1, context=1024), {}),
    ("h100-sxm", Workload(phase="decode", batch=7, context=3000), {"kv_dtype": "fp8"}),
    ("h200", Workload(phase="decode", batch=7, context=3000), {"kv_dtype": "fp8"}),
    ("tpu-v5p", Workload(phase="decode", batch=16, context=8192), {"weight_dtype": "fp8"}),
    ("hardwired-llama-3.1-8b", Workload(phase="decode", batch=1, context=1024), {}),
    ("h100-sxm", Workload(phase="prefill", batch=2, prompt=512), {}),
]


def _clear() -> None:
    for memo in (pipeline._TYPED, pipeline._LOWERED, pipeline._FUSED, pipeline._JOINED, mapper._KEYS,
                 mapper._COSTS, common._FOOTPRINTS, common._PEAKS, api._TRUST, base._COST_PARAMS):
        memo.clear()
    fusion._PLANS.clear()


def _figures(result) -> tuple:
    return (result.latency_s, result.tokens_per_s, result.joules_per_token, result.energy_j,
            result.footprint_bytes, result.system, result.notes, result.trust,
            [(c.op, c.layer, c.time_s, c.energy_j, c.bytes, c.mapping) for c in result.ops])


def test_warm_memos_give_the_cold_answer_on_a_varied_sample():
    cold = []
    for hw, workload, dtypes in SAMPLE:
        _clear()
        cold.append(_figures(api.simulate("llama-3.1-8b", hw, workload, **dtypes)))
    _clear()
    for _ in range(2):  # the second pass is served from warm memos, in a different order
        for (hw, workload, dtypes), expected in reversed(list(zip(SAMPLE, cold))):
            assert _figures(api.simulate("llama-3.1-8b", hw, workload, **dtypes)) == expected


def test_shared_op_costs_equal_each_op_costed_alone_by_the_mapper():
    chip = hardware.load_hardware("h100-sxm")
    spec = pipeline.typed_model(api.resolve_model("llama-3.1-8b"), chip, kv="fp8")
    backend = hardware.backend(chip)
    graph = pipeline.chip_graph(pipeline.lowered(spec, Workload(phase="decode", batch=3, context=700)), chip)
    placement = backend.place(graph, chip, spec, Workload(phase="decode", batch=3, context=700))
    for _ in range(2):  # cold, then from the cross-call memo
        costs = mapper.map_graph(graph, chip, backend, placement)
        assert len(costs) == len(graph.ops)
        for op, cost in zip(graph, costs):
            alone = mapper.best_cost(op, chip, backend, placement)
            assert (cost.op, cost.layer) == (op.name, op.layer)
            assert (cost.time_s, cost.energy_j, cost.bytes, cost.mapping) == \
                (alone.time_s, alone.energy_j, alone.bytes, alone.mapping)


def test_an_edited_chip_file_changes_the_answer_at_once(tmp_path):
    path = tmp_path / "chip.yaml"
    text = (REPO / "hw_configs" / "h100-sxm.yaml").read_text(encoding="utf-8")
    path.write_text(text, encoding="utf-8")
    workload = Workload(phase="decode", batch=4, context=2048)
    first = api.simulate("llama-3.1-8b", str(path), workload)
    assert api.simulate("llama-3.1-8b", str(path), workload).latency_s == first.latency_s
    assert "bandwidth: 3.35 TB/s" in text  # the HBM line of the bundled H100
    path.write_text(text.replace("bandwidth: 3.35 TB/s", "bandwidth: 6.7 TB/s", 1), encoding="utf-8")
    second = api.simulate("llama-3.1-8b", str(path), workload)
    assert second.latency_s < first.latency_s  # decode at batch 4 reads weights: bandwidth-bound


def test_a_config_added_to_a_bundled_folder_is_found(tmp_path, monkeypatch):
    root = tmp_path / "root"
    (root / "models").mkdir(parents=True)
    monkeypatch.setattr(loader, "BUNDLED_ROOTS", (root,))
    assert loader.bundled_names("models") == {}
    (root / "models" / "tiny.yaml").write_text("name: tiny\n", encoding="utf-8")
    assert list(loader.bundled_names("models")) == ["tiny"]
    (root / "models" / "tiny.yaml").rename(root / "models" / "small.yaml")
    assert list(loader.bundled_names("models")) == ["small"]


def test_a_workload_with_a_density_profile_is_costed_without_the_shape_memo():
    from accelsim.model.density import DensityProfile
    profile = DensityProfile(threshold=0.0, default=0.5, source="test")
    dense = api.simulate("llama-3.1-8b", "h100-sxm", Workload(phase="decode", batch=2, context=512))
    sparse = api.simulate("llama-3.1-8b", "h100-sxm",
                          Workload(phase="decode", batch=2, context=512, density=profile))
    assert math.isfinite(sparse.latency_s) and sparse.latency_s <= dense.latency_s
