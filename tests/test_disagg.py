"""Disaggregated prefill/decode pools (``serve --disagg``): the KV transfer in TTFT, KV bytes
conserved, replicas, heterogeneous pools end to end, the parser, and one-line refusals."""
from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accelsim import api
from accelsim.errors import AccelsimError
from accelsim.sim import disagg
from accelsim.sim.load import Load
from accelsim.sim.serving import Request, ServeConfig
from accelsim.sim.speculative import accepted_tokens

HETERO = "prefill=h100-sxm:2,decode=hardwired-llama-3.1-8b:4"
# Llama 3.1 8B, bf16 KV: 32 layers x 8 KV heads x 128 dims x (K and V) x 2 bytes per token.
LLAMA8B_KV_BYTES_PER_TOKEN = 32 * 8 * 128 * 2 * 2


def _system(spec: str, link: str | None = None, model: str = "llama-3.1-8b") -> disagg.DisaggSystem:
    return api.disagg_system(model, spec, kv_link=link)


def test_ttft_includes_the_kv_transfer_hand_worked():
    """One request alone: TTFT = prefill step + KV bytes / link bandwidth + link latency + the
    decode replica's first step (+ the runtime's per-request overhead)."""
    system = _system("prefill=h100-sxm:1,decode=h100-sxm:1", "infiniband")
    prompt = 512  # one prefill chunk (the default chunk is 512), on the bucket grid
    run = disagg.serve_disagg([Request(0, 0.0, prompt, 8)], system)
    kv = prompt * LLAMA8B_KV_BYTES_PER_TOKEN
    assert run.kv_bytes == (kv,)
    transfer = 5e-6 + kv / 50e9  # 400 Gb/s NDR: 1.3422 ms
    assert run.kv_transfer_s[0] == pytest.approx(transfer, rel=1e-12)
    p, d = system.prefill.costs, system.decode.costs
    expected = (p.prefill(prompt, 1).time_s + transfer + d.decode(1, prompt).time_s + p.request_overhead_s)
    assert run.result.requests[0].ttft_s == pytest.approx(expected, rel=1e-9)
    # The same request over NVLink (450 GB/s each way in the h100-sxm config, at the 0.822 of line
    # rate its collectives get: NCCL's 370 GB/s) is faster by the byte-time difference.
    fast = disagg.serve_disagg([Request(0, 0.0, prompt, 8)], _system("prefill=h100-sxm:1,decode=h100-sxm:1", "nvlink"))
    link = fast.link
    assert link.bandwidth == pytest.approx(450e9 * 0.822)
    gained = (transfer - (link.latency_s + kv / link.bandwidth))
    assert run.result.requests[0].ttft_s - fast.result.requests[0].ttft_s == pytest.approx(gained, rel=1e-6)
    assert gained > 1e-3


def test_kv_bytes_conserved_moved_equals_sum_of_prompt_kv():
    system = _system("prefill=h100-sxm:2,decode=h100-sxm:2")
    load = Load("rate", 20.0, 60, 700, 40, spread=0.5, seed=3)
    run = disagg.run(system, ServeConfig(), load)
    prompts = [r.prompt for r in run.result.requests]
    assert len(set(prompts)) > 10  # lengths really vary
    assert sum(run.kv_bytes) == sum(prompts) * LLAMA8B_KV_BYTES_PER_TOKEN
    assert run.summary()["disagg"]["kv_moved"]["bytes_total"] == sum(run.kv_bytes)
    assert len(run.result.requests) == 60 and all(20 <= r.output <= 40 for r in run.result.requests)


def test_replicas_are_pool_chips_over_tp_pp_dp():
    system = _system("prefill=h100-sxm:8:tp2,decode=h100-sxm:12:tp2:dp2")
    assert (system.prefill.replicas, system.prefill.replica_chips) == (4, 2)
    assert (system.decode.replicas, system.decode.replica_chips) == (3, 4)
    run = disagg.run(system, ServeConfig(), Load("offline", 0, 24, 256, 16))
    pools = run.summary()["disagg"]["pools"]
    assert (pools["prefill"]["replicas"], pools["decode"]["replicas"]) == (4, 3)
    assert run.result.chips == 20
    # The example: 72 H200s as 8-GPU tensor/expert-parallel replicas are nine of them.
    nine = api.disagg_system("deepseek-v3", "prefill=h200:8:tp8:ep8,decode=h200:72:tp8:ep8")
    assert nine.decode.replicas == 9


