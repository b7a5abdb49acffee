"""accelsim's systolic compute cycles against SCALE-Sim v3 itself, GEMM by GEMM.

SCALE-Sim itself comes from the ``scalesim_python`` fixture (conftest.py: a throw-away venv, the
test skipped only when the package cannot be installed).  SCALE-Sim runs folds back to back with stall-free interfaces (InterfaceBandwidth: CALC); its
COMPUTE_REPORT 'Total Cycles' is what ``accelsim.hardware.systolic.scalesim_cycles`` models.
"""
import json
import subprocess
import textwrap

from scalesim_config import scalesim_config

from accelsim.hardware.systolic import scalesim_cycles

# (M, N, K): square, skinny (decode-like M=1), ragged edges that pad folds, K shorter than the array.
GEMMS = [(64, 64, 64), (256, 256, 256), (1, 256, 300), (100, 37, 129), (300, 17, 5), (33, 300, 64)]
ARRAYS = [(32, 32), (16, 64), (64, 16), (128, 128)]
DATAFLOWS = ["os", "ws", "is"]


# Runs inside SCALE-Sim's venv: one run per (array, dataflow), all GEMMs as layers of it.
DRIVER = textwrap.dedent("""
    import csv, glob, json, os, sys
    from scalesim.scale_sim import scalesim
    work, cases = sys.argv[1], json.loads(sys.argv[2])
    out = {}
    for case in cases:
        tag = f"{case['rows']}x{case['cols']}_{case['dataflow']}"
        run = os.path.join(work, tag)
        os.makedirs(run, exist_ok=True)
        open(os.path.join(run, "cfg.cfg"), "w").write(case["config"])
        with open(os.path.join(run, "topo.csv"), "w") as f:
            f.write("Layer Name, M, N, K,\\n")
            for i, (m, n, k) in enumerate(case["gemms"]):
                f.write(f"g{i}, {m}, {n}, {k},\\n")
        with open(os.path.join(run, "layout.csv"), "w") as f:
            f.write("Layer name, dummy,\\n")
            for i, _ in enumerate(case["gemms"]):
                f.write(f"g{i}, 1,\\n")
        sim = scalesim(save_disk_space=True, verbose=False, config=os.path.join(run, "cfg.cfg"),
                       topology=os.path.join(run, "topo.csv"), layout=os.path.join(run, "layout.csv"),
                       input_type_gemm=True)
        sim.run_scale(top_path=run)
        report = glob.glob(os.path.join(run, "**", "COMPUTE_REPORT.csv"), recursive=True)[0]
        with open(report) as f:
            rows = [{k.strip(): v.strip() for k, v in r.items() if k} for r in csv.DictReader(f)]
        out[tag] = [int(float(r["Total Cycles"])) for r in rows]
    print("RESULT " + json.dumps(out))
""")


def test_compute_cycles_match_scalesim(scalesim_python, tmp_path):
    cases = [{"rows": r, "cols": c, "dataflow": d, "gemms": GEMMS,
              "config": scalesim_config(r, c, d)}
             for r, c in ARRAYS for d in DATAFLOWS]
    done = subprocess.run([str(scalesim_python), "-c", DRIVER, str(tmp_path), json.dumps(cases)],
                          check=False, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    reported = json.loads(line.removeprefix("RESULT "))
    mismatches = []
    for case in cases:
        tag = f"{case['rows']}x{case['cols']}_{case['dataflow']}"
        assert len(reported[tag]) == len(GEMMS), tag
        for (m, n, k), theirs in zip(GEMMS, reported[tag]):
            ours = scalesim_cycles(m, k, n, case["rows"], case["cols"], case["dataflow"])
            if ours != theirs:
                mismatches.append(f"{tag} M={m} N={n} K={k}: accelsim {ours}, SCALE-Sim {theirs}")
    assert not mismatches, "\n".join(mismatches)
    assert len(cases) * len(GEMMS) == 72
