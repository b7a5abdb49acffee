"""accelsim: how fast, how efficient and how big is a language model on a given chip."""
from accelsim.api import compare, simulate, speculative, tco
from accelsim.sim.speculative import SpecDecode
from accelsim.workload import Workload

__all__ = ["SpecDecode", "Workload", "compare", "simulate", "speculative", "tco"]
__version__ = "0.1.0"