def test_heterogeneous_gpu_prefill_hardwired_decode_runs_end_to_end(cli, tmp_path):
    code, out, err = cli("serve", "--model", "llama-3.1-8b", "--disagg", HETERO, "--concurrency", "4",
                         "--requests", "24", "--prompt", "256", "--output", "32", "--out",
                         str(tmp_path / "r"), "--json")
    assert code == 0, err
    payload = json.loads(out)
    s = payload["summary"]
    d = s["disagg"]
    assert d["pools"]["prefill"]["hw"] == "h100-sxm" and d["pools"]["decode"]["hw"] == "hardwired-llama-3.1-8b"
    assert (d["pools"]["prefill"]["replicas"], d["pools"]["decode"]["replicas"]) == (2, 4)
    assert d["kv_link"]["name"] == "infiniband"  # two kinds of chip share no scale-up link
    assert d["kv_moved"]["bytes_total"] == 24 * 256 * LLAMA8B_KV_BYTES_PER_TOKEN
    assert d["bound"] in ("prefill", "decode") and d["balanced_prefill_per_decode_chip"] > 0
    assert s["requests"] == 24 and s["chips"] == 6
    assert all(math.isfinite(s[k]["p99"]) and s[k]["p99"] > 0 for k in ("ttft_s", "tpot_s", "e2e_s"))
    report = (tmp_path / "r" / "report.md").read_text()
    assert "## Disaggregated pools" in report and "hardwired-llama-3.1-8b" in report


def test_more_decode_chips_never_lower_throughput_at_a_decode_bound_load():
    load = Load("offline", 0, 48, 128, 96)
    runs = [disagg.run(_system(f"prefill=h100-sxm:1,decode=h100-sxm:{m}"), ServeConfig(max_batch=8), load)
            for m in (1, 2, 4)]
    assert runs[0].bound == "decode"
    throughput = [r.result.throughput_tokens_per_s for r in runs]
    assert throughput == sorted(throughput) and throughput[-1] > 1.5 * throughput[0]


def test_sizing_hint_is_the_ratio_of_busy_chip_seconds():
    run = disagg.run(_system("prefill=h100-sxm:1,decode=h100-sxm:2"), ServeConfig(),
                     Load("rate", 4.0, 40, 512, 64))
    p, d = run.pools
    assert run.balanced_ratio == pytest.approx(p.busy_s / d.busy_s)  # utilisation x chips over one makespan
    assert 0 < p.utilisation <= 1 and 0 < d.utilisation <= 1
    assert run.bound == ("prefill" if p.mean_queue_s > d.mean_queue_s else "decode")


def test_a_starved_pool_names_the_other_as_bound():
    """Long prompts and short outputs on one prefill chip queue at prefill; short prompts and
    long outputs on a decode replica of 4 slots queue at decode."""
    prefill_heavy = disagg.run(_system("prefill=h100-sxm:1,decode=h100-sxm:2"), ServeConfig(),
                               Load("concurrency", 16, 48, 4096, 8))
    assert prefill_heavy.bound == "prefill"
    assert prefill_heavy.pools[0].mean_queue_s > 10 * prefill_heavy.pools[1].mean_queue_s
    decode_heavy = disagg.run(_system("prefill=h100-sxm:2,decode=h100-sxm:1"), ServeConfig(max_batch=4),
                              Load("concurrency", 16, 48, 64, 128))
    assert decode_heavy.bound == "decode"
    assert decode_heavy.balanced_ratio < 1  # the prefill chips sat mostly idle


def test_default_kv_link():
    b300, h100 = api.resolve_hardware("b300"), api.resolve_hardware("h100-sxm")
    hardwired = api.resolve_hardware("hardwired-llama-3.1-8b")
    assert disagg.kv_link(None, b300, b300, 8).name == "chip-to-chip"  # one HGX board
    assert disagg.kv_link(None, b300, b300, 20).name == "infiniband"  # beyond its 8-GPU domain
    assert disagg.kv_link(None, h100, hardwired, 6).name == "infiniband"
    slower = disagg.kv_link("chip-to-chip", b300, h100, 4)
    assert slower.bandwidth == pytest.approx(450e9 * 0.822)  # the slower end's NVLink, at NCCL's share
    with pytest.raises(AccelsimError, match="no interconnect section"):
        disagg.kv_link("nvlink", h100, hardwired, 2)


