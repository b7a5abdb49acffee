"""``Parallelism``: how a step's work is laid out over chips, as serving engines run it.

chips = tp x pp x dp.  A pipeline stage runs on ``per_stage`` = tp x dp chips:

* ``tp``: tensor parallelism (heads and matmul columns/rows split; all-reduce), optionally as a
  2-D weight-stationary grid of ``tp_x`` x tp/tp_x (Pope et al. 2022).
* ``dp``: attention data parallelism (``--dp-attn``): each dp rank holds whole attention heads
  (split over its tp ranks) and the dense weights, and runs batch/dp of the sequences.  A dense
  model with dp > 1 is dp replicas of the tp layout.
* ``ep``: a split of the routed experts over the tp x dp chips of a stage (vLLM's and SGLang's
  expert parallelism on the chips that split attention): each chip holds experts/ep experts,
  each of them tensor-split over the (tp x dp)/ep ranks that share it; tokens reach their
  experts by all-to-all dispatch and come back by all-to-all combine under attention data
  parallelism; with dp = 1 every chip holds every token and the experts' partial sums are
  all-reduced over tp (vLLM's and SGLang's TP + EP).  ``ep`` does not multiply
  the chips: --chips 8 --tp 8 --ep 8 and --chips 8 --dp-attn 8 --ep 8 are both one 8-GPU node,
  and --chips 8 --tp 8 alone splits every expert 8 ways (expert tensor parallelism).
* ``pp``: pipeline stages of contiguous layers, joined by sends.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from accelsim.errors import AccelsimError

ATTENTION_SHARDING: tuple[str, ...] = ("heads", "batch")
MAX_CHIPS = 2**16  # chips in one system (the largest TPU pods are ~9,000 chips)
_OPTION = {"tp": "--tp", "pp": "--pp", "dp": "--dp-attn", "ep": "--ep", "tp_x": "--tp-x"}


@dataclass(frozen=True)
class Parallelism:
    """How many chips, and how the work is split among them: chips = tp x pp x dp; ep splits the
    experts over the tp x dp chips of each stage.

    ``tp_x`` > 1 lays the tp ranks out as a 2D weight-stationary grid of tp_x x (tp / tp_x).
    ``attention="batch"`` reshards attention from heads to sequences (Pope et al. Sec. 3.3)."""

    tp: int = 1
    pp: int = 1
    dp: int = 1
    ep: int = 1
    chips: int = 0  # 0 means tp x pp x dp, filled in at construction
    tp_x: int = 1
    attention: Literal["heads", "batch"] = "heads"

    def __post_init__(self) -> None:
        for name, option in _OPTION.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise AccelsimError(f"{option} must be an integer >= 1, got {value!r}")
        if self.attention not in ATTENTION_SHARDING:
            raise AccelsimError(f"--attention-sharding {self.attention!r} not one of "
                                f"{', '.join(ATTENTION_SHARDING)}")
        if self.tp % self.tp_x:
            raise AccelsimError(f"--tp-x {self.tp_x} must divide --tp {self.tp} (the 2D grid is "
                                f"tp-x x tp/tp-x chips)")
        if self.per_stage % self.ep:
            raise AccelsimError(f"--ep {self.ep} must divide the tp x dp chips of a stage "
                                f"({self.tp} x {self.dp} = {self.per_stage}); allowed: "
                                f"{', '.join(str(d) for d in _divisors(self.per_stage))}")
        product = self.tp * self.pp * self.dp
        if self.chips == 0:
            object.__setattr__(self, "chips", product)
        elif self.chips != product:
            raise AccelsimError(f"--chips {self.chips} must equal --tp x --pp x --dp-attn "
                                f"({self.tp} x {self.pp} x {self.dp} = {product}); --ep does not "
                                f"multiply the chips")

    @classmethod
    def from_options(cls, chips: int | None = None, tp: int | None = None, pp: int | None = None,
                     dp: int | None = None, ep: int | None = None, tp_x: int | None = None,
                     attention: str | None = None) -> Parallelism | None:
        """From CLI options, where None means 'not given': a lone --chips N becomes tensor
        parallelism over whatever --pp and --dp-attn leave, --chips with --tp leaves the rest to
        pipeline stages; nothing given means one chip (None)."""
        if chips is None and tp is None and pp is None and dp is None and ep is None:
            if tp_x not in (None, 1) or attention not in (None, "heads"):
                raise AccelsimError("--tp-x and --attention-sharding lay out tensor-parallel chips; "
                                    "give --tp or --chips too")
            return None
        if chips is not None and (isinstance(chips, bool) or not isinstance(chips, int) or chips < 1):
            raise AccelsimError(f"--chips must be an integer >= 1, got {chips!r}")
        if pp is None and tp is not None and chips is not None and chips % (tp * (dp or 1)) == 0:
            pp = chips // (tp * (dp or 1))  # --chips 72 --tp 8: the rest are pipeline stages
        pp, dp = pp or 1, dp or 1
        if tp is None and chips is not None:
            if chips % (pp * dp):
                raise AccelsimError(f"--chips {chips} is not a multiple of --pp x --dp-attn "
                                    f"({pp} x {dp}); give --tp explicitly")
            tp = chips // (pp * dp)
        return cls(tp=tp or 1, pp=pp, dp=dp, ep=ep or 1, chips=chips or 0, tp_x=tp_x or 1,
                   attention=attention or "heads")  # type: ignore[arg-type]

    @property
    def per_stage(self) -> int:
        """Chips that run each pipeline stage side by side, each the same sharded graph."""
        return self.tp * self.dp

    @property
    def tp_y(self) -> int:
        return self.tp // self.tp_x

    @property
    def expert_tp(self) -> int:
        """Ranks each routed expert is tensor-split over: the stage's chips per expert group."""
        return self.per_stage // self.ep

    def describe(self) -> str:
        grid = f" as {self.tp_x}x{self.tp_y}" if self.tp_x > 1 else ""
        dp = f" dp={self.dp}" if self.dp > 1 else ""
        return f"{self.chips} chips (tp={self.tp}{grid} pp={self.pp}{dp} ep={self.ep})"

    def to_dict(self) -> dict:
        return {"chips": self.chips, "tp": self.tp, "tp_x": self.tp_x, "pp": self.pp, "dp": self.dp,
                "ep": self.ep, "attention": self.attention}


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]
