"""`accelsim op`: SCALE-Sim-compatible compute reports, GPU wave quantisation, energy sums and
the roofline bound."""
from __future__ import annotations

import csv
import json
import subprocess

import pytest
from scalesim_config import scalesim_config

from accelsim.config.loader import bundled_names
from accelsim.hardware import load_hardware
from accelsim.importers.scalesim import GemmLayer, ScaleSimArray, layer_report
from accelsim.report.opcost import matmul_report

TOPOLOGY = "Layer Name, M, N, K,\nsq, 256, 256, 256,\ndecode, 1, 4096, 4096,\nodd, 100, 50, 70,\n"

# Hand-worked from SCALE-Sim's closed form (PEERS.md): OS ceil(M/R)ceil(N/C)(K+R+C-2)-1,
# WS ceil(K/R)ceil(N/C)(2R+C+M-2)-1, IS ceil(K/R)ceil(M/C)(2R+C+N-2)-1.
WORKED = [
    (128, 128, "os", 256, 256, 256, 2039), (128, 128, "ws", 256, 256, 256, 2551),
    (128, 128, "is", 256, 256, 256, 2551), (128, 128, "os", 1, 4096, 4096, 139199),
    (128, 128, "ws", 1, 4096, 4096, 392191), (128, 128, "is", 1, 4096, 4096, 143295),
    (32, 16, "ws", 256, 256, 256, 8 * 16 * (64 + 16 + 256 - 2) - 1),
    (32, 16, "os", 100, 50, 70, 4 * 4 * (70 + 32 + 16 - 2) - 1),
    (16, 32, "is", 100, 50, 70, 5 * 4 * (32 + 32 + 50 - 2) - 1),
]


@pytest.mark.parametrize("rows, cols, dataflow, m, n, k, expected", WORKED)
def test_worked_scalesim_cycles(rows, cols, dataflow, m, n, k, expected):
    assert layer_report(GemmLayer("l", m, n, k), ScaleSimArray(rows, cols, dataflow)).total_cycles == expected


def test_mapping_efficiency_and_compute_util_as_scalesim_defines_them():
    # OS 32x16, M=100 N=50 K=70: 4 x 4 folds; used PEs 100*50 of 16 folds x 512.
    r = layer_report(GemmLayer("l", 100, 50, 70), ScaleSimArray(32, 16, "os"))
    assert r.mapping_efficiency_pct == pytest.approx(100 * 5000 / 8192)
    assert r.compute_util_pct == pytest.approx(100 * 5000 / 8192 * 70 / (70 + 32 + 16 - 2))
    # WS 32x16, 256^3: full folds; per-fold util denominator 2R + 2C + M - 3.
    r = layer_report(GemmLayer("l", 256, 256, 256), ScaleSimArray(32, 16, "ws"))
    assert r.mapping_efficiency_pct == pytest.approx(100.0)
    assert r.compute_util_pct == pytest.approx(100 * 256 / (64 + 32 + 256 - 3))
    assert r.overall_util_pct == pytest.approx(100 * 256 ** 3 / ((r.total_cycles) * 512))


def _inputs(write, rows, cols, dataflow, topology=TOPOLOGY):
    return (str(write("a.cfg", scalesim_config(rows, cols, dataflow))),
            str(write("t.csv", topology)))


