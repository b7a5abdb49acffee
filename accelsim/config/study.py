"""Studies: several models x several chips x several workloads, declared in one YAML file.

A study is the comparison a hardware architect actually publishes ("model family F on chips
A, B, C at these operating points"); it is `compare` run over a grid, with every refusal kept
(``accelsim.api.load_study`` reads the file, ``accelsim.api.run_study`` runs it).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pydantic import Field, model_validator

from accelsim.config.types import NonNegativeInt, PositiveInt, Spec
from accelsim.dtypes import DType
from accelsim.economics.tco import TcoReport
from accelsim.hardware.spec import HardwareBase
from accelsim.sim.result import Refusal, Result
from accelsim.workload import Workload


class StudyWorkload(Spec):
    phase: Literal["prefill", "decode"]
    batch: PositiveInt = 1
    prompt: PositiveInt = 2048
    context: NonNegativeInt = 2048

    @model_validator(mode="after")
    def _reads_every_size(self):
        """A size the phase does not read (a decode's prompt, a prefill's context) is refused, as
        `run --phase decode --prompt N` is, rather than run as if it were not there."""
        unread = {"prefill": "context", "decode": "prompt"}[self.phase]
        if unread in self.model_fields_set:
            reads = "prompt" if self.phase == "prefill" else "context"
            raise ValueError(f"{unread} is not read by phase {self.phase} (it reads {reads}); drop "
                             f"{unread} or change phase")
        return self

    def workload(self) -> Workload:
        return Workload(self.phase, self.batch, self.prompt, self.context)


class StudyCase(Spec):
    """One model with the chips to compare it on; dtypes apply to every chip of the case."""

    model: str = Field(min_length=1)
    hardware: list[str] = Field(min_length=1)
    weight_dtype: DType | None = None
    act_dtype: DType | None = None
    kv_dtype: DType | None = None


class StudySpec(Spec):
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")  # a folder name: no "..", no separators
    title: str = Field(min_length=1)
    cases: list[StudyCase] = Field(min_length=1)
    workloads: list[StudyWorkload] = Field(min_length=1)


@dataclass(frozen=True)
class StudyCell:
    case: StudyCase
    chips: tuple[HardwareBase, ...]  # the case's hardware, resolved
    workload: Workload
    results: list[Result]
    refusals: list[Refusal]
    tco: TcoReport | None = None  # the chips that run it, priced at the default load

    @property
    def slug(self) -> str:
        wl = self.workload
        size = f"p{wl.prompt}" if wl.phase == "prefill" else f"c{wl.context}"
        dtypes = "".join(f"_{tag}-{d}" for tag, d in (("w", self.case.weight_dtype),
                                                        ("a", self.case.act_dtype),
                                                        ("kv", self.case.kv_dtype)) if d)
        raw = f"{self.case.model}{dtypes}_{wl.phase}_b{wl.batch}_{size}"
        # A model given by path must not make the folder a path: one name, no separators.
        return re.sub(r"[^A-Za-z0-9._+-]+", "_", raw).lstrip(".") or "case"

