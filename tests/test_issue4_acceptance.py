"""Issue 4 acceptance, bullet by bullet, through the API and the CLI a user runs."""
import json
import math

import pytest

from accelsim import hardware
from accelsim.api import simulate
from accelsim.errors import DoesNotFitError
from accelsim.graph import MatMul
from accelsim.hardware import hardwired
from accelsim.model.density import DensityEntry, DensityProfile
from accelsim.model.lower import lower
from accelsim.model.spec import load_model
from accelsim.workload import Workload

FPGA = "fpga-ternary-mmfree"
MMFREE = "mmfreelm-370m"
HC1 = "hardwired-llama-3.1-8b"
QUARTER = DensityProfile(threshold=0.0, default=0.25, source="uniform 25 % density")


def _by_name(result):
    return {c.op: c for c in result.ops}


# --- 1. zero-skipping driven by activation density -------------------------------------------

def test_density_quarter_on_zero_skipping_chip_cuts_matmul_compute_by_the_formula():
    dense = simulate(MMFREE, FPGA, Workload("decode", batch=32, context=128))
    sparse = simulate(MMFREE, FPGA, Workload("decode", batch=32, context=128, density=QUARTER))
    before, after = _by_name(dense), _by_name(sparse)
    matmuls = [name for name, c in before.items() if c.kind == "matmul"]
    assert len(matmuls) == 145
    for name in matmuls:
        d, s = before[name], after[name]
        # energy: macs x density (per-element skipping: effective_macs with g = 1)
        assert s.energy_j["compute"] == pytest.approx(0.25 * d.energy_j["compute"], rel=1e-12)
        # time: the array's cycles x density, rounded up to whole cycles
        cycles = d.compute_s * 60e6
        assert s.compute_s * 60e6 == pytest.approx(math.ceil(0.25 * round(cycles)), abs=1e-6)
        # never below the memory bound; bytes are untouched
        assert s.bytes == d.bytes and s.time_s >= max(s.memory_s.values())
        assert s.time_s == pytest.approx(max(s.compute_s, *s.memory_s.values()))
    assert sparse.energy_j["compute"] == pytest.approx(0.25 * dense.energy_j["compute"])
    assert sparse.tokens_per_s > 2.5 * dense.tokens_per_s
    # non-matmul ops are not skipped
    norm = next(n for n, c in before.items() if c.kind == "norm")
    assert after[norm] == before[norm]


def test_density_memory_bound_op_gains_nothing_below_its_memory_time():
    # batch 1 decode of a 2.7B model on a 19.2 GB/s bus: its big matmuls sit near the memory roof
    dense = simulate("mmfreelm-2.7b", FPGA, Workload("decode", batch=1, context=0))
    sparse = simulate("mmfreelm-2.7b", FPGA, Workload("decode", batch=1, context=0,
                                                       density=DensityProfile(threshold=0, default=0.01)))
    for name, s in _by_name(sparse).items():
        floor = max(s.memory_s.values(), default=0.0)
        assert s.time_s >= floor
        assert s.time_s <= _by_name(dense)[name].time_s


def test_per_op_density_reaches_only_the_ops_it_names():
    profile = DensityProfile(threshold=0.0, entries=(DensityEntry(name="layers.0", density=0.5),))
    dense = _by_name(simulate(MMFREE, FPGA, Workload("decode", batch=8, context=16)))
    mixed = _by_name(simulate(MMFREE, FPGA, Workload("decode", batch=8, context=16, density=profile)))
    for name, c in mixed.items():
        if c.kind != "matmul":
            continue
        ratio = c.energy_j["compute"] / dense[name].energy_j["compute"]
        assert ratio == pytest.approx(0.5 if name.startswith("layers.0.") else 1.0)


def test_density_changes_nothing_on_hardware_without_zero_skipping():
    wl = Workload("decode", batch=4, context=256)
    for hw in ("h100-sxm", "tpu-v5e"):
        assert not hardware.load_hardware(hw).compute.zero_skipping
        dense = simulate("llama-3.2-1b", hw, wl)
        sparse = simulate("llama-3.2-1b", hw, Workload("decode", batch=4, context=256, density=QUARTER))
        assert sparse.latency_s == dense.latency_s and sparse.energy_j == dense.energy_j


