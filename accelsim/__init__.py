"""accelsim: how fast, how efficient and how big is a language model on a given chip."""
from accelsim.api import compare, serve, simulate, speculative, tco
from accelsim.sim.speculative import SpecDecode
from accelsim.workload import Workload

__all__ = ["SpecDecode", "Workload", "compare", "serve", "simulate", "speculative", "tco"]
__version__ = "0.1.0"
