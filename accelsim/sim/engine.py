"""Event-driven execution of a mapped graph (simpy): overlap, contention and pipelining in time.

The analytical path (``sim.mapper`` + each kind's ``schedule``) says what every op needs; this
engine says what happens when those needs meet in time on shared resources:

* compute units: one per chip, or one per layer region on pipelined (hardwired) chips;
* one DMA channel per off-chip memory level (HBM/DRAM), shared by every op's operand fetch;
* on-chip memory ports (L2, buffer, SRAM), busy while their op executes;
* one chip-to-chip link for ``collective`` ops.

Overlap is a named choice:

``none``
    Nothing overlaps: each op holds the chip for exactly its ``OpCost.time_s`` (its memory and
    compute combined in the op's own terms), one op after another.  The makespan equals the sum
    of op times exactly: time is kept as exact rationals (every float duration is a dyadic
    rational), so the engine's sum is the correctly rounded one, ``math.fsum`` of the op times.
``double_buffered``
    Each op's off-chip bytes become a DMA job that may run ahead of its compute: the next op's
    operands stream in while the current op computes, as long as two ops' operands fit in the
    on-chip capacity (a double buffer: each slot gets half).  An op whose own terms overlap
    (``time = max(compute, memory) + overhead``) may start computing as soon as its fetch has
    started (it streams tiles); an op whose terms add (systolic ``overlap: none``) waits for its
    fetch to finish.  Fetches of operands produced inside the step wait for their producers.
    The makespan is never above the analytical sum (each op ends no later than it would in the
    serial schedule) and never below the busiest single resource.

Time is exact seconds; where a resource has a clock (compute units), intervals report cycles of
that clock, and ``quantise=True`` rounds every compute activity up to whole cycles.  Memory
levels have no clock in the hardware spec, so DMA time is kept unrounded.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Literal, cast

import simpy

from accelsim import hardware
from accelsim.errors import AccelsimError
from accelsim.graph import Graph, Op
from accelsim.hardware.base import OpCost
from accelsim.pipeline import Costed
from accelsim.sim.timeline import Interval, Timeline

if TYPE_CHECKING:
    import networkx as nx

Overlap = Literal["none", "double_buffered"]
OVERLAPS: tuple[str, ...] = ("none", "double_buffered")
# Levels reached through a DMA engine across the chip boundary; every other level is an on-chip
# port that feeds the running op directly.
OFFCHIP_LEVELS: tuple[str, ...] = ("hbm", "dram")
LINK = "link"
HEAD_STAGE = "head"
SERIAL = "chip"  # the one resource every op holds when nothing may overlap


@dataclass(frozen=True)
class Machine:
    """The resources a chip offers the engine, read once from its ``HardwareSpec``."""

    name: str
    clock_hz: float | None
    buffer_bytes: float  # on-chip capacity that can hold prefetched operands
    pipelined: bool = False  # one compute unit per layer region (hardwired chips)
    stage_latency_s: float = 0.0  # hop between pipeline stages


def machine_for(hw: Any) -> Machine:
    """Compute clock, on-chip capacity and pipelining of a validated hardware spec."""
    backend = hardware.backend(hw)
    pipelined = backend.pipelined(hw)
    return Machine(name=hw.name, clock_hz=hw.compute.clock, buffer_bytes=backend.onchip_capacity(hw),
                   pipelined=pipelined, stage_latency_s=backend.stage_latency(hw) if pipelined else 0.0)


@dataclass(frozen=True)
class Task:
    """One op of one group in one round, as the engine schedules it."""

    index: int  # program order: lower runs first when several are ready
    cost: OpCost
    unit: str
    group: int
    round: int
    exec_s: Fraction
    fetch: dict[str, Fraction]  # DMA channel -> transfer time (double-buffered only)
    ports: dict[str, Fraction]  # resource -> busy time from the start of execution
    streaming: bool  # may compute while its own fetch is still running
    whole_buffer: bool  # operands too large for one half of the double buffer
    fetch_waits_deps: bool  # off-chip bytes include activations produced in this step
    deps: tuple[int, ...]
    visit: int  # first task of this visit: consecutive ops of one group on one unit
    visit_end: bool  # the unit is released after this task


def exact(seconds: float) -> Fraction:
    return Fraction(seconds)


def run(costs: list[OpCost], machine: Machine, *, graph: Graph | nx.DiGraph | None = None,
        overlap: Overlap = "none", groups: int = 1, rounds: int = 1, quantise: bool = False) -> Timeline:
    """Execute ``rounds`` steps of ``groups`` user groups through the costed ops.

    ``graph`` supplies the dependencies (a ``Graph`` or its ``dag``); without it every op
    depends on the one before.  Round r+1 of a group starts its source ops only after round r's
    sink ops finished (a decode token needs the previous one).
    """
    if overlap not in OVERLAPS:
        raise AccelsimError(f"overlap must be one of {', '.join(OVERLAPS)}, got {overlap!r}")
    if groups < 1 or rounds < 1:
        raise AccelsimError(f"groups and rounds must be >= 1, got {groups} and {rounds}")
    if not costs:
        return Timeline((), 0.0, analytical_s=0.0)
    dag, ops = _dependencies(graph)
    tasks = _tasks(costs, dag, ops, machine, overlap, groups, rounds, quantise)
    return _Simulation(tasks, machine, overlap).execute()


def replay(step: Costed, hw: Any, *, overlap: Overlap = "double_buffered", rounds: int = 1,
           quantise: bool = False) -> Timeline:
    """Execute a step the pipeline costed (``accelsim.pipeline.run``): its ops, on the graph
    they were costed on, with the runtime's host work per step as a task of its own.

    Across chips the ops are one chip's share (every chip of a stage runs the same ops at the
    same time, collectives included); pipeline stages run as one chain."""
    result = step.result
    costs = list(result.ops)
    if result.step_overhead_s:
        costs.append(host_step(result.step_overhead_s))
    return run(costs, machine_for(hw), graph=step.graph, overlap=overlap, groups=result.groups,
               rounds=rounds, quantise=quantise)


def host_step(seconds: float) -> OpCost:
    """The runtime's host-side work per step (``step_overhead``) as a task after the step's
    kernels: the chip idles through it, and the next round's kernels wait for it."""
    return OpCost(op="step overhead", kind="host", layer=None, time_s=seconds, compute_s=0.0,
                  memory_s={}, bytes={}, energy_j={}, flops=0.0, peak_flops=0.0, bound="overhead",
                  mapping="host (step_overhead)", overhead_s=seconds)