def test_cli_density_option_on_run(cli, write):
    path = write("quarter.yaml", QUARTER_YAML)
    args = ("run", "--model", MMFREE, "--hw", FPGA, "--batch", "32", "--context", "128", "--json")
    code, out, _ = cli(*args)
    dense = json.loads(out)
    code2, out2, _ = cli(*args, "--density", str(path))
    sparse = json.loads(out2)
    assert code == code2 == 0
    assert sparse["energy_j"]["compute"] == pytest.approx(0.25 * dense["energy_j"]["compute"])
    _, h100_dense, _ = cli("run", "--model", MMFREE, "--hw", "h100-sxm", "--json")
    _, h100_sparse, _ = cli("run", "--model", MMFREE, "--hw", "h100-sxm", "--json", "--density", str(path))
    assert json.loads(h100_dense)["latency_s"] == json.loads(h100_sparse)["latency_s"]


def test_cli_density_bad_file_is_one_line(cli, write):
    code, _, err = cli("run", "--density", "no/such/profile.yaml")
    assert code == 2 and "no such density profile file" in err and len(err.strip().splitlines()) == 1
    bad = write("bad.yaml", "threshold: 0\ndefault: 1.5\n")
    code, _, err = cli("compare", "--hw", "h100-sxm", "--density", str(bad))
    assert code == 2 and "default" in err and len(err.strip().splitlines()) == 1


QUARTER_YAML = "threshold: 0.0\ndefault: 0.25\nsource: uniform 25 % density\n"


# --- 2. the MatMul-free model on the ternary FPGA uses add-only energy ------------------------

def test_mmfree_on_ternary_fpga_charges_every_matmul_one_add(cli):
    code, out, _ = cli("run", "--model", MMFREE, "--hw", FPGA, "--batch", "4", "--context", "128", "--json")
    assert code == 0
    result = json.loads(out)
    graph = lower(load_model(MMFREE), Workload("decode", batch=4, context=128))
    matmuls = [op for op in graph if isinstance(op, MatMul)]
    assert matmuls and all(op.add_only and op.compute_dtype == "ternary" for op in matmuls)
    fpga = hardware.load_hardware(FPGA)
    add = fpga.energy.mac["ternary"]
    assert add == pytest.approx(0.42e-12)  # 45 nm int8 add 0.03 pJ x 14 (FPGA gap), not a multiply
    # attention-free model: every compute joule is a matmul's, at one add per MAC
    assert result["energy_j"]["compute"] == pytest.approx(sum(op.macs for op in matmuls) * add)
    # a GPU has no ternary datapath: the same MACs pay its int8 multiply-accumulate instead
    h100 = hardware.load_hardware("h100-sxm")
    assert h100.fallback_dtype("ternary") == "int8"
    assert h100.mac_energy("ternary") == h100.energy.mac["int8"]


def test_mmfree_fits_the_fpga_board_and_70b_is_refused_in_one_line(cli):
    r = simulate("mmfreelm-2.7b", FPGA, Workload("decode", batch=1, context=2048))
    assert r.footprint_bytes["weight"] < hardware.load_hardware(FPGA).memory.hbm.capacity
    code, _, err = cli("run", "--model", "llama-3.1-70b", "--hw", FPGA)
    assert code == 2 and "does not fit on fpga-ternary-mmfree" in err
    assert len(err.strip().splitlines()) == 1


# --- 3. the hardwired chip's five figures ----------------------------------------------------

KV_PER_TOKEN = 32 * 8 * 128 * 2 * 2  # layers x KV heads x head dim x (K, V) x bf16 bytes


