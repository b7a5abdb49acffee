"""Plain-text summaries for the terminal."""
from __future__ import annotations

import pandas as pd

from accelsim.config.units import format_rate, format_si
from accelsim.sim.result import Refusal, Result


def chips_line(result: Result) -> str:
    """'1', '8 (tp=8 pp=1 dp=1 ep=1)' or '64 (tp=64 as 4x16 pp=1 dp=1 ep=1)': the system the figures are for."""
    system = result.system
    split = " ".join(f"{k}={system[k]}" for k in ("tp", "pp", "dp", "ep") if k in system)
    if system.get("tp_x", 1) > 1:
        split = split.replace(f"tp={system['tp']}", f"tp={system['tp']} as {system['tp_x']}x"
                                                    f"{system['tp'] // system['tp_x']}")
    if system.get("attention") == "batch":
        split += " attention=batch"
    return f"{result.chips}" + (f" ({split})" if split else "")


def workload_line(workload: dict) -> str:
    """'decode batch=1 context=2048': only the sizes the phase reads."""
    size = "prompt" if workload["phase"] == "prefill" else "context"
    return f"{workload['phase']} batch={workload['batch']} {size}={workload[size]}"


def headline(result: Result) -> dict[str, str]:
    rows = {
        "chips": chips_line(result),
        "formats": result.dtype_label + (f" / state {result.dtypes['state']}" if "state" in result.dtypes else ""),
        "latency": format_si(result.latency_s, "s"),
        "tokens/s": f"{result.tokens_per_s:,.1f}",
        "per user": f"{result.tokens_per_s_per_user:,.1f} tokens/s",
        "per chip": f"{result.tokens_per_s_per_chip:,.1f} tokens/s",
        "J/token": f"{result.joules_per_token:.4g}",
        "avg power": format_si(result.power_w, "W"),
        "weights": format_si(result.footprint_bytes.get("weight", 0.0), "B"),
        "KV cache": format_si(result.footprint_bytes.get("kv_cache", 0.0), "B"),
    }
    if "max_concurrent_users" in result.system:
        users = result.system["max_concurrent_users"]
        per_user = format_si(result.system["kv_state_bytes_per_user"], "B")
        rows["max users"] = (f"{users:,} at context {result.workload['context']} ({per_user} KV + state each)"
                             if users is not None else "no per-user state: not memory-limited")
    if result.area_mm2 is not None:
        dies = f" ({result.dies} dies of {result.die_mm2:,.0f} mm2)" if result.dies > 1 and result.die_mm2 else ""
        basis = f", {result.cost['die_basis']}" if result.cost.get("die_basis") else ""
        rows["die area"] = f"{result.area_mm2:,.0f} mm2 per chip{dies}{basis}"
    if result.usd_per_mtoken is not None:
        basis = f" (system, {result.cost['basis']})" if result.cost.get("basis") else ""
        rows["$/Mtoken"] = f"{result.usd_per_mtoken:.4g}{basis}"
    if result.trust is not None:  # so nobody takes a datasheet estimate for a measurement
        rows["trust"] = f"{result.trust.short}: {result.trust.basis}"
    return rows


def op_groups(frame: pd.DataFrame) -> pd.DataFrame:
    """Ops grouped by what they are in every layer ('layers.*.mlp.up' x 32), slowest group
    first: a table of 12 near-identical rows says less than one row with its count."""
    # 'layers.12.mlp.up' -> 'layers.*.mlp.up'; a dataflow system's op split at a chip boundary
    # ('layers.12.mlp.up@58') counts with its layer's others
    keyed = frame.assign(group=frame["name"].str.replace(r"(^|\.)layers\.\d+\.", r"\1layers.*.",
                                                          regex=True).str.replace(r"@\d+$", "", regex=True))
    rows = []
    for group, ops in keyed.groupby("group", sort=False):
        slowest = ops.loc[ops["time_s"].idxmax()]
        rows.append({"op": group, "count": len(ops), "kind": slowest["kind"], "dtype": slowest["dtype"],
                     "time_s": ops["time_s"].sum(), "time_each_s": ops["time_s"].mean(),
                     "regime": ops.groupby("regime")["time_s"].sum().idxmax(),
                     "utilisation": ops["utilisation"].mean(), "mapping": slowest["mapping"]})
    return pd.DataFrame(rows).sort_values("time_s", ascending=False)


