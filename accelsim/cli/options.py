"""Options shared by several commands, declared once."""
from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable

import click

from accelsim.dtypes import DTYPES
from accelsim.errors import AccelsimError
from accelsim.sim.speculative import SpecDecode
from accelsim.transform import MAX_CHIPS as _MAX_CHIPS
from accelsim.transform import Parallelism
from accelsim.workload import Phase, Workload

DEFAULT_MODEL = "llama-3.1-8b"


class Finite(click.ParamType):
    """A float in a stated range that is never NaN or infinite (click's FloatRange lets NaN
    through, and an inf rate or SLO would end as Infinity/NaN in the JSON)."""

    name = "number"

    def __init__(self, low: float, high: float, *, low_open: bool = True):
        self.low, self.high, self.low_open = low, high, low_open

    def convert(self, value, param, ctx):
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
MAX_LIST = 256  # values in one list-valued size option (each is a full simulation)
MAX_CHIPS = _MAX_CHIPS  # transform.layout's bound, which dataflow systems also obey
SEED = click.IntRange(min=0, max=2**32 - 1)  # numpy's generators refuse negative seeds


def _compose(*decorators: Callable) -> Callable:
    def apply(func: Callable) -> Callable:
        for decorator in reversed(decorators):
            func = decorator(func)
        return func
    return apply


# Watts: above any chip's TDP (a CS-3 system is ~23 kW), so a larger value is a typo; the chip's
# own range (idle, TDP] is checked when the limit is applied (``api.power_limited``).
MAX_POWER_W = 1e6


class Watts(Finite):
    """A power: a plain number of watts (450) or a quantity with its unit as configs write it
    ('450 W', '20 kW'), finite and in (0, ``MAX_POWER_W``]."""

    name = "watts"

    def __init__(self) -> None:
        super().__init__(0, MAX_POWER_W)

    def convert(self, value, param, ctx):
        from accelsim.config.units import POWER, UnitError, parse_quantity
        try:
            float(value)
        except (TypeError, ValueError):
            try:
                value = parse_quantity(str(value), POWER)
            except UnitError as err:
                self.fail(str(err), param, ctx)
        return super().convert(value, param, ctx)


power_limit_option = click.option(
    "--power-limit", "power_limit", type=Watts(), default=None, metavar="WATTS",
    help="Cap each chip at WATTS (a MaxQ-style power limit, as nvidia-smi -pl sets it): a step that "
         "would draw more runs at a lower clock until it fits, so compute-bound steps slow and "
         "memory-bound ones barely move. Must lie above the chip's idle power and at most its "
         "TDP. [default: the config's power.limit, else the TDP]")

model_option = click.option("--model", "-m", default=DEFAULT_MODEL, show_default=True,
                            help="Model: a bundled name (see `accelsim models`) or a YAML path.")

class SizeList(click.ParamType):
    """'1,8,32,128' or '1k,8k,32k,128k' (k = 1,024 tokens): one or more sizes, each in
    [``floor``, ``ceiling``], at most ``MAX_LIST`` of them."""

    name = "N[,N...]"

    def __init__(self, floor: int, ceiling: int) -> None:
        self.floor, self.ceiling = floor, ceiling

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        items = [item.strip() for item in str(value).split(",")]
        if len(items) > MAX_LIST:
            self.fail(f"{len(items)} values; at most {MAX_LIST} in one list", param, ctx)
        return tuple(_size(item, self.floor, self.ceiling, param, ctx, self) for item in items)


def _size(item: str, floor: int, ceiling: int, param, ctx, kind: click.ParamType) -> int:
    text = item.lower()
    scale = 1024 if text.endswith("k") else 1
    digits = text[:-1] if scale > 1 else text
    if not digits.isdigit():
        kind.fail(f"{item!r} is not a whole number (write 2048, 2k or a list 1k,8k,32k; k = 1,024)",
                  param, ctx)
    size = int(digits) * scale
    if not floor <= size <= ceiling:
        kind.fail(f"{item!r} must be between {floor:,} and {ceiling:,}", param, ctx)
    return size


