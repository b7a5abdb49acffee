"""Terminal text for speculative decoding's effective figures (``accelsim run --spec-decode``)."""
from __future__ import annotations

from accelsim.config.units import format_si
from accelsim.sim.speculative import SpecFigures


def speculative_summary(f: SpecFigures) -> str:
    draft = "the model's MTP module" if f.draft == "mtp" else f.draft
    return "\n".join([
        f"\nSpeculative decoding: draft {draft}, K={f.k}, acceptance {f.accept:g}",
        f"  accepted tokens per verify step: {f.tokens_per_step:.3f}  ((1 - a^(K+1)) / (1 - a))",
        f"  verify step ({f.k + 1} tokens/sequence): {format_si(f.verify_s, 's')}; draft step: "
        f"{format_si(f.draft_step_s, 's')} x {f.k}; round: {format_si(f.round_s, 's')}",
        f"  effective TPOT: {format_si(f.tpot_s, 's')} (without speculation "
        f"{format_si(f.baseline_tpot_s, 's')}; {f.speedup:.2f}x)",
        f"  tokens/s per user: {f.tokens_per_s_per_user:,.1f}; tokens/s (batch {f.batch}): "
        f"{f.tokens_per_s:,.1f}",
    ])