def op_table(result: Result, top: int = 12) -> pd.DataFrame:
    """The slowest op groups (per-layer ops summed over layers) with units in every cell."""
    everything = result.ops_frame()
    frame = op_groups(everything)
    if top:
        frame = frame.head(top)
    shown = pd.DataFrame({
        "op": frame["op"], "count": frame["count"], "kind": frame["kind"], "dtype": frame["dtype"],
        "time": frame["time_s"].map(lambda v: format_si(v, "s")),
        "each": frame["time_each_s"].map(lambda v: format_si(v, "s")),
        "share": (frame["time_s"] / everything["time_s"].sum()).map("{:.1%}".format),
        "bound": frame["regime"], "util": frame["utilisation"].map("{:.1%}".format),
        "mapping": frame["mapping"],
    })
    return shown


def result_summary(result: Result, top: int = 12) -> str:
    lines = [f"{result.model} on {result.hw} ({result.hw_kind}) - {workload_line(result.workload)}"]
    lines += [f"  {k:>10}: {v}" for k, v in headline(result).items()]
    lines += [f"  {'note':>10}: {n}" for n in result.notes]
    kinds = result.by_kind()
    times, counts, bounds = kinds["time_s"], kinds["count"], kinds["regime"]
    if result.step_overhead_s:
        # Host-side step work belongs to no op: its own line, so the shares add up to the step.
        times = pd.concat([times, pd.Series({"step overhead (host)": result.step_overhead_s})])
        counts = pd.concat([counts, pd.Series({"step overhead (host)": 0})])
        bounds = pd.concat([bounds, pd.Series({"step overhead (host)": "host-bound"})])
    lines.append("\nTime by op kind:")
    lines.append(pd.DataFrame({
        "time": times.map(lambda v: format_si(v, "s")),
        "share": (times / times.sum()).map("{:.1%}".format),
        "ops": counts, "bound": bounds,
    }).to_string())
    lines.append(f"\nSlowest ops, summed over layers{' (top ' + str(top) + ')' if top else ''}:")
    lines.append(op_table(result, top).to_string(index=False))
    energy = result.energy_j
    total = sum(energy.values())
    lines.append("\nEnergy per step: " + ", ".join(
        f"{k} {v / total:.1%}" for k, v in sorted(energy.items(), key=lambda kv: -kv[1])))
    return "\n".join(lines)


def points_table(results: list[Result], refusals: list[Refusal]) -> str:
    """One row per workload point of a list-valued run, each with its formats and system; a
    point the chip cannot run keeps its row and its reason follows the table."""
    lines = [f"{results[0].model} on {results[0].hw} ({results[0].hw_kind})" if results
             else f"{refusals[0].hw}: no point runs"]
    frame = pd.DataFrame([{
        "workload": workload_line(r.workload),
        "formats": r.dtype_label,
        "system": r.layout,
        "step latency": format_si(r.latency_s, "s"),
        "throughput": format_rate(r.tokens_per_s, "tokens/s"),
        "per user": format_rate(r.tokens_per_s_per_user, "tokens/s"),
        "energy/token": format_si(r.joules_per_token, "J"),
        "KV cache": format_si(r.footprint_bytes.get("kv_cache", 0.0), "B"),
    } for r in results] + [{"workload": workload_line(f.workload or {}), "step latency": "cannot run (below)"}
                           for f in refusals]).fillna("")
    lines.append(frame.to_string(index=False))
    lines += [f"cannot run {workload_line(f.workload or {})}: {f.reason}" for f in refusals]
    where: dict[str, list[str]] = {}
    for r in results:
        for note in r.notes:
            where.setdefault(note, []).append(workload_line(r.workload))
    lines += [f"note{'' if len(at) == len(results) else ' (' + '; '.join(at) + ')'}: {note}"
              for note, at in where.items()]
    return "\n".join(lines)