@pytest.mark.parametrize("rows, cols, dataflow", [(128, 128, "os"), (32, 16, "ws"), (16, 32, "is")])
def test_cli_reads_scalesim_files(cli, write, rows, cols, dataflow):
    cfg, topo = _inputs(write, rows, cols, dataflow)
    code, out, err = cli("op", "--scalesim-cfg", cfg, "--topology", topo, "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["array"] == {"rows": rows, "cols": cols, "dataflow": dataflow}
    expected = {(m, n, k): c for r, c_, d, m, n, k, c in WORKED if (r, c_, d) == (rows, cols, dataflow)}
    for layer in data["layers"]:
        assert layer["stall_cycles"] == 0
        if (layer["m"], layer["n"], layer["k"]) in expected:
            assert layer["total_cycles"] == expected[(layer["m"], layer["n"], layer["k"])]
    code, text, _ = cli("op", "--scalesim-cfg", cfg, "--topology", topo)
    assert code == 0 and "total cycles" in text and "decode" in text


@pytest.mark.parametrize("cfg_text, topo_text, fragment", [
    (scalesim_config(128, 128, "rs"), TOPOLOGY, "Dataflow"),
    (scalesim_config(0, 128, "os"), TOPOLOGY, "ArrayHeight"),
    ("[general]\nrun_name = x\n", TOPOLOGY, "architecture_presets"),
    ("not an ini file", TOPOLOGY, "INI"),
    (scalesim_config(8, 8, "os"), "M, N, K\n1, 2, 3\n", "header"),
    (scalesim_config(8, 8, "os"), "Layer Name, M, N, K,\nx, 4, five, 6,\n", "line 2"),
    (scalesim_config(8, 8, "os"), "Layer Name, M, N, K,\n", "no layers"),
])
def test_bad_scalesim_inputs_one_line_exit_2(cli, write, cfg_text, topo_text, fragment):
    cfg, topo = str(write("b.cfg", cfg_text)), str(write("b.csv", topo_text))
    code, _, err = cli("op", "--scalesim-cfg", cfg, "--topology", topo)
    assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1


def test_op_matmul_cli_text_and_json(cli):
    code, out, err = cli("op", "--hw", "tpu-v5e", "matmul", "--m", "2048", "--k", "4096", "--n", "4096",
                         "--dtype", "bf16", "--dataflow", "ws", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["mapping"].startswith("dataflow ws")
    assert set(data["bytes"]) == {"hbm", "buffer"} and data["cycles"] > 0
    assert sum(data["energy_j"].values()) == pytest.approx(data["energy_total_j"])
    code, text, _ = cli("op", "--hw", "tpu-v5e", "matmul", "--m", "64", "--k", "64", "--n", "64")
    assert code == 0 and "utilisation" in text and "energy" in text


@pytest.mark.parametrize("args, fragment", [
    (("op", "--hw", "h100-sxm", "matmul", "--m", "8", "--k", "8", "--n", "8", "--dataflow", "ws"), "systolic"),
    (("op", "--hw", "hardwired-llama-3.1-8b", "matmul", "--m", "8", "--k", "8", "--n", "8"), "accelsim run"),
    (("op", "matmul", "--m", "8", "--k", "8", "--n", "8"), "--hw"),
    (("op", "--hw", "no-such-chip", "matmul", "--m", "8", "--k", "8", "--n", "8"), "unknown hardware"),
])
def test_op_bad_input_one_line_exit_2(cli, args, fragment):
    code, _, err = cli(*args)
    assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1


def _gemm_time(hw, m, k, n):
    return matmul_report(hw, m=m, k=k, n=n, dtype="bf16").compute_s


def test_gpu_wave_quantisation_steps_at_tile_times_sm_count():
    """With M fixed to one tile row, N = sms x tile_n fills exactly one wave; one more column
    of tiles starts a second wave and the compute time jumps."""
    hw = load_hardware("h100-sxm")
    tile = max(hw.gpu.tiles, key=lambda t: t.m * t.n)
    full = hw.gpu.sms * tile.n
    times = {n: _gemm_time(hw, tile.m, 4096, n) for n in (full - tile.n, full, full + 1, full + tile.n)}
    # One more tile column than fills the SMs costs a partial extra wave (the mapper may switch
    # to a smaller tile to soften it, but cannot avoid the step).
    assert times[full + 1] > 1.3 * times[full]
    assert times[full] == pytest.approx(times[full - tile.n], rel=0.35)
    # Across a sweep, time per FLOP is lowest at exact multiples of the tile x SM count.
    sweep = range(full // 2, 2 * full + 1, 256)
    per_flop = {n: _gemm_time(hw, tile.m, 4096, n) / n for n in sweep}
    assert min(per_flop, key=per_flop.get) % tile.n == 0


@pytest.mark.parametrize("name", ["h100-sxm", "a100-sxm", "tpu-v5e"])
def test_odd_shapes_cost_more_per_flop_than_rounded_neighbours(name):
    hw = load_hardware(name)

    def per_flop(m, k, n):
        r = matmul_report(hw, m=m, k=k, n=n, dtype="bf16")
        return r.time_s / r.flops
    # An odd size is padded up to the chip's finest granularity (tile k / tile n on a GPU, the
    # array side on a systolic chip), so it does the work of that rounded-up neighbour while
    # counting fewer useful FLOPs.
    if hw.kind == "gpu":
        k_grain = min(t.k for t in hw.gpu.tiles)
        n_grain = min(t.n for t in hw.gpu.tiles)
    else:
        k_grain = n_grain = min(hw.systolic.rows, hw.systolic.cols)
    for odd in (4097, 2049):
        k_round = -(-odd // k_grain) * k_grain
        n_round = -(-odd // n_grain) * n_grain
        assert per_flop(4096, odd, 4096) > per_flop(4096, k_round, 4096)
        assert per_flop(4096, 4096, odd) > per_flop(4096, 4096, n_round)


OP_CHIPS = sorted(n for n in bundled_names("hw_configs") if load_hardware(n).kind in ("gpu", "systolic"))


@pytest.mark.parametrize("name", OP_CHIPS)
def test_no_config_beats_its_roofline_and_energy_sums(name):
    hw = load_hardware(name)
    dtype = "ternary" if "ternary" in hw.compute.matrix else "bf16"
    for m, k, n in ((1, 4096, 4096), (512, 1024, 2048), (4096, 4096, 4096), (33, 77, 129)):
        r = matmul_report(hw, m=m, k=k, n=n, dtype=dtype)
        peak = hw.matrix_peak(dtype)
        offchip = r.bytes.get("hbm", 0.0) / hw.memory.hbm.bandwidth
        assert r.time_s >= max(r.flops / peak, offchip) * (1 - 1e-9)
        assert r.utilisation <= 1.0 + 1e-9
        assert sum(r.energy_j.values()) == pytest.approx(r.energy_total_j)


def test_ternary_matmul_charged_add_energy_on_ternary_hardware():
    fpga = matmul_report(load_hardware("fpga-ternary-mmfree"), m=1, k=2048, n=2048, dtype="ternary")
    assert fpga.op["add_only"] and fpga.op["datapath"] == "ternary"
    assert fpga.energy_j["compute"] == pytest.approx(2048 * 2048 * 0.42e-12)
    gpu = matmul_report(load_hardware("h100-sxm"), m=1, k=2048, n=2048, dtype="ternary")
    assert gpu.op["datapath"] == "int8" and gpu.energy_j["compute"] == pytest.approx(2048 * 2048 * 0.077e-12)


SCALESIM_SCRIPT = """
import csv, glob, json, sys
from scalesim.scale_sim import scalesim
cfg, topo, out = sys.argv[1:4]
layout = out + '.layout.csv'  # scalesim 3 opens a layout file even when no custom layout is used
open(layout, 'w').write('Layer name,\\n')
sim = scalesim(save_disk_space=True, verbose=False, config=cfg, topology=topo, layout=layout, input_type_gemm=True)
sim.run_scale(top_path=out)
report = glob.glob(out + '/**/COMPUTE_REPORT.csv', recursive=True)[0]
rows = [[c.strip() for c in r if c.strip()] for r in csv.reader(open(report))]
print(json.dumps(rows))
"""


@pytest.mark.parametrize("rows, cols, dataflow", [(16, 16, "os"), (16, 8, "ws"), (8, 16, "is")])
def test_matches_real_scalesim(scalesim_python, tmp_path, rows, cols, dataflow):
    topology = "Layer Name, M, N, K,\na, 64, 48, 40,\nb, 20, 70, 33,\nc, 1, 96, 64,\n"
    cfg = tmp_path / "s.cfg"
    cfg.write_text(scalesim_config(rows, cols, dataflow))
    topo = tmp_path / "s.csv"
    topo.write_text(topology)
    script = tmp_path / "run.py"
    script.write_text(SCALESIM_SCRIPT)
    done = subprocess.run([str(scalesim_python), str(script), str(cfg), str(topo), str(tmp_path / "out")],
                          check=True, capture_output=True, text=True, timeout=600)
    rows_out = json.loads(done.stdout.strip().splitlines()[-1])
    header = [h.lower() for h in rows_out[0]]
    ours = {r.layer: r for r in (layer_report(GemmLayer(l[0], int(l[1]), int(l[2]), int(l[3])),
                                               ScaleSimArray(rows, cols, dataflow))
                                  for l in list(csv.reader(topology.splitlines()))[1:])}
    for their in rows_out[1:]:
        got = dict(zip(header, their))
        layer_index = int(float(got["layerid"]))
        mine = list(ours.values())[layer_index]
        assert int(float(got["total cycles"])) == mine.total_cycles
        assert float(got["mapping efficiency %"]) == pytest.approx(mine.mapping_efficiency_pct, rel=1e-4)
        assert float(got["compute util %"]) == pytest.approx(mine.compute_util_pct, rel=1e-4)