def test_max_users_is_the_sram_over_one_users_kv():
    chip = hardware.load_hardware(HC1)
    per_user = (512 + 1) * KV_PER_TOKEN  # context 512 plus the token being decoded
    assert hardwired.max_users(chip, per_user) == 402_653_184 // per_user == 5  # 384 MiB SRAM
    assert hardwired.max_users(chip, 0.0) is None
    r = simulate("llama-3.1-8b", chip, Workload("decode", batch=5, context=512))
    assert r.system["max_concurrent_users"] == 5
    assert r.system["kv_state_bytes_per_user"] == per_user
    with pytest.raises(DoesNotFitError, match="does not fit"):
        simulate("llama-3.1-8b", chip, Workload("decode", batch=6, context=512))


def test_hardwired_run_shows_all_five_figures(cli):
    code, out, _ = cli("run", "--hw", HC1, "--batch", "4", "--context", "512", "--json")
    assert code == 0
    d = json.loads(out)
    assert d["tokens_per_s_per_user"] == pytest.approx(1.0 / d["latency_s"])
    assert d["tokens_per_s_per_chip"] == pytest.approx(4 / d["latency_s"]) == pytest.approx(d["tokens_per_s"])
    assert d["system"]["max_concurrent_users"] == 5
    assert d["area_mm2"] == 815.0
    assert d["joules_per_token"] == pytest.approx(sum(d["energy_j"].values()) / 4)
    code, text, _ = cli("run", "--hw", HC1, "--batch", "4", "--context", "512")
    for label in ("per user:", "per chip:", "max users: 5 at context 512", "J/token:", "die area: 815 mm2"):
        assert label in text


# --- 4. energy sums to the total; nothing beats its roofline ---------------------------------

def _run_llama(hw):
    wl = Workload("decode", batch=2, context=1024)  # KV of 2 users fits the hardwired SRAM
    fixed = hardware.backend(hw).fixed_model(hw)
    if fixed is not None:  # a chip with one model's weights in silicon runs that model
        return simulate(fixed, hw, wl)
    try:
        return simulate("llama-3.1-8b", hw, wl)
    except DoesNotFitError:  # e.g. 16 GB of HBM: the 1B model on the same workload
        return simulate("llama-3.2-1b", hw, wl)


def _roofline_tokens_per_s(result, chip):
    """tokens / max(FLOPs over the peak, bytes that must be read over the bandwidth), system-wide,
    with raw (underated) peaks: weights outside ROM and the KV cache are read once per step."""
    per_stage = result.system.get("tp", 1) * result.system.get("dp", 1)
    flops = result.flops * per_stage
    peak = max(*chip.compute.matrix.values(), chip.compute.vector) * result.chips
    mem = chip.memory
    outer = getattr(mem, "hbm", None) or getattr(mem, "dram", None) or mem.sram
    weights = 0.0 if chip.kind == "hardwired" else result.footprint_bytes["weight"]
    needed = weights + result.footprint_bytes["kv_cache"] + result.footprint_bytes["state"]
    kv_bw = mem.sram.bandwidth if chip.kind == "hardwired" else outer.bandwidth
    floor = max(flops / peak, needed / (kv_bw * result.chips))
    tokens = result.workload["batch"]
    return tokens / floor


BUNDLED = ("a100-sxm", "b200", "b300", "cerebras-wse3", "fpga-ternary-mmfree", "gb200", "gb300", "groq-lpu",
           "h100-sxm", "h200", "hardwired-llama-3.1-8b", "hardwired-llama-3.1-70b", "mi300x", "mi325x", "mi355x",
           "sn40l", "tpu-v4", "tpu-v5e", "tpu-v5p", "tpu-v6e", "tpu-v7")


@pytest.mark.parametrize("hw", BUNDLED)
def test_energy_components_sum_and_throughput_below_roofline(hw):
    chip = hardware.load_hardware(hw)
    r = _run_llama(chip)
    tokens = r.workload["batch"]
    assert "static" in r.energy_j and r.energy_j["static"] > 0
    assert sum(r.energy_j.values()) == pytest.approx(r.joules_per_token * tokens, rel=1e-12)
    assert r.energy_total_j == pytest.approx(r.joules_per_token * tokens, rel=1e-12)
    if r.chips > 1:
        assert r.energy_j["interconnect"] > 0
    assert r.tokens_per_s <= _roofline_tokens_per_s(r, chip) * (1 + 1e-9)


