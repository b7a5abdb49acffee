"""Speculative decoding inside the serving loop (issue 16, deliverables 2 and 5): every decode
step is a round of K draft steps and a K+1-token verify step; each sequence emits the expected
accepted tokens (Leviathan et al. 2023) with the fraction carried, so a request still emits
exactly its output; TPOT falls at low load and can rise at a compute-bound load; the figures
reach serve --json, the report and accelsim.serve; bad inputs are one line and exit 2."""
import json
import math

import pytest

from accelsim import api
from accelsim.sim import serving
from accelsim.sim.speculative import SpecDecode, accepted_tokens

MODEL, DRAFT, HW = "llama-3.1-8b", "llama-3.2-1b", "h100-sxm"
SPEC = SpecDecode(DRAFT, 3, 0.8)


@pytest.fixture(scope="module")
def plain():
    return api.cost_model(MODEL, HW)


@pytest.fixture(scope="module")
def spec():
    return api.cost_model(MODEL, HW, spec_decode=SPEC)


def test_a_round_emits_the_hand_worked_expected_tokens():
    # (1 - 0.8^4) / (1 - 0.8) = 1 + 0.8 + 0.64 + 0.512 = 2.952
    assert accepted_tokens(0.8, 3) == pytest.approx(2.952)


def test_one_request_finishes_at_the_round_the_expectation_says(spec):
    # The prefill yields token 1; round n has emitted floor(n x 2.952) more, so 255 more tokens
    # take ceil(255 / 2.952) = 87 rounds (86 rounds reach only 253).
    result = serving.serve(serving.queued_requests(1, prompt=512, output=256), spec)
    rounds = [s for s in result.steps if s.decodes]
    assert len(rounds) == math.ceil(255 / 2.952) == 87
    s = result.speculation
    assert s is not None and s.accepted_tokens_per_step == pytest.approx(2.952)
    assert s.tokens_emitted == 255 and s.sequence_steps == 87
    # every round costs K draft steps plus the verify step
    draft, verify = spec.decode_round(1, 600)
    assert draft.time_s == pytest.approx(3 * spec.memo[("draft", 1, serving.bucket(600))].time_s)
    assert verify.time_s > spec.decode(1, 600).time_s  # four tokens per sequence, not one


@pytest.mark.parametrize("config", [serving.ServeConfig(), serving.ServeConfig(scheduler="static", max_batch=16),
                                    serving.ServeConfig(kv_blocks=700, reserve_output=0.0)])
def test_every_request_emits_exactly_its_output(spec, config):
    requests = serving.queued_requests(60, prompt=700, output=300, seed=5, spread=0.3)
    loop = serving._Loop(requests, spec, config, config.kv_blocks or 100_000)
    loop.run()
    assert len(loop.finished) == 60
    assert all(live.generated == live.req.output for live in loop.finished)
    if config.kv_blocks:
        assert sum(live.preemptions for live in loop.finished) > 0  # the cramped pool preempted
    # the expectation is an upper bound on what sequences emit per round (outputs end mid-round)
    s = loop.spec_stats()
    assert s is not None and 1.0 <= s.tokens_per_sequence_step <= accepted_tokens(0.8, 3) + 1e-9


def test_kv_grows_by_the_emitted_tokens(spec):
    # One request: its blocks at the end hold prompt + output (and no block more).
    config = serving.ServeConfig(block_size=16)
    loop = serving._Loop(serving.queued_requests(1, prompt=100, output=61), spec, config, 100)
    loop._arrive()
    while loop.running or loop.waiting:
        loop._continuous_step()
        for live in loop.running:
            assert live.blocks == math.ceil(live.context / 16) or live.prefilled < live.to_prefill
    assert loop.free == 100


def test_speculation_lowers_tpot_at_low_load_and_raises_it_when_compute_bound(plain, spec):
    low = serving.synthetic_requests(40, 1.0, prompt=512, output=128, seed=1)
    base, fast = serving.serve(low, plain, rate=1.0), serving.serve(low, spec, rate=1.0)
    assert fast.percentiles("tpot_s")["p50"] < 0.8 * base.percentiles("tpot_s")["p50"]
    # Offline, 256 sequences a step: the verify step computes 4 x 256 tokens and is compute-
    # bound, so 2.95 tokens per round no longer pay for it and the drafts.
    busy, wide = serving.queued_requests(512, prompt=128, output=128), serving.ServeConfig(chunk=32768)
    base, slow = serving.serve(busy, plain, wide), serving.serve(busy, spec, wide)
    assert max(s.decodes for s in slow.steps) == 256
    assert slow.percentiles("tpot_s")["p50"] > base.percentiles("tpot_s")["p50"]
    assert slow.throughput_tokens_per_s < base.throughput_tokens_per_s


