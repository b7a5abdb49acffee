"""Shared state while lowering one model for one workload: naming, dtypes and the graph."""
from __future__ import annotations

from dataclasses import dataclass

from accelsim.graph import Conv, Elementwise, Graph, MatMul, Norm, Op, Tensor
from accelsim.model.spec import ModelSpec
from accelsim.workload import Workload

# BitLinear per-token absmax activation quantisation: |x|, running max, scale-and-round
# (source: MatMul-free LM, arXiv 2406.02528 Sec. 3.2; refdata/models/README.md section 5.4).
QUANT_OPS_PER_ELEMENT = 3.0
BITLINEAR_ACT_DTYPE = "int8"


@dataclass
class LoweringContext:
    spec: ModelSpec
    workload: Workload
    graph: Graph

    @property
    def tokens(self) -> int:
        return self.workload.tokens

    def activation(self, name: str, *shape: int, dtype: str | None = None) -> Tensor:
        return Tensor(name, tuple(shape), dtype or self.spec.dtypes.activation, "activation")

    def weight(self, name: str, *shape: int, dtype: str | None = None) -> Tensor:
        return Tensor(name, tuple(shape), dtype or self.spec.dtypes.weight, "weight")

    def state(self, name: str, *shape: int) -> Tensor:
        """Recurrent state carried across steps, per sequence (leading axis = batch)."""
        return Tensor(name, (self.workload.batch, *shape), self.spec.dtypes.state, "state")

    @staticmethod
    def view(t: Tensor, width: int) -> Tensor:
        """The first/any ``width`` columns of ``t``: same name (so the graph links it to its
        producer), fewer bytes (an op reading one half of a fused projection moves that half)."""
        return Tensor(t.name, (*t.shape[:-1], width), t.dtype, t.role)

    def add(self, op: Op) -> Tensor:
        self.graph.add(op)
        return op.outputs[0]

    def linear(self, name: str, x: Tensor, out_features: int, layer: int | None, *, role: str,
               bias: bool = False, weight: Tensor | None = None, rows: int | None = None,
               block: bool = True) -> Tensor:
        """y = x W (+ b): one matmul whose B operand is a weight. ``rows`` overrides M.

        ``block`` linears become BitLinears (ternary weights, int8 activations) in models that
        declare ``bitlinear:``; the embedding-side head passes ``block=False``.
        """
        bit = self.spec.bitlinear
        if bit is not None and block and weight is None:
            x = self._bitlinear_input(name, x, layer, bit.input_norm)
            weight = self.weight(f"{name}.weight", x.shape[-1], out_features, dtype="ternary")
        m = rows if rows is not None else x.shape[0]
        k = x.shape[-1]
        w = weight if weight is not None else self.weight(f"{name}.weight", k, out_features)
        inputs = (x, w) + ((self.weight(f"{name}.bias", out_features),) if bias else ())
        y = self.activation(f"{name}.out", m, out_features)
        return self.add(MatMul(name, inputs, (y,), layer=layer, role=role, m=m, k=k, n=out_features))

    def _bitlinear_input(self, name: str, x: Tensor, layer: int | None, input_norm: bool) -> Tensor:
        if input_norm:
            x = self.norm(f"{name}.input_norm", x, layer, kind="rmsnorm")
        q = self.activation(f"{name}.quant.out", *x.shape, dtype=BITLINEAR_ACT_DTYPE)
        return self.add(Elementwise(f"{name}.quant", (x,), (q,), layer=layer, role="quant", elements=q.elements,
                                    ops_per_element=QUANT_OPS_PER_ELEMENT))

    def norm(self, name: str, x: Tensor, layer: int | None, *, kind: str | None = None,
             cols: int | None = None, role: str = "norm") -> Tensor:
        """Norm over the last axis; ``cols`` < width normalises groups of ``cols`` (QK-norm,
        GroupNorm) with one ``cols``-wide weight."""
        rows, width = x.shape[0], x.shape[-1]
        kind = kind or self.spec.norm
        group = cols or width
        params = [self.weight(f"{name}.weight", group)]
        if kind == "layernorm":
            params.append(self.weight(f"{name}.bias", group))
        y = self.activation(f"{name}.out", rows, width)
        ops = 4.0 if kind == "rmsnorm" else 6.0  # LayerNorm also subtracts the mean
        return self.add(Norm(name, (x, *params), (y,), layer=layer, role=role, rows=rows * width // group,
                             cols=group, ops_per_element=ops))

    def pointwise(self, name: str, inputs: tuple[Tensor, ...], ops_per_element: float,
                  layer: int | None, shape: tuple[int, ...] | None = None, *, role: str) -> Tensor:
        out_shape = shape or inputs[0].shape
        y = self.activation(f"{name}.out", *out_shape)
        return self.add(Elementwise(name, inputs, (y,), layer=layer, role=role, elements=y.elements,
                                    ops_per_element=ops_per_element))

    def short_conv(self, name: str, x: Tensor, width: int, layer: int, *, bias: bool) -> Tensor:
        """Causal depthwise conv of ``width`` taps over x's channels; the last width-1 inputs of
        each sequence are state (decode reads them; prefill leaves them for the next step)."""
        wl, channels = self.workload, x.shape[-1]
        params = [self.weight(f"{name}.weight", channels, width)]
        if bias:
            params.append(self.weight(f"{name}.bias", channels))
        window = self.state(f"{name}.state", channels, width - 1)
        y = self.activation(f"{name}.out", x.shape[0], channels)
        new_window = Tensor(f"{name}.state_new", window.shape, window.dtype, "state")
        return self.add(Conv(name, (x, *params, window), (y, new_window), layer=layer, role="conv",
                             batch=wl.batch, length=wl.query_len, channels=channels, width=width))
