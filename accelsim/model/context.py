"""Shared state while lowering one model for one workload: naming, dtypes and the graph."""
from __future__ import annotations

from dataclasses import dataclass

from accelsim.graph import Elementwise, Graph, MatMul, Norm, Op, Tensor
from accelsim.model.spec import ModelSpec
from accelsim.workload import Workload


@dataclass
class LoweringContext:
    spec: ModelSpec
    workload: Workload
    graph: Graph

    @property
    def tokens(self) -> int:
        return self.workload.tokens

    def activation(self, name: str, *shape: int) -> Tensor:
        return Tensor(name, tuple(shape), self.spec.dtypes.activation, "activation")

    def weight(self, name: str, *shape: int, dtype: str | None = None) -> Tensor:
        return Tensor(name, tuple(shape), dtype or self.spec.dtypes.weight, "weight")

    def add(self, op: Op) -> Tensor:
        self.graph.add(op)
        return op.outputs[0]

    def linear(self, name: str, x: Tensor, out_features: int, layer: int | None, *,
               bias: bool = False, weight: Tensor | None = None, rows: int | None = None) -> Tensor:
        """y = x W (+ b): one matmul whose B operand is a weight. ``rows`` overrides M."""
        m = rows if rows is not None else x.shape[0]
        k = x.shape[-1]
        w = weight if weight is not None else self.weight(f"{name}.weight", k, out_features)
        inputs = (x, w) + ((self.weight(f"{name}.bias", out_features),) if bias else ())
        y = self.activation(f"{name}.out", m, out_features)
        return self.add(MatMul(name, inputs, (y,), layer=layer, m=m, k=k, n=out_features))

    def norm(self, name: str, x: Tensor, layer: int | None) -> Tensor:
        rows, cols = x.shape[0], x.shape[-1]
        params = [self.weight(f"{name}.weight", cols)]
        if self.spec.norm == "layernorm":
            params.append(self.weight(f"{name}.bias", cols))
        y = self.activation(f"{name}.out", rows, cols)
        ops = 4.0 if self.spec.norm == "rmsnorm" else 6.0  # LayerNorm also subtracts the mean
        return self.add(Norm(name, (x, *params), (y,), layer=layer, rows=rows, cols=cols,
                             ops_per_element=ops))

    def pointwise(self, name: str, inputs: tuple[Tensor, ...], ops_per_element: float,
                  layer: int | None, shape: tuple[int, ...] | None = None) -> Tensor:
        out_shape = shape or inputs[0].shape
        y = self.activation(f"{name}.out", *out_shape)
        return self.add(Elementwise(name, inputs, (y,), layer=layer, elements=y.elements,
                                    ops_per_element=ops_per_element))
