"""Measure activation density on a real torch module with forward pre-hooks.

Each leaf module (no children: Linear, Conv, activation modules ...) records, over every call,
how many elements of its first floating-point input have ``|x| > threshold``.  Entries are
named by module path, which is also the op name ``import_module`` gives that module's op, so a
profile measured here applies directly to an imported graph.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from accelsim.errors import AccelsimError
from accelsim.model.density import DensityEntry, DensityProfile

try:
    import torch
except ImportError:  # pragma: no cover - exercised only without the torch extra
    raise AccelsimError("density measurement needs PyTorch: pip install 'accelsim[torch]'") from None


def measure_density(module: torch.nn.Module, example_inputs: tuple, *, threshold: float = 0.0,
                    extra_batches: Iterable[tuple] = (), source: str | None = None) -> DensityProfile:
    """Run ``module`` (in eval mode, without gradients) on ``example_inputs`` and on each of
    ``extra_batches``, and return the input density of every leaf module that saw a
    floating-point tensor.  ``threshold`` = 0 counts exact zeros only."""
    if threshold < 0:
        raise AccelsimError(f"threshold must be >= 0, got {threshold!r}")
    live: dict[str, int] = defaultdict(int)
    seen: dict[str, int] = defaultdict(int)

    def hook_for(name: str):
        def record(_module, inputs):
            x = next((a for a in inputs if torch.is_tensor(a) and a.is_floating_point()), None)
            if x is not None and x.numel():
                live[name] += int((x.detach().abs() > threshold).sum())
                seen[name] += x.numel()
        return record

    leaves = [(n, m) for n, m in module.named_modules() if n and not any(True for _ in m.children())]
    handles = [m.register_forward_pre_hook(hook_for(n)) for n, m in leaves]
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            for batch in (example_inputs, *extra_batches):
                module(*(batch if isinstance(batch, (tuple, list)) else (batch,)))
    finally:
        for handle in handles:
            handle.remove()
        module.train(was_training)
    entries = tuple(DensityEntry(name=n, density=live[n] / seen[n], samples=seen[n])
                    for n, _ in leaves if seen[n])
    return DensityProfile(threshold=threshold, entries=entries,
                          source=source or f"measured on {type(module).__name__} with forward hooks")
