"""A serving engine's own all-reduce kernel (vLLM's custom all-reduce: ``runtimes/vllm.yaml``
``kernels.custom_all_reduce``): small tensor-parallel all-reduces inside one NVLink switch go
through a one- or two-shot peer-to-peer exchange instead of the collective library's ring."""
from __future__ import annotations

import pytest

from accelsim import api
from accelsim.graph import Collective, Tensor
from accelsim.hardware import interconnect
from accelsim.transform import Parallelism
from accelsim.workload import Workload

H100 = "h100-sxm"


def _all_reduce(group: int, elements: int) -> Collective:
    t = Tensor("x", (elements,), "bf16")
    return Collective("ar", (t,), (Tensor("y", (elements,), "bf16"),), group=group)


def _best(op: Collective, hw) -> tuple[str, float]:
    costs = [interconnect.cost(op, m, hw) for m in interconnect.mappings(op, hw)]
    best = min(costs, key=lambda c: c.time_s)
    return best.mapping, best.time_s


def test_a_small_all_reduce_takes_one_exchange_under_vllm():
    bare, vllm = api.hardware_under(H100, None), api.hardware_under(H100, "vllm")
    links = vllm.interconnect
    op = _all_reduce(4, 8192)  # one decode token's hidden state of a 70B model, 16 KiB
    mapping, seconds = _best(op, vllm)
    assert mapping == "all_reduce one-shot x4"
    rate = links.bandwidth * links.efficiency
    # Hand-worked: one exchange, each GPU reading its three peers' 16 KiB buffers.
    assert seconds == pytest.approx(links.base_latency + links.latency + 3 * 16384 / rate)
    ring_mapping, ring_seconds = _best(op, bare)
    assert ring_mapping == "all_reduce ring x4"
    assert ring_seconds == pytest.approx(links.base_latency + 6 * links.latency + 1.5 * 16384 / rate)
    assert seconds < ring_seconds


def test_larger_messages_take_two_shots_and_beyond_the_buffer_the_ring():
    vllm = api.hardware_under(H100, "vllm")
    limit = vllm.gpu.custom_all_reduce
    assert limit == 8 * 2 ** 20
    mid = _best(_all_reduce(8, 2 ** 21), vllm)[0]  # 4 MiB: bandwidth decides
    assert mid == "all_reduce two-shot x8"
    assert _best(_all_reduce(8, 2 ** 22 + 1), vllm)[0] == "all_reduce ring x8"  # past 8 MiB
    assert _best(_all_reduce(3, 8192), vllm)[0] == "all_reduce ring x3"  # no 3-GPU kernel


def test_a_tensor_parallel_vllm_decode_spends_less_time_in_all_reduces():
    step = Workload("decode", batch=64, context=512)
    bare = api.simulate("llama-3.1-70b", api.hardware_under(H100, None), step, parallelism=Parallelism(tp=4))
    vllm = api.simulate("llama-3.1-70b", api.hardware_under(H100, "vllm"), step, parallelism=Parallelism(tp=4))

    def collective_s(result) -> float:
        return sum(op.time_s for op in result.ops if op.kind == "collective")

    # 1 MiB per all-reduce at batch 64: two exchanges instead of the ring's six latency terms
    assert collective_s(vllm) < 0.75 * collective_s(bare)
    reduces = [op.mapping for op in vllm.ops if op.mapping.startswith("all_reduce")]
    assert reduces and all("shot" in mapping for mapping in reduces)