# Sizes the phase reads; a size given for a phase that ignores it is refused (workload_points).
DEFAULT_PROMPT = 2048
DEFAULT_CONTEXT = 2048

workload_options = _compose(
    click.option("--phase", type=click.Choice(["prefill", "decode"]), default="decode",
                 show_default=True, help="Prefill a prompt, or decode one token per sequence."),
    click.option("--batch", "-b", type=SizeList(1, MAX_BATCH), default="1", show_default=True,
                 help="Sequences processed together; a list (1,8,32,128) runs each and draws "
                      "throughput against latency."),
    click.option("--prompt", type=SizeList(1, MAX_TOKENS), default=None,
                 help="Prompt tokens per sequence (prefill only; k = 1,024; a list such as "
                      "1k,4k,16k draws TTFT against prompt length). [default: 2048]"),
    click.option("--context", type=SizeList(0, MAX_TOKENS), default=None,
                 help="Tokens already in the KV cache per sequence (decode only; k = 1,024; a list "
                      "such as 1k,8k,32k,128k draws latency against context). [default: 2048]"),
    click.option("--allow-long-context", is_flag=True,
                 help="Run a prompt or context beyond the model's max_context (positions it was "
                      "never trained on) instead of refusing it; the result carries a note."),
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
csv_option = click.option("--csv", "as_csv", is_flag=True,
                          help="Print one CSV row per chip and workload point (formats, chips and "
                               "layout in every row).")

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
                      "share it; all-to-all dispatch and combine with --dp-attn, else one all-reduce "
                      "of the experts' partial sums, as vLLM and SGLang run it). --chips 8 --tp 8 --ep 8 and "
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


def workload_points(phase: Phase, batch: tuple[int, ...], prompt: tuple[int, ...] | None,
                    context: tuple[int, ...] | None, density: str | None = None,
                    max_context: int | None = None) -> list[Workload]:
    """Every (batch, size) point asked for, in order; a size option the phase does not read is
    refused rather than silently ignored.  A size not given defaults to 2,048 tokens, or the
    model's ``max_context`` when that is shorter (GPT-2's 1,024)."""
    ignored = {"prefill": ("--context", context), "decode": ("--prompt", prompt)}[phase]
    if ignored[1] is not None:
        reads = "--prompt" if phase == "prefill" else "--context"
        raise click.UsageError(f"{ignored[0]} is ignored by --phase {phase} (it reads {reads}); "
                               f"drop {ignored[0]} or change --phase")
    profile = _density(density)
    default = min(DEFAULT_PROMPT if phase == "prefill" else DEFAULT_CONTEXT,
                  max_context or DEFAULT_CONTEXT)
    sizes = (prompt if phase == "prefill" else context) or (default,)
    points = []
    prefill = phase == "prefill"
    for b in batch:
        for size in sizes:  # the size the phase does not read keeps Workload's default
            points.append(Workload(phase=phase, batch=b, density=profile,
                                   prompt=size if prefill else Workload.prompt,
                                   context=Workload.context if prefill else size))
    return points


def workload_from(phase: Phase, batch: tuple[int, ...], prompt: tuple[int, ...] | None,
                  context: tuple[int, ...] | None, density: str | None = None,
                  max_context: int | None = None) -> Workload:
    """The one workload of a command that takes one point (a list is refused)."""
    points = workload_points(phase, batch, prompt, context, density, max_context)
    if len(points) > 1:
        raise click.UsageError("this command takes one --batch and one --prompt/--context value")
    return points[0]


def echo_json(data: object) -> None:
    click.echo(json.dumps(data, indent=2, default=float))


def echo_csv(results: list, refusals: list) -> None:
    """One CSV row per result and refusal, the columns of a compare report's summary.csv."""
    from accelsim.report.compare import summary_frame  # pandas: only when asked for
    click.echo(summary_frame(results, refusals).to_csv(index=False), nl=False)


def _density(path: str | None):
    from accelsim import api  # the model and hardware stack load only when a command runs

    return api.resolve_density(path)
