"""Plain-text summaries for the terminal."""
from __future__ import annotations

import pandas as pd

from accelsim.sim.result import Result
from accelsim.units import format_si


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


def headline(result: Result) -> dict[str, str]:
    rows = {
        "chips": chips_line(result),
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
        rows["die area"] = f"{result.area_mm2:,.0f} mm2 per chip"
    if result.usd_per_mtoken is not None:
        rows["$/Mtoken"] = f"{result.usd_per_mtoken:.4g}"
    if result.trust is not None:  # so nobody takes a datasheet estimate for a measurement
        rows["trust"] = f"{result.trust.short}: {result.trust.basis}"
    return rows


def op_table(result: Result, top: int = 12) -> pd.DataFrame:
    frame = result.ops_frame().sort_values("time_s", ascending=False)
    if top:
        frame = frame.head(top)
    shown = pd.DataFrame({
        "op": frame["name"], "kind": frame["kind"],
        "time": frame["time_s"].map(lambda v: format_si(v, "s")),
        "share": (frame["time_s"] / result.ops_frame()["time_s"].sum()).map("{:.1%}".format),
        "bound": frame["bound"], "util": frame["utilisation"].map("{:.1%}".format),
        "mapping": frame["mapping"],
    })
    return shown


def result_summary(result: Result, top: int = 12) -> str:
    lines = [f"{result.model} on {result.hw} ({result.hw_kind}) - "
             + ", ".join(f"{k}={v}" for k, v in result.workload.items())]
    lines += [f"  {k:>10}: {v}" for k, v in headline(result).items()]
    lines += [f"  {'note':>10}: {n}" for n in result.notes]
    kinds = result.by_kind()
    times, counts, bounds = kinds["time_s"], kinds["count"], kinds["bound"]
    if result.step_overhead_s:
        # Host-side step work belongs to no op: its own line, so the shares add up to the step.
        times = pd.concat([times, pd.Series({"step overhead (host)": result.step_overhead_s})])
        counts = pd.concat([counts, pd.Series({"step overhead (host)": 0})])
        bounds = pd.concat([bounds, pd.Series({"step overhead (host)": "overhead"})])
    lines.append("\nTime by op kind:")
    lines.append(pd.DataFrame({
        "time": times.map(lambda v: format_si(v, "s")),
        "share": (times / times.sum()).map("{:.1%}".format),
        "ops": counts, "bound": bounds,
    }).to_string())
    lines.append(f"\nSlowest ops{' (top ' + str(top) + ')' if top else ''}:")
    lines.append(op_table(result, top).to_string(index=False))
    energy = result.energy_j
    total = sum(energy.values())
    lines.append("\nEnergy per step: " + ", ".join(
        f"{k} {v / total:.1%}" for k, v in sorted(energy.items(), key=lambda kv: -kv[1])))
    return "\n".join(lines)