@pytest.mark.parametrize("args, says", [
    (["--disagg", "prefill=no-such-chip:2,decode=h100-sxm:2"], "--disagg prefill=no-such-chip"),
    (["--disagg", "prefill=h100-sxm:3:tp2,decode=h100-sxm:2"], "not a multiple"),
    (["--disagg", "prefill=h100-sxm:2"], "missing the decode pool"),
    (["--disagg", "prefill=h100-sxm:2:xx3,decode=h100-sxm:2"], "layout key 'xx3'"),
    (["--disagg", "prefill=h100-sxm:2,prefill=h100-sxm:2,decode=h100-sxm:1"], "given twice"),
    (["--disagg", "prefill=h100-sxm:two,decode=h100-sxm:2"], "chips must be an integer"),
    (["--disagg", "prefill=h100-sxm:2,decode=h100-sxm:2:batch0"], "batch must be in [1"),
    (["--disagg", "prefill=h100-sxm:2,decode=h100-sxm:2:batch8:batch4"], "batch given twice"),
    (["--disagg", "middle=h100-sxm:2,decode=h100-sxm:2"], "ROLE one of prefill, decode"),
    (["--disagg", "prefill=h100-sxm:2,decode=hardwired-llama-3.1-70b:1"], "cannot run"),
    (["--disagg", HETERO, "--kv-link", "nvlink"], "no interconnect section"),
    (["--disagg", HETERO, "--hw", "h200"], "give no --hw"),
    (["--disagg", HETERO, "--tp", "2"], "give no --hw"),
    (["--kv-link", "roce"], "give --disagg too"),
    (["--disagg", HETERO, "--scheduler", "static"], "batch continuously"),
    (["--disagg", HETERO, "--find-capacity"], "--find-capacity does not search --disagg"),
])
def test_bad_disagg_input_is_one_line_exit_2(cli, tmp_path, args, says):
    code, out, err = cli("serve", "--model", "llama-3.1-8b", "--requests", "4", "--prompt", "64",
                         "--output", "4", "--out", str(tmp_path / "r"), *args)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and says in err, err
    assert "Traceback" not in err


_HW = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-._/", min_size=1, max_size=20)
_N = st.integers(1, 4096)
_KEY = st.none() | st.integers(1, 64)


@settings(max_examples=200, deadline=None)
@given(phw=_HW, pn=_N, ptp=_KEY, ppp=_KEY, pep=_KEY, pdp=_KEY, dhw=_HW, dn=_N, dtp=_KEY, dep=_KEY,
       dmb=_KEY, swap=st.booleans())
def test_disagg_parser_round_trips(phw, pn, ptp, ppp, pep, pdp, dhw, dn, dtp, dep, dmb, swap):
    spec = disagg.DisaggSpec(disagg.PoolSpec("prefill", phw, pn, ptp, ppp, pep, pdp),
                             disagg.PoolSpec("decode", dhw, dn, dtp, None, dep, None, max_batch=dmb))
    text = spec.text()
    if swap:  # pool order does not matter
        text = f"{spec.decode.text()},{spec.prefill.text()}"
    assert disagg.parse_disagg(text) == spec


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="prefildcoa=:,h1023tpx -", max_size=60))
def test_disagg_parser_takes_or_refuses_in_one_line(text):
    try:
        spec = disagg.parse_disagg(text)
    except AccelsimError as err:
        assert "\n" not in str(err) and str(err).startswith("--disagg")
    else:
        assert spec.prefill.chips >= 1 and spec.decode.chips >= 1


def test_a_pools_own_batch_limit_replaces_the_runs_per_rank():
    system = _system("prefill=h100-sxm:1,decode=h100-sxm:4:dp2:batch3")
    assert system.decode.spec.max_batch == 3
    assert system.decode.config(ServeConfig(max_batch=64)).max_batch == 6  # 3 per rank, 2 ranks
    assert system.prefill.config(ServeConfig(max_batch=64)).max_batch == 64  # not set: the run's


def test_a_decode_batch_limit_below_the_load_queues_requests_and_shortens_steps():
    """8 clients on 2 decode replicas: capped at 2 sequences each, 4 wait for a slot (TTFT
    rises) while the smaller decode batches step faster (TPOT does not rise)."""
    load = Load("concurrency", 8, 48, 256, 32)
    free = disagg.run(_system("prefill=h100-sxm:1,decode=h100-sxm:2"), ServeConfig(), load).result
    run = disagg.run(_system("prefill=h100-sxm:1,decode=h100-sxm:2:batch2"), ServeConfig(), load)
    capped = run.result
    assert capped.percentiles("ttft_s")["p50"] > free.percentiles("ttft_s")["p50"]
    assert capped.tokens_per_s_per_user >= free.tokens_per_s_per_user
    pools = run.summary()["disagg"]["pools"]
    assert pools["decode"]["max_batch_per_replica"] == 2 and pools["prefill"]["max_batch_per_replica"] == 256


