"""Options shared by several commands, declared once."""
from __future__ import annotations

import functools
import json
from collections.abc import Callable

import click

from accelsim import api
from accelsim.dtypes import DTYPES
from accelsim.errors import AccelsimError
from accelsim.sim.speculative import SpecDecode
from accelsim.transform import Parallelism
from accelsim.workload import Phase, Workload

DEFAULT_MODEL = "llama-3.1-8b"


def _compose(*decorators: Callable) -> Callable:
    def apply(func: Callable) -> Callable:
        for decorator in reversed(decorators):
            func = decorator(func)
        return func
    return apply


model_option = click.option("--model", "-m", default=DEFAULT_MODEL, show_default=True,
                            help="Model: a bundled name (see `accelsim models`) or a YAML path.")

workload_options = _compose(
    click.option("--phase", type=click.Choice(["prefill", "decode"]), default="decode",
                 show_default=True, help="Prefill a prompt, or decode one token per sequence."),
    click.option("--batch", "-b", type=click.IntRange(min=1), default=1, show_default=True,
                 help="Sequences processed together."),
    click.option("--prompt", type=click.IntRange(min=1), default=2048, show_default=True,
                 help="Prompt tokens per sequence (prefill)."),
    click.option("--context", type=click.IntRange(min=0), default=2048, show_default=True,
                 help="Tokens already in the KV cache per sequence (decode)."),
)

dtype_options = _compose(
    click.option("--weight-dtype", type=click.Choice(DTYPES), default=None,
                 help="Override the model's weight format."),
    click.option("--act-dtype", type=click.Choice(DTYPES), default=None,
                 help="Override the activation format."),
    click.option("--kv-dtype", type=click.Choice(DTYPES), default=None,
                 help="Override the KV-cache format."),
)

density_option = click.option(
    "--density", "density", default=None, metavar="PROFILE.yaml",
    help="Activation-density profile (YAML/JSON, e.g. from the density estimator): hardware "
         "with compute.zero_skipping performs only the MACs it allows; dense hardware ignores it.")

json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")

_LAYOUT_OPTIONS = _compose(
    click.option("--chips", type=click.IntRange(min=1), default=None,
                 help="Chips in the system: chips = tp x pp x dp-attn (--ep does not multiply "
                      "them); alone, they split the model by tensor parallelism. "
                      "[default: tp x pp x dp-attn; dataflow chips: as many as the model's bytes "
                      "need]"),
    click.option("--tp", type=click.IntRange(min=1), default=None,
                 help="Tensor-parallel ranks (split heads and matmul columns/rows; all-reduce). "
                      "Without --ep, every routed expert is split over the tp x dp-attn chips."),
    click.option("--pp", type=click.IntRange(min=1), default=None,
                 help="Pipeline stages (contiguous layers per stage; sends between stages)."),
    click.option("--dp-attn", "dp", type=click.IntRange(min=1), default=None,
                 help="Attention data-parallel ranks: each holds whole attention heads (split "
                      "over its --tp ranks) and the dense weights, and runs batch/dp-attn of the "
                      "sequences; must divide --batch. [default: 1]"),
    click.option("--ep", type=click.IntRange(min=1), default=None,
                 help="Expert parallelism for MoE models: split the routed experts over the "
                      "tp x dp-attn chips of each stage (must divide tp x dp-attn and the expert "
                      "count; each expert tensor-split over the (tp x dp-attn)/ep chips that "
                      "share it; all-to-all dispatch and combine). --chips 8 --tp 8 --ep 8 and "
                      "--chips 8 --dp-attn 8 --ep 8 are both one 8-chip node. [default: 1]"),
    click.option("--tp-x", "tp_x", type=click.IntRange(min=1), default=None,
                 help="Lay the --tp ranks out as a 2D weight-stationary grid of TP_X x TP/TP_X "
                      "(Pope et al. 2022): model width split over x, heads/columns over y. "
                      "[default: 1, Megatron 1D]"),
    click.option("--attention-sharding", "attention", type=click.Choice(["heads", "batch"]),
                 default=None,
                 help="Split attention over the tensor-parallel chips by heads, or reshard it "
                      "by sequences (all-to-all; each chip reads only its sequences' KV cache, "
                      "Pope et al. 2022). [default: heads]"),
)


def parallel_options(command: Callable) -> Callable:
    """The layout options, handed to ``command`` as one ``parallelism`` argument (None when no
    option is given: one chip, or as many as a dataflow system's bytes need)."""
    @functools.wraps(command)
    def with_layout(*args, chips=None, tp=None, pp=None, dp=None, ep=None, tp_x=None, attention=None,
                    **kwargs):
        layout = Parallelism.from_options(chips=chips, tp=tp, pp=pp, dp=dp, ep=ep, tp_x=tp_x,
                                          attention=attention)
        return command(*args, parallelism=layout, **kwargs)
    return _LAYOUT_OPTIONS(with_layout)


_SPEC_DECODE_OPTIONS = _compose(
    click.option("--spec-decode", "spec_draft", default=None, metavar="DRAFT",
                 help="Speculative decoding: the draft, a catalogue model (e.g. llama-3.2-1b) or "
                      "YAML/config.json path run on the same chips, or 'mtp' for the model's own "
                      "multi-token-prediction module (DeepSeek-V3/R1). Needs --spec-k and "
                      "--spec-accept."),
    click.option("--spec-k", "spec_k", type=int, default=None, metavar="K",
                 help="Draft tokens per verify step (>= 1); the verify step computes K+1 tokens "
                      "per sequence."),
    click.option("--spec-accept", "spec_accept", type=float, default=None, metavar="A",
                 help="Chance each drafted token is accepted, in [0, 1); expected tokens per "
                      "verify step (1 - A^(K+1)) / (1 - A) (Leviathan et al. 2023)."),
)


def spec_decode_options(command: Callable) -> Callable:
    """--spec-decode/--spec-k/--spec-accept, handed to ``command`` as one ``spec_decode``
    argument (None when none is given)."""
    @functools.wraps(command)
    def with_spec(*args, spec_draft=None, spec_k=None, spec_accept=None, **kwargs):
        return command(*args, spec_decode=spec_decode_from(spec_draft, spec_k, spec_accept), **kwargs)
    return _SPEC_DECODE_OPTIONS(with_spec)


def spec_decode_from(draft: str | None, k: int | None, accept: float | None) -> SpecDecode | None:
    if draft is None:
        if k is not None or accept is not None:
            raise AccelsimError("--spec-k and --spec-accept go with --spec-decode DRAFT "
                                "(a catalogue model, a path, or 'mtp')")
        return None
    if k is None or accept is None:
        raise AccelsimError("--spec-decode needs --spec-k K (draft tokens per verify step) and "
                            "--spec-accept A (acceptance rate in [0, 1))")
    return SpecDecode(draft, k, accept)


def workload_from(phase: Phase, batch: int, prompt: int, context: int,
                  density: str | None = None) -> Workload:
    return Workload(phase=phase, batch=batch, prompt=prompt, context=context,
                    density=api.resolve_density(density))


def echo_json(data: object) -> None:
    click.echo(json.dumps(data, indent=2, default=float))
