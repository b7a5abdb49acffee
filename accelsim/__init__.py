"""accelsim: how fast, how efficient and how big is a language model on a given chip."""
from accelsim.api import compare, serve, simulate
from accelsim.workload import Workload

__all__ = ["Workload", "compare", "serve", "simulate"]
__version__ = "0.1.0"