def test_cli_serve_takes_a_pools_batch_limit(cli, tmp_path):
    code, out, err = cli("serve", "--model", "llama-3.2-1b", "--disagg", "prefill=h100-sxm:1,decode=h100-sxm:2:batch3",
                         "--concurrency", "8", "--requests", "16", "--prompt", "128", "--output", "8", "--json",
                         "--out", str(tmp_path / "r"))
    assert code == 0, err
    assert json.loads(out)["summary"]["disagg"]["pools"]["decode"]["max_batch_per_replica"] == 3


# --- validation of InferenceX's disaggregated rows (accelsim.validate.disagg) -----------------

def _setups():
    from accelsim.config import loader
    from accelsim.validate import disagg as check
    return check, check.setups(loader.read_csv(check.DEFAULT_FILE, "measurements"))


def test_inferencex_disagg_rows_become_pools_or_a_stated_reason():
    check, found = _setups()
    assert len(found) == 7 and all(len(s.measured) == 4 for s in found)  # 28 rows, four metrics each
    by_key = {(s.hardware, s.chips, s.concurrency): check.pools(s) for s in found}
    b300 = by_key[("B300", 20, 1093)]
    assert isinstance(b300, disagg.DisaggSpec)
    # 6 x 2 and 1 x 8 GPUs; the decode worker's recipe: max_batch_size 128 per attention-DP rank
    assert b300.text() == "prefill=b300:12:ep2:dp2,decode=b300:8:ep8:dp8:batch128"
    assert by_key[("B300", 36, 3072)].text() == "prefill=b300:28:dp4,decode=b300:8:ep8:dp8:batch384"
    mtp = next(s for s in found if s.chips == 18)
    # the MTP run's recipe caps each decode worker at 8 sequences (ctx1_gen4_tep4_batch8_eplb0_mtp3)
    assert mtp.mtp and by_key[("B300", 18, 52)].text() == "prefill=b300:2:ep2:dp2,decode=b300:16:tp4:ep4:batch8"
    assert "not stated" in by_key[("MI355X", 24, 4096)] and "not stated" in by_key[("B200", 24, 288)]
    assert "span two" in by_key[("H100", 64, 9)]
    replayable = [s for s in found if not isinstance(check.pools(s), str)]
    assert [check.SPLIT[s.hw] for s in replayable] == ["holdout"] * 4


def test_each_replayed_run_decodes_as_its_recipe_states():
    check, found = _setups()
    mtp = next(s for s in found if s.mtp)
    recipe = check.recipe_of(mtp)
    assert recipe is not None and "ctx1_gen4_tep4_batch8_eplb0_mtp3" in recipe.source
    sd = check.spec_decode_of(mtp)
    # three MTP draft tokens (num_nextn_predict_layers: 3) at TensorRT-LLM's 2.82 tokens per step
    assert sd is not None and (sd.draft, sd.k) == ("mtp", 3)
    assert accepted_tokens(sd.accept, sd.k) == pytest.approx(2.82)
    for setup in found:
        if not setup.mtp:  # plain decoding; a recipe, where one was read, only limits the batch
            assert check.spec_decode_of(setup) is None
            recipe, spec = check.recipe_of(setup), check.pools(setup)
            if recipe is None:
                assert isinstance(spec, str) or spec.decode.max_batch is None
            else:
                assert recipe.draft_k is None and "no speculative_config" in recipe.source
                assert isinstance(spec, disagg.DisaggSpec) and spec.decode.max_batch == recipe.decode_max_batch
    mi355x = next(s for s in found if s.hardware == "MI355X" and s.concurrency == 2048)
    assert check.recipe_of(mi355x) is None  # SGLang's recipe not read: the concurrency stays the limit


