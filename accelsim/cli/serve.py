"""`accelsim serve`: requests under load -> TTFT/TPOT percentiles, throughput, a report and a trace."""
from __future__ import annotations

from pathlib import Path

import click

from accelsim import api
from accelsim.cli import options
from accelsim.cli import output as folders  # `output` is the --output option here
from accelsim.cli.progress import progress
from accelsim.errors import AccelsimError
from accelsim.report.speculative import draft_label, speculation_line
from accelsim.sim import disagg, kvcache, load, serving
from accelsim.sim.speculative import SpecDecode
from accelsim.workload import Workload

DEFAULT_RATE_FACTORS = (0.25, 0.5, 1.0, 1.5, 2.0)
MAX_RATE = 1e9     # requests/s: beyond any cluster; keeps arrival times distinct in float64
MIN_RATE = 1e-6    # requests/s (one in 11 days): slower, and arrival times stop being finite
MAX_SLO_S = 1e6    # seconds: about 11 days
MAX_CURVE_RATES = 64


def parse_rates(text: str | None, rate: float) -> list[float]:
    """``"1,2,4,8"`` -> [1, 2, 4, 8]; without the option, fractions and multiples of ``rate``."""
    if text is None:
        return [rate * f for f in DEFAULT_RATE_FACTORS]
    try:
        rates = [float(part) for part in text.split(",")]  # "1,,2" is a typo, not two rates
    except ValueError:
        raise AccelsimError(f"--rates must be comma-separated numbers (e.g. 1,2,4,8), got {text!r}") from None
    if not rates or any(not MIN_RATE <= r <= MAX_RATE for r in rates) or len(rates) > MAX_CURVE_RATES:
        raise AccelsimError(f"--rates must list at most {MAX_CURVE_RATES} finite request rates in "
                            f"[{MIN_RATE:g}, {MAX_RATE:g}] per second, got {text[:80]!r}")
    return sorted(set(rates))


# Options each load reads; given where the load does not read it, one is refused, not ignored.
_SYNTHETIC = ("prompt", "output", "length_spread", "shared_prefix", "n_requests", "arrival", "cv")


def unread_load_options(kind: str, arrival: str, trace: bool, given: set[str]) -> str | None:
    """The first option in ``given`` (parameter names set on the command line) that a load of
    ``kind`` (rate / concurrency / offline), ``arrival`` process and with or without a --trace
    would ignore, with why; None when every one is read."""
    why = {"rate": f"--{kind} has no arrival rate",
           "arrival": f"--{kind} sends requests without an arrival process",
           "cv": "--cv shapes --arrival gamma only"}
    unread = {"rate"} if kind != "rate" else set()
    if kind != "rate":
        unread |= {"arrival", "cv"}
    elif arrival != "gamma":
        unread.add("cv")
    if trace:  # the trace's own lengths, count and arrival times (load.Load words --shared-prefix)
        unread |= set(_SYNTHETIC) - {"shared_prefix"}
    for name in ("rate", *_SYNTHETIC):
        if name in unread and name in given:
            option = "--requests" if name == "n_requests" else "--" + name.replace("_", "-")
            reason = ("--trace gives each request's lengths and arrival" if trace and name in _SYNTHETIC
                      else why[name])
            return f"{option} is not read here: {reason}; drop {option}"
    return None


def speculation_setup(spec_decode: SpecDecode | None) -> str:
    if spec_decode is None:
        return ""
    return (f"; speculative decoding: draft {draft_label(spec_decode.draft)}, K={spec_decode.k}, acceptance "
            f"{spec_decode.accept:g}")


