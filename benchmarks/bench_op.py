"""Time `accelsim op`'s analytical SCALE-Sim path on a set of GEMM layers; with
ACCELSIM_SCALESIM=1, time the real scalesim package on the same layers in the same run (in its
own venv, given by SCALESIM_PYTHON or created under benchmarks/.scalesim-venv) and report the
ratio.  Writes benchmarks/results/op.json.

    python benchmarks/bench_op.py
    ACCELSIM_SCALESIM=1 python benchmarks/bench_op.py
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "op.json"
# A Llama-3.1-8B attention-output GEMM at decode plus small and odd layers, so the scalesim
# run stays within minutes on a 2-core machine.
LAYERS = [("o_proj_decode", 1, 4096, 4096), ("prefill64_small", 64, 1024, 512),
          ("odd", 100, 50, 70), ("sq256", 256, 256, 256)]
ARRAYS = [(128, 128, "ws"), (32, 16, "os")]
CFG = ("[general]\nrun_name = bench\n\n[architecture_presets]\nArrayHeight: {r}\nArrayWidth: {c}\n"
       "IfmapSramSzkB: 6144\nFilterSramSzkB: 6144\nOfmapSramSzkB: 2048\nIfmapOffset: 0\n"
       "FilterOffset: 10000000\nOfmapOffset: 20000000\nBandwidth : 10\nDataflow : {d}\n"
       "MemoryBanks: 1\nReadRequestBuffer: 32\nWriteRequestBuffer: 32\n\n[layout]\n"
       "IfmapCustomLayout: False\nIfmapSRAMBankBandwidth: 10\nIfmapSRAMBankNum: 10\n"
       "IfmapSRAMBankPort: 2\nFilterCustomLayout: False\nFilterSRAMBankBandwidth: 10\n"
       "FilterSRAMBankNum: 10\nFilterSRAMBankPort: 2\n\n[sparsity]\nSparsitySupport : false\n\n"
       "[run_presets]\nInterfaceBandwidth: CALC\nUseRamulatorTrace: False\n")
SCALESIM_RUN = """
import sys, time, glob, csv, json
from scalesim.scale_sim import scalesim
cfg, topo, out = sys.argv[1:4]
layout = out + '.layout.csv'  # scalesim 3 opens a layout file even when no custom layout is used
open(layout, 'w').write('Layer name,\\n')
t = time.perf_counter()
scalesim(save_disk_space=True, verbose=False, config=cfg, topology=topo, layout=layout, input_type_gemm=True).run_scale(top_path=out)
dt = time.perf_counter() - t
rep = glob.glob(out + '/**/COMPUTE_REPORT.csv', recursive=True)[0]
rows = [[c.strip() for c in r if c.strip()] for r in csv.reader(open(rep))]
col = rows[0].index("Total Cycles")  # not "Total Cycles (incl. prefetch)"
print(json.dumps({"seconds": dt, "cycles": [int(float(r[col])) for r in rows[1:]]}))
"""


def write_inputs(folder: Path, rows: int, cols: int, dataflow: str) -> tuple[Path, Path]:
    cfg = folder / f"a{rows}x{cols}{dataflow}.cfg"
    cfg.write_text(CFG.format(r=rows, c=cols, d=dataflow))
    topo = folder / "layers.csv"
    topo.write_text("Layer Name, M, N, K,\n" + "".join(f"{n}, {m}, {nn}, {k},\n" for n, m, nn, k in LAYERS))
    return cfg, topo


def time_accelsim(cfg: Path, topo: Path, repeats: int = 50) -> tuple[float, list[int]]:
    from accelsim.importers.scalesim import compute_report
    start = time.perf_counter()
    for _ in range(repeats):
        _, rows = compute_report(cfg, topo)
    return (time.perf_counter() - start) / repeats, [r.total_cycles for r in rows]


def time_cli(cfg: Path, topo: Path) -> float:
    """The whole `accelsim op` command as a user runs it (interpreter start included)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "accelsim", "op", "--scalesim-cfg", str(cfg), "--topology",
                    str(topo), "--json"], check=True, capture_output=True)
    return time.perf_counter() - start


def scalesim_python() -> Path:
    given = os.environ.get("SCALESIM_PYTHON")
    if given:
        return Path(given)
    venv = HERE / ".scalesim-venv"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "scalesim", "numpy<2.4"], check=True)
    return python


def main() -> None:
    with_scalesim = os.environ.get("ACCELSIM_SCALESIM") == "1"
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        script = folder / "run_scalesim.py"
        script.write_text(SCALESIM_RUN)
        for rows, cols, dataflow in ARRAYS:
            cfg, topo = write_inputs(folder, rows, cols, dataflow)
            seconds, cycles = time_accelsim(cfg, topo)
            entry = {"array": f"{rows}x{cols}", "dataflow": dataflow, "layers": [n for n, *_ in LAYERS],
                     "accelsim_s": seconds, "accelsim_cli_s": time_cli(cfg, topo), "accelsim_cycles": cycles}
            if with_scalesim:
                done = subprocess.run([str(scalesim_python()), str(script), str(cfg), str(topo),
                                       str(folder / f"out{rows}{cols}{dataflow}")],
                                      check=True, capture_output=True, text=True)
                peer = json.loads(done.stdout.strip().splitlines()[-1])
                entry.update(scalesim_s=peer["seconds"], scalesim_cycles=peer["cycles"],
                             cycles_equal=peer["cycles"] == cycles,
                             speedup=peer["seconds"] / seconds,
                             speedup_vs_cli=peer["seconds"] / entry["accelsim_cli_s"])
            results.append(entry)
            print(json.dumps({k: v for k, v in entry.items() if k not in ("layers",)}))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                                           "platform": platform.platform()},
                               "scalesim_compared": with_scalesim, "runs": results}, indent=2))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
