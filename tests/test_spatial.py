"""Spatial systems (hardwired layer regions, dataflow chips): prompts stream through the stages,
dataflow systems take --chips as their size and --tp inside it."""
from __future__ import annotations

import pytest

from accelsim import api
from accelsim.hardware import load_hardware
from accelsim.workload import Workload

HARDWIRED = "hardwired-llama-3.1-8b"
MODEL = "llama-3.1-8b"


def test_hardwired_prefill_throughput_rises_with_prompt_toward_the_pipeline_bound():
    chip = load_hardware(HARDWIRED)
    rates = []
    for prompt in (8, 64, 512, 2048):
        r = api.simulate(MODEL, chip, Workload("prefill", batch=1, prompt=prompt))
        rates.append(r.tokens_per_s)
    flops_per_token = r.flops / r.workload["prompt"]
    bound = chip.matrix_peak(chip.hardwired.weight_dtype) / flops_per_token  # every MAC busy
    assert all(a < b for a, b in zip(rates, rates[1:]))
    assert rates[-1] <= bound and rates[-1] > 0.7 * bound  # 1,024 tokens used to run at 3 %
    assert rates[0] < 0.5 * rates[-1]  # a short prompt pays the pipeline's fill


def test_streamed_prefill_is_one_trip_plus_the_slowest_stage_per_token():
    from accelsim.hardware.base import streamed_prefill
    step = streamed_prefill([4.0, 8.0, 2.0], Workload("prefill", batch=1, prompt=4), 0.0)
    # per token: 1, 2, 0.5 -> trip 3.5, then 3 more tokens at 2 each
    assert step.latency_s == pytest.approx(3.5 + 3 * 2.0)