def typical_step(result: serving.ServeResult, costs: serving.CostModel):
    """The engine's timeline of a decode step at the run's median batch and mean context (with
    speculative decoding, its verify step)."""
    decodes = sorted(s.decodes for s in result.steps if s.decodes)
    if not decodes:
        return None, ""
    batch = decodes[len(decodes) // 2]
    context = round(sum(r.prompt + r.output / 2 for r in result.requests) / len(result.requests))
    workload = Workload("decode", batch, 1, context, density=costs.density,
                        spec_tokens=costs.spec_decode.k if costs.spec_decode is not None else 0)
    timeline = api.timeline(costs.model, costs.hw, workload, overlap="double_buffered",
                             **costs.dtypes)
    return timeline, f"{workload.describe()}, double-buffered"


@click.command()
@options.model_option
@click.option("--hw", default="h100-sxm", show_default=True,
              help="Hardware: a bundled name (see `accelsim hw`) or a YAML path.")
@options.parallel_options
@options.dtype_options
@options.density_option
@options.power_limit_option
@click.option("--rate", type=options.Finite(MIN_RATE, MAX_RATE, low_open=False), default=8.0, show_default=True, help="Mean request arrivals per second.")
@click.option("--concurrency", type=options.count(1, serving.MAX_REQUESTS), default=None,
              help="Closed loop: keep N requests in flight, sending the next as one completes "
                   "(TTFT from each send), instead of --rate arrivals.")
@click.option("--offline", is_flag=True, default=False,
              help="Queue all --requests at t=0 (max-throughput / MLPerf Offline), instead of --rate arrivals.")
@click.option("--length-spread", type=options.Finite(0, 1), default=1.0, show_default=True,
              help="Synthetic lengths uniform over SPREAD x nominal .. nominal (0.8: 80-100 %, as "
                   "InferenceX draws them); 1 = fixed --prompt/--output.")
@click.option("--requests", "n_requests", type=options.count(1, serving.MAX_REQUESTS), default=2000, show_default=True,
              help="Requests to simulate per rate.")
@click.option("--arrival", type=click.Choice(serving.ARRIVALS), default="poisson", show_default=True,
              help="Arrival process: Poisson, or bursty gamma with --cv.")
@click.option("--cv", type=options.Finite(1e-3, 1e3, low_open=False), default=2.0, show_default=True,
              help="Coefficient of variation of gamma inter-arrival gaps (1 = Poisson).")
@click.option("--trace", "trace_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="CSV of requests (arrival_s,prompt_tokens,output_tokens; optional prefix_id,prefix_len "
                   "for shared prompt prefixes) instead of synthetic ones.")
@click.option("--shared-prefix", type=options.count(0, serving.MAX_TOKENS), default=0, show_default=True,
              help="Every synthetic prompt starts with the same TOKENS-token prefix (part of --prompt; "
                   "--length-spread draws the rest).")
@click.option("--prefix-cache/--no-prefix-cache", default=None,
              help="Keep shared prefixes' KV blocks for later requests (block-level LRU, ref-counted) "
                   "[default: the runtime's; on for vllm and sglang].")
@click.option("--kv-offload", type=click.Choice(kvcache.OFFLOADS), default=None,
              help="host: evicted prefix blocks and preempted requests' KV move to host memory over the "
                   "link in the hardware config's host_memory, instead of being dropped or recomputed "
                   "[default: none].")
@click.option("--prompt", type=options.count(1, serving.MAX_TOKENS), default=1024, show_default=True, help="Prompt tokens per synthetic request.")
@click.option("--output", type=options.count(1, serving.MAX_TOKENS), default=256, show_default=True, help="Output tokens per synthetic request.")
@click.option("--runtime", default=None,
              help="Serving engine preset: accelsim, vllm, sglang, tensorrt-llm, nim, or a YAML path "
                   "(runtimes/; its scheduler settings and host overheads, each with its source) "
                   "[default: accelsim]. Options below override it.")
@click.option("--scheduler", type=click.Choice(serving.SCHEDULERS), default=None,
              help="static batches, continuous (vLLM-style) batching, or pipelined users (hardwired) "
                   "[default: the runtime's].")
@click.option("--max-batch", type=options.count(1, options.MAX_BATCH), default=None, help="Most requests in one batch [default: the runtime's].")
@click.option("--chunk", type=options.count(1, serving.MAX_TOKENS), default=None,
              help="Most tokens per step, i.e. the prefill chunk (max_num_batched_tokens) "
                   "[default: the runtime's; accelsim 512].")
@click.option("--block-size", type=options.count(1, serving.MAX_TOKENS), default=None,
              help="Tokens per KV-cache block (paging) [default: the runtime's].")
@click.option("--kv-reserve", type=options.Finite(0, 1, low_open=False), default=None,
              help="Share of each request's output whose KV is reserved before admission: 1 = prompt + "
                   "output up front (never preempts), 0 = prompt + 1 [default: the runtime's; accelsim 0].")
@click.option("--preemption", type=click.Choice(serving.PREEMPTIONS), default=None,
              help="What a preempted request loses: recompute its tokens, or swap its cache to host "
                   "memory and back [default: the runtime's].")
@click.option("--kv-memory-fraction", type=options.Finite(0, 1), default=None,
              help="Share of the memory beside the weights (or of all of it, as the runtime sizes its pool) given to the KV cache [default: the runtime's; accelsim 0.9].")
@click.option("--rates", default=None,
              help="Comma-separated rates for the latency-throughput curve [default: 0.25x..2x --rate].")
@click.option("--find-capacity", is_flag=True, default=False,
              help="Search the highest --rate (or --concurrency) whose TTFT and TPOT at --slo-percentile "
                   "meet --slo-ttft/--slo-tpot (to 5 %).")
@click.option("--slo-percentile", type=options.Finite(0, 100), default=99.0, show_default=True,
              help="Percentile at which --find-capacity holds the SLOs.")
@click.option("--slo-ttft", type=options.Finite(0, MAX_SLO_S), default=0.5, show_default=True, help="TTFT SLO in seconds (goodput).")
@click.option("--slo-tpot", type=options.Finite(0, MAX_SLO_S), default=0.05, show_default=True, help="TPOT SLO in seconds (goodput).")
@click.option("--disagg", "disagg_spec", default=None, metavar="SPEC",
              help="Disaggregated serving: prefill=HW:N[:tpX][:ppW][:epY][:dpZ][:batchB],decode=HW:M[...] -- "
                   "separate prefill and decode pools (any chip kinds; N/(tp x pp x dp) replicas "
                   "each; batchB: that pool's engine batch limit per rank instead of --max-batch), "
                   "the KV cache moved between them over --kv-link; instead of --hw and the layout options.")
@click.option("--kv-link", default=None, type=click.Choice(disagg.KV_LINKS),
              help="Link the KV cache crosses from a prefill to a decode replica: nvlink / "
                   "chip-to-chip (the configs' interconnect sections, the slower end's), infiniband "
                   "or roce (400 Gb/s per chip) [default: the chips' own link when both pools are "
                   "one chip kind within one scale-up domain, else infiniband].")
@click.option("--seed", type=options.SEED, default=0, show_default=True, help="Seed of the arrival process.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Report folder [default: reports/serve].")
@options.spec_decode_options
@folders.force_option
@options.json_option
def serve(model, hw, parallelism, weight_dtype, act_dtype, kv_dtype, density, power_limit, rate, concurrency, offline,
          length_spread, n_requests, arrival, cv, trace_file, shared_prefix, prefix_cache, kv_offload, prompt,
          output, runtime, scheduler, max_batch,
          chunk, block_size, kv_reserve, preemption, kv_memory_fraction, rates, find_capacity,
          slo_percentile, slo_ttft, slo_tpot, disagg_spec, kv_link, seed, spec_decode, out, force, as_json):
    """Serve a stream of requests and report TTFT, TPOT, end-to-end latency, throughput, goodput
    under the SLOs, energy per token, the queue over time and a latency-throughput curve.

    \b
    Step times come from the same cost model as `accelsim run`, memoised by batch shape
    (rounded up to a bucket grid, so never optimistic).  Same inputs and --seed, same results.
    With --spec-decode every decode step is a speculative round (K draft steps, then a verify
    step of K+1 tokens per sequence) and each sequence advances by the expected accepted tokens.
    Example:
      accelsim serve --model llama-3.1-8b --hw h100-sxm --rate 8 --requests 2000 --rates 2,4,8,16
    """
    if concurrency is not None and offline:
        raise AccelsimError("--concurrency and --offline are two different loads; give one")
    kind: load.LoadKind = "concurrency" if concurrency is not None else "offline" if offline else "rate"
    if kind != "rate" and rates is not None:
        raise AccelsimError("--rates lists request rates; with --concurrency the curve doubles the "
                            "concurrency, and --offline has no curve")
    trace = tuple(api.load_trace(trace_file)) if trace_file is not None else None
    ctx = click.get_current_context()
    given = {name for name in ctx.params if ctx.get_parameter_source(name) != click.core.ParameterSource.DEFAULT}
    unread = unread_load_options(kind, arrival, trace is not None, given)
    if unread is not None:
        raise click.UsageError(unread)
    # a --rate given stretches a trace to it; without one the trace plays at its own rate
    rate_given = click.get_current_context().get_parameter_source("rate") != click.core.ParameterSource.DEFAULT
    value = load.offered_value(rate if rate_given or trace is None else None, concurrency, trace)
    base_load = load.Load(kind, value, n_requests, prompt, output, length_spread, arrival, cv, seed, trace,
                          shared_prefix)
    if kind == "rate":
        points = parse_rates(rates, value)
    else:
        points = load.default_points(base_load)
    preset = api.load_runtime(runtime)
    config = preset.serve_config(scheduler=scheduler, max_batch=max_batch, chunk=chunk, block_size=block_size,
                                 slo_ttft_s=slo_ttft, slo_tpot_s=slo_tpot, reserve_output=kv_reserve,
                                 preemption=preemption, memory_utilisation=kv_memory_fraction,
                                 prefix_cache=prefix_cache, kv_offload=kv_offload)
    scheduler, max_batch, chunk, block_size = config.scheduler, config.max_batch, config.chunk, config.block_size
    hw_given = click.get_current_context().get_parameter_source("hw") != click.core.ParameterSource.DEFAULT
    runs = api.serve_runs(model, hw if hw_given or disagg_spec is None else None, preset, config, base_load, points,
                          parallelism=parallelism, density=density, spec_decode=spec_decode,
                          power_limit=power_limit, disagg=disagg_spec, kv_link=kv_link,
                          slo=load.Slo(slo_ttft, slo_tpot, slo_percentile) if find_capacity else None,
                          each=lambda loads: progress(loads, "loads", quiet=as_json),  # a bar on a terminal only
                          weight_dtype=weight_dtype, act_dtype=act_dtype, kv_dtype=kv_dtype)
    main, sweep, capacity, costs, split = runs.main, list(runs.curve), runs.capacity, runs.costs, runs.system
    main_rate = value

    from accelsim.report.serving import write_report
    spread = f" (x{length_spread:g}..1)" if length_spread < 1 else ""
    how = {"rate": f"{arrival} requests{f' (cv {cv:g})' if arrival == 'gamma' else ''}",
           "concurrency": f"requests, closed loop of {concurrency} in flight",
           "offline": "requests queued at t=0 (offline)"}[kind]
    shared = f" (the first {shared_prefix} shared by all)" if shared_prefix else ""
    source = f"trace {trace_file}" if trace_file else (
        f"{n_requests} {how}, prompt {prompt}{shared} / output {output} tokens{spread}, seed {seed}")
    main_load = {"rate": f"main rate {main_rate:g} requests/s", "concurrency": f"concurrency {concurrency}",
                 "offline": "offline"}[kind]
    where = f"disaggregated pools ({split.describe()})" if split is not None else costs.hw.name
    setup = (f"{costs.model.name} on {where} under the {preset.name} runtime ({preset.engine}), "
             f"KV reserve {config.reserve_output:g} of the output, "
             f"{'swap-to-host' if config.kv_offload == 'host' else config.preemption} preemption, KV pool "
             f"{config.memory_utilisation:g} of {config.memory_basis} memory; {scheduler} batching (max batch {max_batch}"
             f"{f', chunk {chunk}' if scheduler == 'continuous' else ''}), KV blocks of {block_size} "
             f"tokens{kv_features(main)}; {source}; {main_load}{speculation_setup(spec_decode)}.")
    step, step_label = typical_step(main, costs)
    with folders.report_folder(out or Path("reports") / "serve", force) as (staging, out_dir):
        title = f"Serving {costs.model.name} on " + (
            f"{split.prefill.costs.hw.name} (prefill) + {split.decode.costs.hw.name} (decode)"
            if split is not None else costs.hw.name)
        pools = runs.split_main.findings() if runs.split_main is not None else None
        files = folders.moved(write_report(main, sweep, staging, title, setup, step, step_label, capacity,
                                           pools),
                              staging, out_dir)
    if as_json:
        options.echo_json({"summary": runs.summary(), "curve": runs.curve_summaries(),
                           "capacity": capacity.summary() if capacity is not None else None,
                           "files": {k: str(v) for k, v in files.items()}})
        return
    s = main.summary()
    click.echo(setup)
    for label, key in (("TTFT", "ttft_s"), ("TPOT", "tpot_s"), ("end-to-end", "e2e_s")):
        p = s[key]
        click.echo(f"  {label:>10}: p50 {p['p50'] * 1e3:.2f} ms, p90 {p['p90'] * 1e3:.2f} ms, "
                   f"p99 {p['p99'] * 1e3:.2f} ms")
    click.echo(f"  {'throughput':>10}: {s['throughput_tokens_per_s']:,.1f} tokens/s "
               f"({s['throughput_requests_per_s']:.3g} requests/s), goodput "
               f"{s['goodput_requests_per_s']:.3g} requests/s")
    click.echo(f"  {'energy':>10}: {s['joules_per_token']:.4g} J/token; max running {s['max_running']}, "
               f"preemptions {s['preemptions']}")
    for line in kv_lines(s):
        click.echo(line)
    if main.speculation is not None:
        click.echo(f"  {'speculate':>10}: {speculation_line(main.speculation)}")
    for line in pools or []:
        click.echo(f"  {'disagg':>10}: {line}")
    if capacity is not None:
        c = capacity.summary()
        click.echo(f"  {'capacity':>10}: {c['load']} {c['value']:g} meets {c['percentile']} TTFT <= "
                   f"{slo_ttft:g} s and TPOT <= {slo_tpot:g} s "
                   f"({c['at_capacity']['throughput_tokens_per_s']:,.1f} tokens/s); {c['above']['value']:g} does not")
    click.echo(f"\nreport: {files['html']} (report.md, CSV, plots and trace.json in {out_dir})")


def kv_features(result: serving.ServeResult) -> str:
    """The prefix cache and KV offload settings, for the setup line (empty when both are off)."""
    on = (["prefix cache"] if "prefix_cache" in result.kv else []) + \
         (["KV offload to host memory"] if "kv_offload" in result.kv else [])
    return f", {' and '.join(on)}" if on else ""


def kv_lines(summary: dict) -> list[str]:
    lines = []
    if "prefix_cache" in summary:
        p = summary["prefix_cache"]
        lines.append(f"  {'prefix':>10}: token hit rate {p['token_hit_rate']:.1%}, request hit rate "
                     f"{p['request_hit_rate']:.1%} ({p['hit_tokens']:,} prompt tokens not prefilled)")
    if "kv_offload" in summary:
        o = summary["kv_offload"]
        lines.append(f"  {'offload':>10}: {o['bytes_to_host'] / 1e9:.3g} GB to host, {o['bytes_from_host'] / 1e9:.3g} GB "
                     f"back, host tier peak {o['host_peak_bytes'] / 1e9:.3g} of {o['host_capacity_bytes'] / 1e9:.3g} GB")
    return lines


COMMANDS = (serve,)
