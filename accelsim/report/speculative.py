"""Text for speculative decoding's figures: one step (``accelsim run --spec-decode``) and a
serving run (``accelsim serve --spec-decode``: terminal line and report finding)."""
from __future__ import annotations

from accelsim.config.units import format_si
from accelsim.sim.serving import SpecStats
from accelsim.sim.speculative import MTP, SpecFigures


def draft_label(draft: str) -> str:
    """The draft as a reader names it."""
    return "the model's MTP module" if draft == MTP else draft


def speculative_summary(f: SpecFigures) -> str:
    draft = draft_label(f.draft)
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


def speculation_line(s: SpecStats) -> str:
    """A serving run's speculation in one line."""
    return (f"{s.accepted_tokens_per_step:.3f} accepted tokens per verify step expected (K={s.k}, "
            f"acceptance {s.accept:g}), {s.tokens_per_sequence_step:.3f} emitted per sequence and "
            f"step (outputs end mid-round); drafting {s.draft_share:.0%} of decode time")
