"""accelsim: how fast, how efficient and how big is a language model on a given chip."""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from accelsim.api import compare, simulate
    from accelsim.workload import Workload

__all__ = ["Workload", "compare", "simulate"]
__version__ = "0.1.0"

# The public names are imported on first use, so `import accelsim` (and every CLI start,
# `--help` included) does not pay for numpy, pandas and the whole model first.
_LAZY = {"compare": "accelsim.api", "simulate": "accelsim.api", "Workload": "accelsim.workload"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'accelsim' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