def test_every_bundled_config_is_in_the_roofline_sweep():
    from pathlib import Path
    stems = {p.stem for p in (Path(__file__).parent.parent / "hw_configs").glob("*.yaml")}
    assert stems == set(BUNDLED)


def test_multichip_energy_includes_interconnect_and_sums(cli):
    code, out, _ = cli("run", "--model", "llama-3.2-1b", "--tp", "2", "--json")
    d = json.loads(out)
    assert code == 0 and d["chips"] == 2
    assert d["energy_j"]["interconnect"] > 0 and d["energy_j"]["static"] > 0
    assert sum(d["energy_j"].values()) == pytest.approx(d["joules_per_token"] * d["workload"]["batch"])


# --- 5. Llama-3.1-70B: refused on one chip, runs on TP=4/8 with collectives -------------------

def test_70b_refused_on_one_h100_and_runs_on_tp4_and_tp8_with_collectives(cli):
    code, _, err = cli("run", "--model", "llama-3.1-70b", "--hw", "h100-sxm")
    assert code == 2 and "does not fit on h100-sxm" in err and len(err.strip().splitlines()) == 1
    for tp in ("4", "8"):
        code, out, _ = cli("run", "--model", "llama-3.1-70b", "--hw", "h100-sxm", "--tp", tp, "--json")
        d = json.loads(out)
        assert code == 0 and d["chips"] == int(tp) and d["system"]["tp"] == int(tp)
        collectives = [o for o in d["ops"] if o["kind"] == "collective"]
        # an all-reduce after each layer's attention and MLP, one for the vocab-split embedding
        # lookup, one gathering the vocab-split logits
        assert len(collectives) == 2 * 80 + 2
        assert d["system"]["collective_s"] == pytest.approx(sum(o["time_s"] for o in collectives))
        assert d["energy_j"]["interconnect"] > 0
    code, text, _ = cli("run", "--model", "llama-3.1-70b", "--hw", "h100-sxm", "--tp", "4")
    assert "collective" in text.split("Time by op kind:")[1].split("Slowest ops")[0]


# --- 6. multi-chip and precision options on run, compare and serve ----------------------------

@pytest.mark.parametrize("command", ["run", "compare", "serve"])
def test_multichip_precision_and_density_options_everywhere(cli, command):
    code, out, _ = cli(command, "--help")
    assert code == 0
    for option in ("--chips", "--tp", "--pp", "--weight-dtype", "--act-dtype", "--kv-dtype", "--density"):
        assert option in out


def test_serve_honours_dtypes_and_tp(cli, tmp_path):
    base = ("serve", "--model", "llama-3.2-1b", "--requests", "20", "--rate", "2", "--rates", "2",
            "--out", str(tmp_path / "r"), "--json")
    _, plain, _ = cli(*base)
    code, narrow, _ = cli(*base, "--weight-dtype", "fp8", "--kv-dtype", "fp8", "--tp", "2")
    assert code == 0
    plain, narrow = json.loads(plain)["summary"], json.loads(narrow)["summary"]
    assert narrow["tpot_s"]["p50"] < plain["tpot_s"]["p50"]
    code, _, err = cli(*base, "--kv-dtype", "int3")
    assert code == 2 and "--kv-dtype" in err


# --- 7. chips and parallelism in the run headline ---------------------------------------------

def test_run_headline_names_chips_and_parallelism(cli):
    code, out, _ = cli("run", "--model", "llama-3.2-1b", "--tp", "2", "--pp", "2")
    assert code == 0
    head = out.split("\n\n")[0].splitlines()
    assert "chips: 4 (tp=2 pp=2 dp=1 ep=1)" in head[1]
    code, out, _ = cli("run", "--model", "llama-3.2-1b")
    assert "chips: 1" in out.splitlines()[1]
