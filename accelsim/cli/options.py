"""Options shared by several commands, declared once."""
from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable

import click

from accelsim import api
from accelsim.dtypes import DTYPES
from accelsim.transform import Parallelism
from accelsim.workload import Workload

DEFAULT_MODEL = "llama-3.1-8b"


class Finite(click.ParamType):
    """A float in a stated range that is never NaN or infinite (click's FloatRange lets NaN
    through, and an inf rate or SLO would end as Infinity/NaN in the JSON)."""

    name = "number"

    def __init__(self, low: float, high: float, *, low_open: bool = True):
        self.low, self.high, self.low_open = low, high, low_open

    def convert(self, value, param, ctx):  # type: ignore[no-untyped-def]
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        above = number > self.low if self.low_open else number >= self.low
        if not (math.isfinite(number) and above and number <= self.high):
            bracket = "(" if self.low_open else "["
            self.fail(f"{value!r} is not a finite number in {bracket}{self.low:g}, {self.high:g}]",
                      param, ctx)
        return number


def count(low: int, high: int) -> click.IntRange:
    """An integer option with a sane maximum, stated in --help and in the error."""
    return click.IntRange(min=low, max=high)


# Workload sizes a step is costed for: a batch or context beyond these is a typo, not a design.
MAX_BATCH = 2**20
MAX_TOKENS = 2**24
MAX_CHIPS = 2**16  # chips in one system (the largest TPU pods are ~9,000 chips)
SEED = click.IntRange(min=0, max=2**32 - 1)  # numpy's generators refuse negative seeds


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
    click.option("--batch", "-b", type=count(1, MAX_BATCH), default=1, show_default=True,
                 help="Sequences processed together."),
    click.option("--prompt", type=count(1, MAX_TOKENS), default=2048, show_default=True,
                 help="Prompt tokens per sequence (prefill)."),
    click.option("--context", type=count(0, MAX_TOKENS), default=2048, show_default=True,
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
    click.option("--chips", type=count(1, MAX_CHIPS), default=None,
                 help="Chips in the system: chips = tp x pp x dp-attn (--ep does not multiply "
                      "them); alone, they split the model by tensor parallelism. "
                      "[default: tp x pp x dp-attn; dataflow chips: as many as the model's bytes "
                      "need]"),
    click.option("--tp", type=count(1, MAX_CHIPS), default=None,
                 help="Tensor-parallel ranks (split heads and matmul columns/rows; all-reduce). "
                      "Without --ep, every routed expert is split over the tp x dp-attn chips."),
    click.option("--pp", type=count(1, MAX_CHIPS), default=None,
                 help="Pipeline stages (contiguous layers per stage; sends between stages)."),
    click.option("--dp-attn", "dp", type=count(1, MAX_CHIPS), default=None,
                 help="Attention data-parallel ranks: each holds whole attention heads (split "
                      "over its --tp ranks) and the dense weights, and runs batch/dp-attn of the "
                      "sequences; must divide --batch. [default: 1]"),
    click.option("--ep", type=count(1, MAX_CHIPS), default=None,
                 help="Expert parallelism for MoE models: split the routed experts over the "
                      "tp x dp-attn chips of each stage (must divide tp x dp-attn and the expert "
                      "count; each expert tensor-split over the (tp x dp-attn)/ep chips that "
                      "share it; all-to-all dispatch and combine). --chips 8 --tp 8 --ep 8 and "
                      "--chips 8 --dp-attn 8 --ep 8 are both one 8-chip node. [default: 1]"),
    click.option("--tp-x", "tp_x", type=count(1, MAX_CHIPS), default=None,
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


def workload_from(phase: str, batch: int, prompt: int, context: int,
                  density: str | None = None) -> Workload:
    return Workload(phase=phase, batch=batch, prompt=prompt, context=context,
                    density=api.resolve_density(density))


def echo_json(data: object) -> None:
    click.echo(json.dumps(data, indent=2, default=float))
