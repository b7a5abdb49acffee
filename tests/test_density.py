"""Activation density: profile validation and round trip, effective MACs, and the estimator."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accelsim.api import resolve_density
from accelsim.errors import AccelsimError, ConfigError
from accelsim.model.density import DensityEntry, DensityProfile, effective_macs, load_density
from accelsim.workload import Workload

PROFILE = DensityProfile(threshold=0.0, default=0.9, source="hand-written",
                         entries=(DensityEntry(name="layers.0.mlp", density=0.25),
                                  DensityEntry(name="layers.0.mlp.down", density=0.5, samples=64)))


def test_lookup_exact_then_longest_prefix_then_default():
    assert PROFILE.density_of("layers.0.mlp.down") == 0.5
    assert PROFILE.density_of("layers.0.mlp.up") == 0.25  # the module's entry covers its ops
    assert PROFILE.density_of("layers.0.mlpx") == 0.9  # a dotted prefix, not a string prefix
    assert PROFILE.density_of("layers.1.attn.q") == 0.9


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_round_trip_and_workload_reads_a_path(tmp_path, suffix):
    path = PROFILE.save(tmp_path / f"profile{suffix}")
    assert load_density(path) == PROFILE
    workload = Workload(phase="prefill", batch=1, prompt=8, density=resolve_density(str(path)))
    assert workload.density == PROFILE
    with pytest.raises(AccelsimError, match="density must be a DensityProfile"):
        Workload(density=str(path))  # a path is read at the API, not by the workload
    assert Workload().density is None


def test_bad_profiles_give_one_line_naming_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("threshold: 0.0\nentries:\n  - name: fc1\n    density: 1.5\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: entries\[0\]\.density: .*less than or equal to 1"):
        load_density(bad)
    bad.write_text("threshold: 0.0\nentries:\n  - {name: a, density: 0.1}\n  - {name: a, density: 0.2}\n")
    with pytest.raises(ConfigError, match="duplicate entry name 'a'"):
        load_density(bad)
    with pytest.raises(ConfigError, match="no such density profile"):
        resolve_density(str(tmp_path / "missing.yaml"))


@given(macs=st.floats(0, 1e12), density=st.floats(0, 1), g=st.integers(1, 64))
def test_effective_macs_bounds_and_granularity(macs, density, g):
    left = effective_macs(macs, density, g)
    assert macs * density - 1e-6 * macs <= left <= macs * (1 + 1e-12)
    assert effective_macs(macs, density, g + 1) >= left - 1e-9 * macs  # coarser skips save less


def test_effective_macs_hand_worked():
    assert effective_macs(1000, 0.25) == 250  # per-element skipping keeps the density
    assert effective_macs(1000, 0.5, 2) == pytest.approx(750)  # a pair is skipped w.p. 0.5^2
    assert effective_macs(1000, 0.0, 8) == 0 and effective_macs(1000, 1.0, 8) == 1000
    for bad in ((1000, 1.5, 1), (1000, 0.5, 0), (-1, 0.5, 1)):
        with pytest.raises(AccelsimError):
            effective_macs(*bad)


def relu_mlp(width: int = 8):
    """fc1 = [I; -I] with no bias: for any input with no zeros, exactly half of the ReLU outputs
    are zero, so fc2's input density is 0.5 by construction."""
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential()
    model.add_module("fc1", torch.nn.Linear(width, 2 * width, bias=False))
    model.add_module("act", torch.nn.ReLU())
    model.add_module("fc2", torch.nn.Linear(2 * width, 4, bias=False))
    with torch.no_grad():
        eye = torch.eye(width)
        model.fc1.weight.copy_(torch.cat([eye, -eye]))
    return model, torch


def test_relu_mlp_density_known_by_construction():
    from accelsim.importers.density import measure_density
    from accelsim.importers.torch_export import import_module

    model, torch = relu_mlp()
    torch.manual_seed(0)
    x = torch.randn(4, 8)
    profile = measure_density(model, (x,), extra_batches=[(torch.randn(4, 8),)])
    by_name = {e.name: e for e in profile.entries}
    assert by_name["fc2"].density == 0.5 and by_name["fc2"].samples == 2 * 4 * 16
    assert by_name["fc1"].density == 1.0 and by_name["act"].density == 1.0
    imported = import_module(model, (x,))
    assert profile.for_graph(imported.graph) == {"fc1": 1.0, "fc2": 0.5}


def test_threshold_counts_only_large_activations():
    from accelsim.importers.density import measure_density

    model, torch = relu_mlp()
    # a quarter of the inputs are 1.0, the rest 0.1: above a 0.5 threshold, fc1 sees density 0.25
    x = torch.full((4, 8), 0.1)
    x[:, :2] = 1.0
    profile = measure_density(model, (x,), threshold=0.5)
    assert profile.density_of("fc1") == 0.25 and profile.threshold == 0.5
    assert profile.density_of("fc2") == pytest.approx(0.125)  # [x; -x] after ReLU: half of 0.25
    with pytest.raises(AccelsimError, match="threshold"):
        measure_density(model, (x,), threshold=-1.0)
