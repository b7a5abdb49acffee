"""Simulate a graph that did not come from a ModelSpec (an imported torch module)."""
from __future__ import annotations

from accelsim import hardware, pipeline
from accelsim.api import resolve_hardware
from accelsim.errors import AccelsimError
from accelsim.graph import Graph
from accelsim.hardware.spec import HardwareBase
from accelsim.sim.result import Result
from accelsim.workload import Workload


def simulate_graph(graph: Graph, hw: HardwareBase | str, workload: Workload) -> Result:
    """Map and cost ``graph`` on ``hw`` exactly as ``accelsim.simulate`` does a lowered model.

    ``workload`` must describe the step the graph was traced for (an imported graph is fixed by
    its example inputs: prefill of ``batch`` x ``prompt`` tokens, or a decode step); it sets the
    tokens that throughput and energy per token are divided by, and carries the density profile.
    """
    chip = resolve_hardware(hw)
    fixed = hardware.backend(chip).fixed_model(chip)
    if fixed is not None:
        # The chip holds one catalogue model's weights in silicon: nothing else runs on it.
        raise AccelsimError(f"{chip.name} is hardwired for '{fixed}'; an imported "
                            f"graph cannot run on it (choose a gpu or systolic chip)")

    def fixed_graph(asked: Workload) -> Graph:
        if asked != workload:
            raise AccelsimError(f"{graph.name}: an imported graph is fixed by its example inputs and "
                                f"cannot be re-lowered for {asked.describe()}")
        return graph

    return pipeline.run(graph.name, fixed_graph, chip, workload, None).result
