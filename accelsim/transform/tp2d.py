"""The parts of tensor parallelism that only a 2-D weight-stationary grid needs (Pope et al.
2022, "Efficiently Scaling Transformer Inference", Sec. 3.2.2).

The tp ranks form a ``tp_x x (tp / tp_x)`` grid.  Every weight is split both ways, the model
width over x and heads / MLP columns over y, so each chip still does 1/tp of every matmul but no
activation crosses all tp chips at once.  The residual stream lives split over x along the model
width (norms add a small all_reduce of their row statistics over x).  A column-split matmul's
partial sums are reduce-scattered over x (by rows); a row-split matmul first all-gathers those
rows over x and then all-reduces its partial sums over y.  Per layer each chip sends about
2BLE/x + 2BLF/y bytes instead of Megatron's 2 x 2BLE.  Recurrent scans, convolutions, routed
experts and multi-head latent attention need their rows (or their latents) whole, so a model
with them keeps ``tp_x = 1``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from accelsim.errors import AccelsimError
from accelsim.graph import Collective, Elementwise, Graph, Norm, Op, Tensor
from accelsim.transform._common import EXPERT_ROLES, MLA_ROLES, SEQUENTIAL_ROLES, renamed, scaled


@dataclass(frozen=True)
class Grid:
    """Tensor-parallel ranks as x (model width) by y (heads, MLP columns); x = 1 is Megatron.
    ``attention_by_batch``: attention trades its head split over y for a sequence split."""

    x: int
    y: int
    attention_by_batch: bool = False

    @property
    def ranks(self) -> int:
        return self.x * self.y


@dataclass
class Split:
    """What sharding has done to each activation so far (names of the unsharded tensors)."""

    ratio: dict[str, float] = field(default_factory=dict)  # split over the ranks: local share
    rows_by_x: set[str] = field(default_factory=set)  # ... whose share includes 1/x of the rows
    residual: set[str] = field(default_factory=set)  # whole in 1D, model width split over x in 2D


def check_2d(graph: Graph) -> None:
    for op in graph:
        if op.role in SEQUENTIAL_ROLES or op.role in EXPERT_ROLES:
            raise AccelsimError(f"--tp-x > 1 (the 2D weight-stationary layout) splits rows over x, "
                                f"which {op.kind} op {op.name} ({op.role}) cannot take; run this "
                                f"model with --tp-x 1")
        if op.role in MLA_ROLES:
            raise AccelsimError(f"--tp-x > 1 (the 2D weight-stationary layout) is not modelled for "
                                f"multi-head latent attention ({op.name}); run this model with "
                                f"--tp-x 1")


def local(t: Tensor, split: Split) -> Tensor:
    return scaled(t, split.ratio[t.name])


def gather_rows(t: Tensor, grid: Grid, split: Split, reader: str, layer: int | None
                ) -> tuple[list[Op], Tensor]:
    """A split tensor with all its rows: all-gathered over x when a reduce-scatter spread them."""
    if t.name not in split.rows_by_x:
        return [], local(t, split)
    whole_rows = renamed(scaled(t, split.ratio[t.name] * grid.x), f"{t.name}.rows")
    return [Collective(f"{reader}.gather_x", (local(t, split),), (whole_rows,), layer=layer,
                       role="collective", pattern="all_gather", group=grid.x, grid=(grid.x, grid.y),
                       span="x")], whole_rows


def whole_residuals(op: Op, grid: Grid, split: Split) -> tuple[list[Op], Op]:
    """An op that needs the residual stream whole all-gathers it over x first."""
    gathers: list[Op] = []
    inputs = []
    for t in op.inputs:
        if t.name in split.residual:
            whole = renamed(t, f"{t.name}.whole")
            gathers.append(Collective(f"{op.name}.{t.name}.gather_x", (scaled(t, 1 / grid.x),),
                                      (whole,), layer=op.layer, role="collective",
                                      pattern="all_gather", group=grid.x, grid=(grid.x, grid.y),
                                      span="x"))
            t = whole
        inputs.append(t)
    return gathers, replace(op, inputs=tuple(inputs))


def residual_pointwise(op: Op, grid: Grid, split: Split) -> list[Op]:
    """A residual add or a norm on the 2D grid: each chip holds 1/x of the model width (and the
    y ranks of a row hold the same share).  A norm's mean and variance need every column, so it
    all-reduces one figure per row over x."""
    width = op.outputs[0].shape[-1]

    def share(t: Tensor) -> Tensor:
        return scaled(t, 1 / grid.x) if t.role == "activation" or t.shape[-1] == width else t

    inputs = tuple(share(t) for t in op.inputs)
    outputs = tuple(share(t) for t in op.outputs)
    split.residual.update(t.name for t in op.outputs if t.role == "activation")
    if isinstance(op, Elementwise):
        return [replace(op, inputs=inputs, outputs=outputs, elements=outputs[0].elements,
                        replicas=grid.y)]
    assert isinstance(op, Norm)
    stats = Tensor(f"{op.name}.stats", (op.rows,), "fp32")
    return [replace(op, inputs=inputs, outputs=outputs, cols=outputs[0].shape[-1], replicas=grid.y),
            Collective(f"{op.name}.stats.all_reduce", (stats,), (renamed(stats, f"{stats.name}.sum"),),
                       layer=op.layer, role="collective", pattern="all_reduce", group=grid.x,
                       grid=(grid.x, grid.y), span="x")]