# --- building tasks -------------------------------------------------------------------------

def _dependencies(graph: Graph | nx.DiGraph | None) -> tuple[nx.DiGraph | None, dict[str, Op]]:
    if graph is None:
        return None, {}
    dag = graph.dag if isinstance(graph, Graph) else graph
    ops = {name: data["op"] for name, data in dag.nodes(data=True) if "op" in data}
    return dag, ops


def _unit(cost: OpCost, machine: Machine) -> str:
    if cost.kind == "collective":
        return LINK
    if machine.pipelined:
        return f"stage {HEAD_STAGE if cost.layer is None else cost.layer}"
    return "compute"


def _additive(cost: OpCost) -> bool:
    """True when the op's own terms add (no overlap inside the op) rather than take a max."""
    overlapped = max(cost.compute_s, *cost.memory_s.values(), 0.0) + cost.overhead_s
    return not math.isclose(cost.time_s, overlapped, rel_tol=1e-9, abs_tol=1e-18)


def _static_bytes(op: Op) -> float:
    """Bytes of tensors that exist before the step starts (weights, KV cache, state)."""
    return sum(a.nbytes for a in (*op.reads(), *op.writes()) if a.tensor.role != "activation")


def _round_up(seconds: Fraction, clock_hz: float | None, quantise: bool) -> Fraction:
    if not quantise or clock_hz is None:
        return seconds
    clock = Fraction(clock_hz)
    return Fraction(math.ceil(seconds * clock)) / clock


