"""accelsim: how fast, how efficient and how big is a language model on a given chip."""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from accelsim.api import compare, serve, simulate, speculative, tco
    from accelsim.sim.speculative import SpecDecode
    from accelsim.workload import Workload

__all__ = ["SpecDecode", "Workload", "compare", "serve", "simulate", "speculative", "tco"]
__version__ = "0.1.0"

# The public names are imported on first use, so `import accelsim` (and every CLI start,
# `--help` included) does not pay for numpy, pandas and the whole model first.
_LAZY = {"compare": "accelsim.api", "serve": "accelsim.api", "simulate": "accelsim.api",
         "speculative": "accelsim.api", "tco": "accelsim.api", "SpecDecode": "accelsim.sim.speculative",
         "Workload": "accelsim.workload"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'accelsim' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
