"""`accelsim tco` output: a table of each system's costs, the breakevens, and two plots (total
cost against cumulative tokens; breakeven against the model's service life)."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from accelsim.economics.tco import DAYS_PER_MONTH, TcoReport


def _money(value: float | None) -> str:
    if value is None:
        return "-"
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"${value / scale:,.3g}{suffix}"
    return f"${value:,.3g}"


def summary_text(report: TcoReport) -> str:
    """The terminal view: one line per system, one per breakeven."""
    title = (f"{report.model}, {report.workload.get('phase')} batch {report.workload.get('batch')}: "
             f"deployment {report.deploy_years:g} years, model life {report.model_life_months:g} months")
    lines = [title]
    header = (f"{'system':<26}{'basis':<16}{'systems':>8}{'util':>6}{'capex/sys':>11}{'opex/yr/sys':>12}"
              f"{'NRE':>9}{'respin':>9}{'$/Mtok':>10}{'w/ NRE':>10}")
    lines += [header, "-" * len(header)]
    for o in report.options:
        lines.append(f"{o.hw:<26}{o.basis:<16}{o.systems:>8}{o.utilisation:>6.2f}{_money(o.capex_usd or None):>11}"
                     f"{_money(o.opex_usd_per_year):>12}{_money(o.nre_usd or None):>9}"
                     f"{_money(o.respin_usd):>9}{o.usd_per_mtoken:>10.4g}{o.usd_per_mtoken_with_nre:>10.4g}")
    if report.breakevens:
        lines.append("")
    for b in report.breakevens:
        if b.months is None:
            lines.append(f"{b.custom} vs {b.merchant}: no breakeven ({b.reason})")
        else:
            within = "within" if b.within_deployment else "beyond"
            lines.append(f"{b.custom} vs {b.merchant}: breakeven after {b.tokens:.3g} tokens, "
                         f"{b.months:.1f} months at the load ({within} the deployment; {b.reason})")
    lines += [f"note: {n}" for n in report.notes]
    return "\n".join(lines)


def cost_vs_tokens(report: TcoReport, path: Path) -> Path:
    """Cumulative cost of each system against the tokens it has served (NRE steps included)."""
    horizon = report.deploy_years * 12
    ends = [b.months for b in report.breakevens if b.months is not None]
    months = np.linspace(0.0, max([horizon, *(1.2 * m for m in ends)]), 600)
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for o in report.options:
        tokens = months * o.tokens_per_day * DAYS_PER_MONTH
        ax.plot(tokens, [o.cumulative_usd(m) for m in months], label=o.hw,
                linestyle="-" if o.custom else "--")
    for b in report.breakevens:
        if b.tokens is not None:
            ax.axvline(b.tokens, color="grey", alpha=0.4, linewidth=0.8)
    ax.set_xlabel("cumulative tokens served")
    ax.set_ylabel("total cost (USD)")
    ax.set_title("Total cost vs tokens: NRE and respins (solid, custom) against merchant chips (dashed)")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def breakeven_vs_life(report: TcoReport, path: Path) -> Path:
    """Months to breakeven against how long a model stays in service (missing: never)."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    pairs = sorted({(row["custom"], row["merchant"]) for row in report.life_curve})
    for custom, merchant in pairs:
        rows = [r for r in report.life_curve if (r["custom"], r["merchant"]) == (custom, merchant)
                and r["months"] is not None]
        ax.plot([r["model_life_months"] for r in rows], [r["months"] for r in rows], marker="o",
                label=f"{custom} vs {merchant}")
    ax.axhline(report.deploy_years * 12, color="grey", linestyle=":", label="deployment life")
    ax.set_xlabel("model service life (months)")
    ax.set_ylabel("months of service to breakeven")
    ax.set_yscale("log")
    ax.set_title("Breakeven vs model service life (no point: never breaks even)")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(report: TcoReport, out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"json": out_dir / "tco.json", "text": out_dir / "tco.txt"}
    files["json"].write_text(json.dumps(report.to_dict(), indent=2, default=float), encoding="utf-8")
    files["text"].write_text(summary_text(report) + "\n", encoding="utf-8")
    files["cost_vs_tokens"] = cost_vs_tokens(report, out_dir / "cost_vs_tokens.png")
    if report.life_curve:
        files["breakeven_vs_life"] = breakeven_vs_life(report, out_dir / "breakeven_vs_life.png")
    return files