def test_the_draft_takes_its_weights_and_kv_from_the_pool(plain, spec):
    assert spec.weight_bytes > plain.weight_bytes
    assert spec.kv_bytes_per_token > plain.kv_bytes_per_token
    assert spec.cache_capacity_bytes(0.9) < plain.cache_capacity_bytes(0.9)


def test_api_serve_reports_accepted_tokens_per_step():
    report = api.serve(MODEL, HW, rate=2.0, requests=30, prompt=256, output=64, curve=[2.0],
                       spec_decode=SPEC)
    s = report.summary["speculative"]
    assert s["accepted_tokens_per_step"] == pytest.approx(2.952)
    assert s["acceptance_rate"] == 0.8 and s["k"] == 3 and s["draft"] == DRAFT
    assert 0 < s["draft_share_of_step_time"] < s["draft_share_of_decode_time"] < 1  # prefill too
    assert report.curve[0]["speculative"]["accepted_tokens_per_step"] == pytest.approx(2.952)
    assert api.serve(MODEL, HW, rate=2.0, requests=5, curve=[2.0]).summary["speculative"] is None


def test_cli_serve_spec_decode_json_and_report(cli, tmp_path):
    code, out, err = cli("serve", "--model", MODEL, "--hw", HW, "--rate", "2", "--requests", "30",
                         "--prompt", "256", "--output", "64", "--rates", "2", "--spec-decode", DRAFT,
                         "--spec-k", "3", "--spec-accept", "0.8", "--out", str(tmp_path / "r"), "--json")
    assert code == 0, err
    s = json.loads(out)["summary"]["speculative"]
    assert s["accepted_tokens_per_step"] == pytest.approx(2.952)
    report = (tmp_path / "r" / "report.md").read_text()
    assert "Speculative decoding, draft llama-3.2-1b" in report and "2.952 accepted tokens" in report
    assert "spec_tokens_per_sequence_step" in (tmp_path / "r" / "curve.csv").read_text()


@pytest.mark.parametrize("args, needle", [
    (("--spec-decode", "mtp", "--spec-k", "2", "--spec-accept", "0.5"), "no multi-token-prediction"),
    (("--spec-decode", DRAFT, "--spec-k", "0", "--spec-accept", "0.5"), "--spec-k"),
    (("--spec-decode", DRAFT, "--spec-k", "2", "--spec-accept", "1"), "--spec-accept"),
    (("--spec-decode", DRAFT, "--spec-k", "2"), "--spec-accept"),
    (("--spec-k", "2", "--spec-accept", "0.5"), "go with --spec-decode"),
    (("--spec-decode", "no-such-draft", "--spec-k", "2", "--spec-accept", "0.5"), "no-such-draft"),
])
def test_cli_serve_bad_spec_decode_inputs_are_one_line_and_exit_2(cli, tmp_path, args, needle):
    code, out, err = cli("serve", "--model", MODEL, "--requests", "5", "--out", str(tmp_path / "r"), *args)
    assert code == 2 and out == ""
    assert needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_mtp_serving_on_deepseek_drafts_with_the_models_own_module():
    # K = 1 at a = 0.85: 1.85 tokens per round (DeepSeek-V3 report's acceptance, Sec. 5.4.3)
    from accelsim.transform import Parallelism
    layout = Parallelism(tp=8, ep=8)
    costs = api.cost_model("deepseek-v3", "h200", layout, spec_decode=SpecDecode("mtp", 1, 0.85))
    result = serving.serve(serving.queued_requests(4, prompt=128, output=24), costs, concurrency=2)
    s = result.speculation
    assert s is not None and s.accepted_tokens_per_step == pytest.approx(1.85)
    # one extra decoder layer against 61: a small but real share of each round
    assert 0.0 < s.draft_share < 0.1
    assert s.tokens_emitted == 4 * 23  # every request's output after its prefill token
    plain = api.cost_model("deepseek-v3", "h200", layout)
    assert costs.weight_bytes > plain.weight_bytes  # the MTP module's weights share the pool
