"""The power model (``accelsim.hardware.power``): idle + utilisation-driven dynamic power, capped
at the TDP or a configured limit, node components for system figures; checked against the
measured power in ``validation/measured_power.csv``."""
from __future__ import annotations

import pytest

from accelsim import api
from accelsim.errors import AccelsimError
from accelsim.hardware import load_hardware
from accelsim.transform import Parallelism
from accelsim.validate import energy
from accelsim.workload import Workload

H100 = "h100-sxm"
MODEL = "llama-3.1-8b"


def _chip_w(result) -> float:
    return result.power_w / result.chips


@pytest.mark.parametrize("hw, model", [
    ("h100-sxm", MODEL), ("a100-sxm", MODEL), ("tpu-v5e", "llama-3.2-1b"),
    ("hardwired-llama-3.1-8b", MODEL), ("groq-lpu", "llama-3.2-1b"), ("cerebras-wse3", MODEL),
])
@pytest.mark.parametrize("workload", [Workload("decode", batch=1, context=512),
                                      Workload("decode", batch=4, context=512),
                                      Workload("prefill", batch=1, prompt=1024)])
def test_power_lies_between_idle_and_tdp(hw, model, workload):
    chip = load_hardware(hw)
    r = api.simulate(model, chip, workload)
    assert chip.power.static < _chip_w(r) <= chip.power.tdp * (1 + 1e-9)


def test_decode_power_rises_with_batch_as_measured():
    # ML.ENERGY v3, H100 + vLLM, Llama-3.1-8B: 486 W at batch 8 rising to 691 W at 255
    # (validation/measured_power.csv).  The decode step alone rises the same way, and stays below
    # what the serving mix (with its prefills) draws.
    watts = [_chip_w(api.simulate(MODEL, H100, Workload("decode", batch=b, context=456)))
             for b in (1, 8, 32, 128, 255)]
    assert all(a < b for a, b in zip(watts, watts[1:]))
    assert 400 < watts[1] < 560 and watts[-1] > watts[1] + 50


def test_compute_bound_power_reaches_tdp_without_double_throttling():
    # A long prefill runs at the calibrated achieved rate (efficiency.compute) near the TDP, as
    # measured H100s do under load; it is not slowed again by the cap.
    r = api.simulate(MODEL, H100, Workload("prefill", batch=4, prompt=2048))
    assert 600 < _chip_w(r) <= 700
    assert not any("power-capped" in n for n in r.notes)


def test_power_limit_slows_compute_bound_by_the_capped_share_memory_bound_barely():
    chip = load_hardware(H100)
    capped = api.power_limited(chip, 450.0)
    prefill, decode = Workload("prefill", batch=1, prompt=2048), Workload("decode", batch=1, context=1024)
    free_p, cap_p = api.simulate(MODEL, chip, prefill), api.simulate(MODEL, capped, prefill)
    free_d, cap_d = api.simulate(MODEL, chip, decode), api.simulate(MODEL, capped, decode)
    asked = _chip_w(free_p) - chip.power.static
    assert cap_p.latency_s / free_p.latency_s == pytest.approx(asked / (450.0 - chip.power.static))
    assert cap_p.latency_s > 1.4 * free_p.latency_s and _chip_w(cap_p) == pytest.approx(450.0)
    # a batch-1 decode asks ~477 W (its HBM busy ~80 % of the step; ML.ENERGY measures ~486 W
    # at batch 8), so a 450 W limit costs it a few percent, against 1.4x+ for the prefill
    assert cap_d.latency_s / free_d.latency_s < 1.10
    # the dynamic energy is kept; only the idle power runs longer
    dyn = lambda r: r.energy_total_j - r.energy_j["static"]  # noqa: E731
    assert dyn(cap_p) == pytest.approx(dyn(free_p))