def test_validation_errors_and_inferencex_per_gpu_conventions():
    check, found = _setups()
    setup = next(s for s in found if s.chips == 20)
    # InferenceX's output throughput per GPU counts decode GPUs, total throughput all GPUs:
    # output x 8 / (total x 20) is the output share of the tokens, OSL / (ISL + OSL) at the mean lengths.
    m = setup.measured
    share = m["output_throughput_per_chip"] * 8 / (m["total_throughput_per_chip"] * 20)
    assert share == pytest.approx(922 / (7373 + 922), rel=0.01)
    # TPOT is compared as time: a predicted interactivity twice the measured one is -50 % TPOT.
    errors = check.errors({"interactivity_p50": 30.0, "output_throughput_per_chip": 100.0},
                          {"interactivity_p50": 60.0, "output_throughput_per_chip": 90.0})
    assert errors == pytest.approx({"interactivity_p50": -0.5, "output_throughput_per_chip": -0.1})
    # the client and formats come from serving.yaml's InferenceX source, as the aggregated rows'
    load = check.load_of(setup)
    assert (load.kind, load.value, load.requests, load.spread) == ("concurrency", 1093.0, 10930, 0.8)
    dtypes = check.dtypes_of(setup)
    assert (dtypes.weight, dtypes.act, dtypes.kv) == ("nvfp4", "nvfp4", "fp8")


def test_validation_replay_reports_a_replayed_setup_against_its_rows():
    """The whole path on one setup, with a small run standing in for the long one."""
    check, found = _setups()
    setup = next(s for s in found if s.chips == 20)
    spec = check.pools(setup)
    assert isinstance(spec, disagg.DisaggSpec)
    small = disagg.DisaggSpec(disagg.PoolSpec("prefill", "h100-sxm", 2), disagg.PoolSpec("decode", "h100-sxm", 2))

    def run(s, _spec):
        return disagg.run(_system(small.text()), ServeConfig(), Load("concurrency", 8, 24, 256, 32))

    records = check.replay([setup], run)
    assert records[0]["disagg"] == spec.text()  # the pools the rows state; the run is the stand-in
    assert set(records[0]["errors"]) == {"interactivity_p50", "output_throughput_per_chip",
                                         "total_throughput_per_chip", "ttft_p50"}
    medians = check.summary(records)
    assert medians["interactivity_p50"] == pytest.approx(abs(records[0]["errors"]["interactivity_p50"]))
    assert "B300 20 GPUs" in check.markdown(records)


def test_python_api_serve_with_disagg_returns_the_pools():
    import accelsim
    report, run, curve, capacity = accelsim.serve("llama-3.1-8b", None, disagg=HETERO, kv_link="roce",
                                                  offline=True, requests=8, prompt=128, output=8, results=True)
    assert isinstance(run, disagg.DisaggResult) and curve == [run] and capacity is None
    d = report.summary["disagg"]
    assert d["kv_link"]["name"] == "roce" and d["pools"]["decode"]["replicas"] == 4
    assert report.summary["load"]["kind"] == "offline"
    with pytest.raises(AccelsimError, match="give no --hw"):
        accelsim.serve("llama-3.1-8b", "h100-sxm", disagg=HETERO)
    with pytest.raises(AccelsimError, match="give --disagg too"):
        accelsim.serve("llama-3.1-8b", "h100-sxm", kv_link="roce")


def test_closed_loop_keeps_its_concurrency_across_replicas():
    """Each completion sends one request: never more than N in flight, whichever replica ends first."""
    run = disagg.run(_system("prefill=h100-sxm:2,decode=h100-sxm:3"), ServeConfig(),
                     Load("concurrency", 5, 60, 300, 7, spread=0.3, seed=2))  # replicas finish out of order
    events = sorted([(r.arrival_s, 1) for r in run.result.requests] +
                    [(r.arrival_s + r.e2e_s, -1) for r in run.result.requests], key=lambda e: (e[0], e[1]))
    in_flight, peak = 0, 0
    for _, step in events:
        in_flight += step
        peak = max(peak, in_flight)
    assert peak == 5
    sends = [r.arrival_s for r in sorted(run.result.requests, key=lambda r: r.rid)]
    assert sends == sorted(sends)  # requests go out in order as completions free a slot


def test_attention_dp_steps_cost_any_batch_never_less_than_exact():
    """Serving batches are whatever arrives: a dp that is off the bucket grid still costs every
    prefill and decode batch, padded up to whole ranks, never below the exact shape (dp 10: bucket 12)."""
    from accelsim.transform import Parallelism
    costs = api.cost_model("llama-3.1-8b", "h100-sxm", Parallelism(dp=10))
    for seqs in (1, 5, 10, 11, 12, 13, 40):
        assert costs.prefill(300 * seqs, seqs).time_s > 0
    for batch in (1, 7, 10, 13, 25, 100):
        assert costs.decode(batch, 500).time_s > 0
    assert costs.decode(11, 500).time_s >= costs.decode(10, 500).time_s
    assert costs.prefill(300 * 20, 20).time_s >= costs.prefill(300 * 10, 10).time_s