def _split(cost: OpCost, op: Op | None, machine: Machine, unit: str, overlap: Overlap,
           quantise: bool) -> dict[str, Any]:
    """Execution time, DMA jobs and port times of one op under the chosen overlap."""
    prefix = f"{unit}:" if machine.pipelined else ""
    # Pipelined chips partition each memory's bandwidth among the regions (the cost model
    # already charges each stage its share), so every stage has its own channel and ports.
    channel = {lvl: f"{prefix}dma:{lvl}" for lvl in cost.memory_s}
    port = {lvl: f"{unit}:{lvl}" for lvl in cost.memory_s}
    offchip = {lvl: exact(t) for lvl, t in cost.memory_s.items() if lvl in OFFCHIP_LEVELS and t > 0}
    onchip = {lvl: exact(t) for lvl, t in cost.memory_s.items() if lvl not in OFFCHIP_LEVELS and t > 0}
    clock = machine.clock_hz if unit != LINK else None
    if overlap == "none" or cost.kind == "collective":
        # A collective's transfer is the link's own busy time, not a memory port's.
        ports = {} if cost.kind == "collective" else (
            {channel[lvl]: t for lvl, t in offchip.items()} | {port[lvl]: t for lvl, t in onchip.items()})
        return {"exec_s": _round_up(exact(cost.time_s), clock, quantise), "fetch": {}, "ports": ports,
                "streaming": True, "whole_buffer": False, "fetch_waits_deps": False}
    additive = _additive(cost)
    compute, overhead = exact(cost.compute_s), exact(cost.overhead_s)
    if additive:
        exec_s = compute + sum(onchip.values(), Fraction(0)) + overhead
    else:
        exec_s = max([compute, *onchip.values()]) + overhead
    fetched = sum(cost.bytes.get(lvl, 0.0) for lvl in offchip)
    static = _static_bytes(op) if op is not None else 0.0
    return {"exec_s": _round_up(exec_s, clock, quantise),
            "fetch": {channel[lvl]: t for lvl, t in offchip.items()},
            "ports": {port[lvl]: t for lvl, t in onchip.items()},
            "streaming": not additive,
            "whole_buffer": fetched > machine.buffer_bytes / 2,
            "fetch_waits_deps": op is None or fetched > static * (1 + 1e-9)}


def _tasks(costs: list[OpCost], dag: nx.DiGraph | None, ops: dict[str, Op], machine: Machine,
           overlap: Overlap, groups: int, rounds: int, quantise: bool) -> list[Task]:
    position = {c.op: i for i, c in enumerate(costs)}
    preds: list[tuple[int, ...]] = []
    for i, c in enumerate(costs):
        if dag is not None and c.op in dag:
            preds.append(tuple(sorted(position[p] for p in dag.predecessors(c.op) if p in position)))
        else:
            preds.append((i - 1,) if i else ())
    has_succ = {p for ps in preds for p in ps}
    sources = [i for i, ps in enumerate(preds) if not ps]
    sinks = [i for i in range(len(costs)) if i not in has_succ]
    shape = [_split(c, ops.get(c.op), machine, _unit(c, machine), overlap, quantise) for c in costs]

    units = [_unit(c, machine) for c in costs]
    # A unit serves one visit (a run of consecutive ops of one group) at a time, so groups
    # pass through a pipeline stage whole instead of interleaving op by op.
    visit_of, ends_visit = [0] * len(costs), [True] * len(costs)
    for i in range(1, len(costs)):
        continues = units[i] == units[i - 1]
        visit_of[i] = visit_of[i - 1] if continues else i
        ends_visit[i - 1] = not continues
    tasks: list[Task] = []
    n = len(costs)
    for r in range(rounds):
        for g in range(groups):
            base = (r * groups + g) * n
            previous_round = (base - groups * n) if r else None
            for i, c in enumerate(costs):
                deps = {base + p for p in preds[i]}
                if visit_of[i] != i:
                    deps.add(base + i - 1)  # a held unit runs its visit's ops in program order
                if previous_round is not None and i in sources:
                    deps |= {previous_round + s for s in sinks}
                tasks.append(Task(index=base + i, cost=c, unit=units[i], group=g, round=r,
                                  deps=tuple(sorted(deps)), visit=base + visit_of[i],
                                  visit_end=ends_visit[i], **shape[i]))
    return tasks


# --- execution ------------------------------------------------------------------------------