def test_energy_components_split_events_from_activity():
    r = api.simulate(MODEL, H100, Workload("decode", batch=8, context=512))
    for key in ("compute", "hbm", "compute activity", "hbm activity", "l2 activity", "static"):
        assert r.energy_j[key] > 0
    assert r.energy_j["static"] == pytest.approx(70.0 * r.latency_s)


def test_node_components_join_system_power_only():
    r = api.simulate("llama-3.1-70b", H100, Workload("decode", batch=16, context=512),
                     parallelism=Parallelism(tp=8))
    chip_w = _chip_w(r)
    assert r.system["nodes"] == 1 and r.system["node_host_w"] == pytest.approx(3088.0)
    assert r.system["system_power_w"] == pytest.approx(8 * chip_w + 3088.0)


def test_active_power_overrides_the_default_rule_per_unit():
    chip = load_hardware(H100)
    power = chip.power.model_copy(update={"active": {"compute": 100.0, "hbm": 100.0, "l2": 0.0}})
    quiet = chip.model_copy(update={"power": power})
    w = Workload("decode", batch=8, context=512)
    assert _chip_w(api.simulate(MODEL, quiet, w)) < _chip_w(api.simulate(MODEL, chip, w)) - 150


@pytest.mark.parametrize("edit, message", [
    ({"limit": "800 W"}, "limit must lie above"),
    ({"limit": "50 W"}, "limit must lie above"),
    ({"active": {"dram": "10 W"}}, "power.active.dram: no such unit on this chip (allowed: compute, hbm, l2)"),
])
def test_bad_power_settings_are_one_line(tmp_path, edit, message):
    import yaml

    from accelsim.config import loader
    data = loader.read_document(loader.resolve(H100, "hw_configs", "hardware config"))
    data["power"].update(edit)
    path = tmp_path / "chip.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(AccelsimError) as err:
        load_hardware(str(path))
    assert message in err.value.one_line() and "\n" not in err.value.one_line()


def test_held_out_gpu_power_within_bound():
    # A sample of held-out ML.ENERGY rows (70B on 4 H100s, 405B FP8 on 8): power per GPU within
    # 15 % median (docs/validation.md "Power" has the full table).
    rows = [p for p in energy.load() if p.subset == "holdout" and p.metric == "gpu_power_w"
            and p.runtime == "vllm-0.11.1" and p.batch in (8, 255)]
    assert len(rows) >= 4
    frame = energy.table(rows)
    assert frame["error"].abs().median() <= 0.15


def _json(cli, *args):
    import json
    code, out, err = cli(*args, "--json")
    assert code == 0, err
    return json.loads(out)


def test_power_limit_option_caps_run_compare_and_serve(cli, tmp_path):
    # `--power-limit 450` on the CLI does what power.limit does: the 2,048-token prefill slows by
    # (watts asked above idle) / (450 - 70 W idle); a batch-1 decode moves far less.
    prefill = ("run", "--phase", "prefill", "--prompt", "2048")
    free, capped = _json(cli, *prefill), _json(cli, *prefill, "--power-limit", "450")
    asked = free["power_w"] - 70.0
    assert capped["latency_s"] / free["latency_s"] == pytest.approx(asked / (450.0 - 70.0), rel=1e-6)
    assert capped["power_w"] == pytest.approx(450.0)
    # the option takes watts as a number or with a unit, as configs write them
    assert _json(cli, *prefill, "--power-limit", "0.45 kW")["latency_s"] == pytest.approx(capped["latency_s"])
    # the batch-1 decode asks little more than the cap (ML.ENERGY measures ~486 W at batch 8): the
    # same rule slows it by its own excess only, a small fraction of the prefill's slowdown
    decode = ("run", "--context", "1024")
    d_free, d_capped = _json(cli, *decode), _json(cli, *decode, "--power-limit", "450")
    d_slowdown = d_capped["latency_s"] / d_free["latency_s"]
    assert d_slowdown == pytest.approx(max(1.0, (d_free["power_w"] - 70.0) / (450.0 - 70.0)), rel=1e-6)
    assert d_slowdown - 1 < 0.25 * (capped["latency_s"] / free["latency_s"] - 1)
    rows = _json(cli, "compare", "--hw", "h100-sxm", "--hw", "a100-sxm", "--phase", "prefill",
                 "--prompt", "2048", "--power-limit", "300", "--out", str(tmp_path / "cmp"))
    assert [r["hw"] for r in rows] == ["h100-sxm", "a100-sxm"]
    assert all(r["power_w"] == pytest.approx(300.0) for r in rows)
    serve = ("serve", "--requests", "40", "--rate", "4", "--rates", "4", "--prompt", "1024", "--output", "16")
    fast = _json(cli, *serve, "--out", str(tmp_path / "s1"))["summary"]
    slow = _json(cli, *serve, "--power-limit", "200", "--out", str(tmp_path / "s2"))["summary"]
    assert slow["ttft_s"]["p50"] > 1.5 * fast["ttft_s"]["p50"]