# --- serve options that must reach the pools (a review found each silently dropped) -------------

def test_disagg_reports_prefix_cache_and_speculation_like_aggregated_serving(cli, tmp_path):
    base = ("serve", "--model", "llama-3.2-1b", "--disagg", "prefill=h100-sxm:1,decode=h100-sxm:2",
            "--concurrency", "4", "--requests", "24", "--prompt", "256", "--output", "8", "--json")
    code, out, err = cli(*base, "--shared-prefix", "128", "--prefix-cache", "--out", str(tmp_path / "a"))
    assert code == 0, err
    s = json.loads(out)["summary"]
    assert s["prefix_cache"]["request_hit_rate"] > 0.5 and s["prefix_cache"]["hit_tokens"] > 0
    code, out, err = cli(*base, "--spec-decode", "mtp", "--out", str(tmp_path / "b"))
    assert code == 2 and "\n" not in err.strip()  # llama-3.2-1b ships no MTP module: one line
    code, out, err = cli("serve", "--model", "llama-3.1-8b", "--disagg", "prefill=h100-sxm:1,decode=h100-sxm:1",
                         "--concurrency", "2", "--requests", "6", "--prompt", "128", "--output", "9",
                         "--spec-decode", "llama-3.2-1b", "--spec-k", "2", "--spec-accept", "0.5",
                         "--json", "--out", str(tmp_path / "c"))
    assert code == 0, err
    spec = json.loads(out)["summary"]["speculative"]
    assert spec["k"] == 2 and spec["accepted_tokens_per_step"] == pytest.approx(1 + 0.5 + 0.25)


def test_disagg_refuses_a_prefix_cache_on_a_recurrent_model_as_aggregated_serving_does(cli, tmp_path):
    args = ("serve", "--model", "mamba-2.8b", "--prefix-cache", "--requests", "4", "--prompt", "64", "--output", "4",
            "--concurrency", "2")
    for extra in ((), ("--disagg", "prefill=h100-sxm:1,decode=h100-sxm:1")):
        code, _, err = cli(*args, *extra, "--out", str(tmp_path / f"r{len(extra)}"))
        assert code == 2 and "recurrent state" in err and len(err.strip().splitlines()) == 1


def test_disagg_idle_energy_counts_every_chip_until_the_system_ends():
    """Offline, one request: the prefill chip idles while the decode chip decodes, and each chip's
    time is either a step or idle, up to the last step of the system."""
    system = _system("prefill=h100-sxm:1,decode=h100-sxm:1", "infiniband")
    run = disagg.serve_disagg([Request(0, 0.0, 128, 64)], system)
    steps = run.result.steps
    end, busy = max(s.end_s for s in steps), sum(s.end_s - s.start_s for s in steps)
    static_w = system.prefill.costs.static_w
    assert run.result.idle_energy_j == pytest.approx(static_w * (2 * end - busy), rel=1e-9)


def test_python_api_serve_takes_a_power_limit_on_both_paths():
    plain = api.serve("llama-3.2-1b", "h100-sxm", offline=True, requests=4, prompt=2048, output=2)
    capped = api.serve("llama-3.2-1b", "h100-sxm", offline=True, requests=4, prompt=2048, output=2, power_limit=200)
    assert capped.summary["ttft_s"]["p50"] > plain.summary["ttft_s"]["p50"]
    split = api.serve("llama-3.2-1b", None, disagg="prefill=h100-sxm:1,decode=h100-sxm:1", offline=True,
                      requests=4, prompt=2048, output=2, power_limit=200)
    assert split.summary["requests"] == 4


@pytest.mark.parametrize("extra", [("--out", "x"), ("--subset", "holdout"), ("--trust-table", "t.csv")])
def test_validate_disagg_refuses_options_it_would_ignore(cli, tmp_path, extra):
    value = str(tmp_path / extra[1]) if extra[0] != "--subset" else extra[1]
    code, _, err = cli("validate", "--disagg", extra[0], value)
    assert code == 2 and "do not apply" in err or "does not apply" in err
    assert len(err.strip().splitlines()) == 1
