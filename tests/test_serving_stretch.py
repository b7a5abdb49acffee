"""The serving loop's decode stretches (``_Loop._decode_stretch``: uneventful decode steps run
without walking the requests) change nothing: every step, every request's figures and the
summary are those of stepping one by one, on loads where stretches end for every reason (an
arrival, a finish, a block the pool cannot give, a prefill, the closed loop's next send)."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accelsim.api import cost_model
from accelsim.errors import AccelsimError
from accelsim.sim.serving import Request, ServeConfig, _Loop, serve, synthetic_requests

MODEL, HW = "llama-3.2-1b", "h100-sxm"


@pytest.fixture(scope="module")
def costs():
    return cost_model(MODEL, HW)


def both(monkeypatch, requests, costs, config, concurrency=None):
    """(with stretches, one step at a time) for the same run."""
    fast = serve(requests, costs, config, 10.0, concurrency)
    monkeypatch.setattr(_Loop, "decode_stretches", False)
    slow = serve(requests, costs, config, 10.0, concurrency)
    monkeypatch.setattr(_Loop, "decode_stretches", True)
    return fast, slow


def same(fast, slow) -> None:
    assert fast.steps == slow.steps
    assert fast.requests == slow.requests
    assert fast.summary() == slow.summary()


def test_stretches_run_most_steps_of_a_light_load(costs, monkeypatch):
    """The case they are for (and a check that they ran at all): most steps of a light load
    are plain decodes, and there the loop takes them as stretches."""
    calls = {"stretch": 0, "full": 0}
    stretch, full = _Loop._decode_stretch, _Loop._continuous_step

    def counted_stretch(self):
        ran = stretch(self)
        calls["stretch"] += ran
        return ran

    def counted_full(self):
        calls["full"] += 1
        full(self)

    monkeypatch.setattr(_Loop, "_decode_stretch", counted_stretch)
    monkeypatch.setattr(_Loop, "_continuous_step", counted_full)
    result = serve(synthetic_requests(200, 5.0, prompt=512, output=128, seed=3), costs, ServeConfig())
    assert calls["stretch"] > 0
    assert calls["full"] < len(result.steps) / 2


@pytest.mark.parametrize("config, concurrency", [
    (ServeConfig(), None),
    (ServeConfig(), 24),
    (ServeConfig(prefix_cache=True, kv_offload="host"), None),
    (ServeConfig(prefix_cache=True, kv_blocks=300), None),        # evictions
    (ServeConfig(kv_blocks=260), None),                           # recompute preemptions
    (ServeConfig(kv_blocks=260, preemption="swap"), 16),
    (ServeConfig(kv_blocks=400, reserve_output=0.5, chunk=100), None),
])
def test_results_are_those_of_stepping_one_by_one(costs, monkeypatch, config, concurrency):
    requests = synthetic_requests(300, 12.0, prompt=600, output=150, seed=5, spread=0.4, shared_prefix=256)
    fast, slow = both(monkeypatch, requests, costs, config, concurrency)
    same(fast, slow)
    if config.kv_blocks in (260,):
        assert fast.summary()["preemptions"] > 0  # the load does reach the pool's limit


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 300), st.integers(1, 80), st.floats(0.0, 20.0)), min_size=1, max_size=25),
       st.sampled_from([1, 4, 16]), st.integers(40, 400), st.booleans(), st.sampled_from([None, 3]))
def test_any_small_load_is_unchanged(costs, specs, block_size, blocks, prefix, concurrency):
    requests = [Request(i, a, p, o, 0 if prefix else -1, min(p, 64) if prefix else 0)
                for i, (p, o, a) in enumerate(sorted(specs, key=lambda s: s[2]))]
    config = ServeConfig(block_size=block_size, kv_blocks=blocks * 16 // block_size, chunk=64, prefix_cache=prefix)
    with pytest.MonkeyPatch.context() as monkeypatch:
        try:
            fast, slow = both(monkeypatch, requests, costs, config, concurrency)
        except AccelsimError:
            return  # a request larger than the pool: refused either way
    same(fast, slow)