@pytest.mark.parametrize("args, message", [
    (("run", "--power-limit", "50"), ("--power-limit: h100-sxm must lie above the idle (static) power "
                                      "and at most the TDP: (70, 700] W, got 50 W")),
    (("run", "--power-limit", "701"), "(70, 700] W, got 701 W"),
    (("compare", "--hw", "h100-sxm", "--hw", "groq-lpu", "--power-limit", "450"),
     "--power-limit: groq-lpu must lie above"),
    (("serve", "--power-limit", "5000"), "--power-limit: h100-sxm must lie above"),
    (("run", "--power-limit", "nan"), "'nan' is not a finite number"),
    (("run", "--power-limit", "-3"), "'-3' is not a finite number"),
    (("run", "--power-limit", "5 parsecs"), "unit 'parsecs' is not a power unit"),
])
def test_bad_power_limit_is_one_line_exit_2(cli, args, message):
    code, _, err = cli(*args)
    assert code == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("hw", ["h200", "b200", "mi300x"])
def test_node_components_beyond_h100_join_system_power(hw):
    chip = load_hardware(hw)
    r = api.simulate("llama-3.1-70b", chip, Workload("decode", batch=16, context=512),
                     parallelism=Parallelism(tp=8))
    assert r.system["nodes"] == 1 and r.system["node_host_w"] == chip.power.node.host
    assert r.system["system_power_w"] == pytest.approx(8 * _chip_w(r) + chip.power.node.host)
    # 16 chips fill two nodes
    r16 = api.simulate("llama-3.1-70b", chip, Workload("decode", batch=16, context=512),
                       parallelism=Parallelism(tp=8, pp=2))
    assert r16.system["nodes"] == 2 and r16.system["node_host_w"] == 2 * chip.power.node.host


def test_node_rule_scales_the_dgx_h100_host_share_to_the_dgx_b200():
    # docs/validation.md "Power": host = (calibrated DGX H100 host) / (10.2 kW max - 8 x 700 W)
    # x (DGX B200's 14.3 kW max - 8 x 1,000 W); the DGX H200 is the DGX H100 chassis.
    h100 = load_hardware(H100).power.node.host
    share = h100 / (10_200 - 8 * 700)
    assert load_hardware("b200").power.node.host == pytest.approx(share * (14_300 - 8 * 1_000), abs=1.0)
    assert load_hardware("h200").power.node.host == h100


def test_held_out_h200_node_power_follows_the_h100_node():
    # MLPerf v4.1 H200 MaxQ (500 W per GPU) Llama-2-70B Offline and Server: never fitted; the
    # node rule lands 13-15 % high (docs/validation.md "Power" says why this is not closed).
    rows = [p for p in energy.load() if p.hw == "h200" and p.metric == "system_power_w"]
    assert len(rows) == 2 and {p.subset for p in rows} == {"holdout"}
    frame = energy.table(rows)
    assert frame["error"].abs().max() < 0.2
