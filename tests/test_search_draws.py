"""Random search on a space of ranges draws a block of points at a time (issue 20): the same
points, value for value and type for type, as one ``Parameter.sampler`` call per key per point."""
from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accelsim.dse import search
from accelsim.dse.space import load_space

RANGES = {
    "hardwired.macs": ["log: {start: 1024, stop: 8388608, num: 9, integer: true}",
                       "linear: {start: 1, stop: 9.0e+9, num: 3, integer: true}"],
    "compute.clock": ["linear: {start: 0.5 GHz, stop: 1.5 GHz, num: 5}", "log: {start: 1 MHz, stop: 3 GHz, num: 2}"],
    "memory.sram.capacity": ["linear: {start: 64 MiB, stop: 512 MiB, num: 29}"],
    "power.tdp": ["log: {start: 10 W, stop: 1000 W, num: 3}"],
    "efficiency.memory": ["linear: {start: 0.1, stop: 1, num: 3}"],
}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(keys=st.lists(st.sampled_from(sorted(RANGES)), min_size=1, max_size=5, unique=True),
       data=st.data(), samples=st.sampled_from([1, 7, 4096, 4097, 9000]), seed=st.integers(0, 2**20))
def test_block_draws_equal_one_draw_at_a_time(write, keys, data, samples, seed):
    lines = ["name: draws", "base: hardwired-llama-3.1-8b", "parameters:"]
    for key in keys:
        lines += [f"  - key: {key}", f"    {data.draw(st.sampled_from(RANGES[key]))}"]
    space = load_space(write("space.yaml", "\n".join([*lines, "objectives: {area_mm2: min}", ""])))
    rng = np.random.default_rng(seed)
    draws = [(p.key, p.sampler()) for p in space.parameters]
    expected = [{key: draw(rng) for key, draw in draws} for _ in range(samples)]
    got = list(search.iter_random_points(space, samples, seed))
    assert got == expected
    assert all(type(g[k]) is type(e[k]) for g, e in zip(got, expected) for k in g)


def _rows_as_dict_reader(text: str) -> list[dict]:
    import csv
    import io

    from accelsim.dse.runner import _parse
    return [{k: _parse(v, k) for k, v in raw.items()} for raw in csv.DictReader(io.StringIO(text))]


_CELLS = st.sampled_from(["", "1.5", "-0.0", "1e+300", "inf", "abc", "1234e56789012345", "ok", '"a,b"', "nan"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.lists(_CELLS, min_size=0, max_size=5), max_size=8))
def test_read_rows_reads_as_the_dict_reader(tmp_path, lines):
    """``runner.read_rows`` (a plain reader, each column's kind found once) gives the rows the
    ``csv.DictReader`` it replaced gave, short and blank lines included (a torn last line is short)."""
    from accelsim.dse import runner
    text = "point_id,a,status,b,reason\n" + "".join(",".join(line) + "\n" for line in lines)
    path = tmp_path / "r.csv"
    path.write_text(text, encoding="utf-8")
    assert repr(runner.read_rows(path)) == repr(_rows_as_dict_reader(text))  # NaN equal to itself
