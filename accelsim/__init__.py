"""accelsim: how fast, how efficient and how big is a language model on a given chip."""
from accelsim.api import compare, simulate, tco
from accelsim.workload import Workload

__all__ = ["Workload", "compare", "simulate", "tco"]
__version__ = "0.1.0"