@dataclass
class _Record:
    """When a task's activities ran, and which earlier activity each one waited for."""

    exec_start: Fraction = Fraction(0)
    exec_end: Fraction = Fraction(0)
    fetch_start: Fraction | None = None
    fetch_end: Fraction | None = None
    exec_after: tuple[str, int] | None = None
    fetch_after: tuple[str, int] | None = None

    @property
    def end(self) -> Fraction:
        return max(self.exec_end, self.fetch_end or Fraction(0))

    @property
    def last(self) -> str:
        return "fetch" if self.fetch_end is not None and self.fetch_end > self.exec_end else "exec"


class _Simulation:
    def __init__(self, tasks: list[Task], machine: Machine, overlap: Overlap):
        self.tasks, self.machine, self.overlap = tasks, machine, overlap
        # Times are exact Fractions; simpy adds whatever numbers it is given (its stubs say float).
        self.env = simpy.Environment(initial_time=Fraction(0))  # type: ignore[arg-type]
        self.done = [self.env.event() for _ in tasks]
        self.fetch_started = [self.env.event() for _ in tasks]
        self.fetch_done = [self.env.event() for _ in tasks]
        self.records = [_Record() for _ in tasks]
        self.resources: dict[str, simpy.PriorityResource] = {}
        self.last_release: dict[str, tuple[Fraction, tuple[str, int]]] = {}
        self.intervals: list[Interval] = []
        self.held: dict[int, simpy.resources.resource.PriorityRequest] = {}
        self.on_unit = self._previous_on_unit()
        # Without overlap one op runs at a time on the whole chip, whichever unit it names.
        self.serial = simpy.PriorityResource(self.env, capacity=1) if overlap == "none" else None

    @property
    def now(self) -> Fraction:
        return cast(Fraction, self.env.now)

    def _wait(self, delay: Fraction) -> simpy.events.Timeout:
        return self.env.timeout(delay)  # type: ignore[arg-type]

    def _previous_on_unit(self) -> list[list[int]]:
        seen: dict[str, list[int]] = {}
        before: list[list[int]] = []
        for t in self.tasks:
            history = seen.setdefault(t.unit, [])
            before.append(history[-2:])
            history.append(t.index)
        return before

    def _key(self, name: str) -> str:
        """The resource a name stands for: without overlap every unit is the one chip."""
        if self.serial is not None and not name.startswith("dma:") and ":dma:" not in name:
            return SERIAL
        return name

    def _resource(self, name: str) -> simpy.PriorityResource:
        key = self._key(name)
        if key == SERIAL and self.serial is not None:
            return self.serial
        if key not in self.resources:
            self.resources[key] = simpy.PriorityResource(self.env, capacity=1)
        return self.resources[key]

    def _binding(self, name: str, candidates: list[tuple[Fraction, tuple[str, int]]]):
        """Which earlier activity set a start time: the last to free what this one waited on."""
        released = self.last_release.get(self._key(name))
        if released is not None:
            candidates = [*candidates, released]
        return max(candidates, key=lambda c: c[0])[1] if candidates else None

    def execute(self) -> Timeline:
        for task in self.tasks:
            self.env.process(self._task(task))
        self.env.run()
        makespan = max(r.end for r in self.records)
        analytical = sum((exact(t.cost.time_s) for t in self.tasks), Fraction(0))
        return Timeline(tuple(sorted(self.intervals, key=lambda i: (i.start_s, i.resource))),
                        float(makespan), self._critical_path(), float(analytical),
                        (f"overlap={self.overlap}",))

    def _deps_ready(self, task: Task) -> list[tuple[Fraction, tuple[str, int]]]:
        """When each input is available (plus a hop when it comes from another stage)."""
        # Without overlap the step is the plain sum of op times: no hop between stages either.
        hop = exact(self.machine.stage_latency_s) if self.serial is None else Fraction(0)
        return [(self.records[d].end + (hop if self.tasks[d].unit != task.unit else 0), ("op", d))
                for d in task.deps]

    def _task(self, task: Task):
        env, rec = self.env, self.records[task.index]
        if task.fetch:
            env.process(self._fetch(task))
        else:
            self.fetch_started[task.index].succeed()
            self.fetch_done[task.index].succeed()
        yield env.all_of([self.done[d] for d in task.deps])
        waits = self._deps_ready(task)
        ready = max((w[0] for w in waits), default=Fraction(0))
        if ready > self.now:
            yield self._wait(ready - self.now)
        yield (self.fetch_started if task.streaming else self.fetch_done)[task.index]
        if task.fetch:
            fetched = rec.fetch_start if task.streaming else rec.fetch_end
            assert fetched is not None  # the event just waited on sets it
            waits.append((fetched, ("fetch", task.index)))
        if task.visit == task.index:
            request = self._resource(task.unit).request(priority=task.index)
            yield request
            self.held[task.index] = request
        rec.exec_start = self.now
        rec.exec_after = self._binding(task.unit, waits)
        yield self._wait(task.exec_s)
        rec.exec_end = self.now
        self.last_release[self._key(task.unit)] = (self.now, ("exec", task.index))
        if task.visit_end:
            self._resource(task.unit).release(self.held.pop(task.visit))
        self._record(task, task.unit, rec.exec_start, task.exec_s)
        for name, busy in task.ports.items():
            self._record(task, name, rec.exec_start, busy)
        yield self.fetch_done[task.index]
        self.done[task.index].succeed()

    def _fetch(self, task: Task):
        env, rec = self.env, self.records[task.index]
        earlier = self.on_unit[task.index]
        waits_on: list[int] = []
        if earlier:
            # A double buffer holds two ops' operands: the one running and the next one.
            must_drain = task.whole_buffer or self.tasks[earlier[-1]].whole_buffer
            slot = earlier[-1] if must_drain else (earlier[0] if len(earlier) == 2 else None)
            waits_on += [slot] if slot is not None else []
        if task.fetch_waits_deps:
            waits_on += list(task.deps)
        yield env.all_of([self.done[d] for d in waits_on])
        waits = [(self.records[d].end, ("op", d)) for d in waits_on]
        jobs = [env.process(self._transfer(task, channel, busy, waits))
                for channel, busy in task.fetch.items()]
        yield env.all_of(jobs)
        rec.fetch_end = self.now
        self.fetch_done[task.index].succeed()

    def _transfer(self, task: Task, channel: str, busy: Fraction, waits):
        rec = self.records[task.index]
        with self._resource(channel).request(priority=task.index) as req:
            yield req
            if rec.fetch_start is None:
                rec.fetch_start = self.now
                rec.fetch_after = self._binding(channel, waits)
                self.fetch_started[task.index].succeed()
            start = self.now
            yield self._wait(busy)
            self.last_release[self._key(channel)] = (self.now, ("fetch", task.index))
        self._record(task, channel, start, busy)

    def _record(self, task: Task, resource: str, start: Fraction, busy: Fraction) -> None:
        if busy <= 0:
            return
        clock = self.machine.clock_hz if resource == task.unit and task.unit != LINK else None
        self.intervals.append(Interval(resource, task.cost.op, task.cost.kind, float(start),
                                       float(start + busy), task.group, task.round, clock))

    def _critical_path(self) -> tuple[Interval, ...]:
        """Walk back from the last activity to finish through what each one waited for."""
        by_key: dict[tuple[str, int, int, str], Interval] = {}
        for iv in self.intervals:
            by_key.setdefault((iv.name, iv.group, iv.round, iv.resource), iv)
        last = max(range(len(self.tasks)), key=lambda i: (self.records[i].end, i))
        node: tuple[str, int] | None = (self.records[last].last, last)
        path: list[Interval] = []
        seen: set[tuple[str, int]] = set()
        while node is not None and node not in seen:
            seen.add(node)
            activity, index = node
            task, rec = self.tasks[index], self.records[index]
            if activity == "op":
                node = (rec.last, index)
                continue
            resources = [task.unit] if activity == "exec" else list(task.fetch)
            found = [by_key[k] for r in resources
                     if (k := (task.cost.op, task.group, task.round, r)) in by_key]
            if found:
                path.append(max(found, key=lambda iv: iv.duration_s))
            node = rec.exec_after if activity == "exec" else rec.fetch_after
        return tuple(reversed(path))
