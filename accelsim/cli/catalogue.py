"""`accelsim models` and `accelsim hw`: what is in the catalogue."""
from __future__ import annotations

import click
import pandas as pd

from accelsim import hardware
from accelsim.cli import options
from accelsim.config import loader
from accelsim.config.units import format_si
from accelsim.errors import AccelsimError
from accelsim.model.describe import describe_model
from accelsim.model.spec import load_model


@click.group(invoke_without_command=True)
@options.json_option
@click.pass_context
def models(ctx, as_json):
    """List the bundled models, or `models show NAME|PATH` for one model's spec."""
    if ctx.invoked_subcommand is not None:
        return
    rows: list[dict[str, object]] = []
    for name, path in loader.bundled_names("models").items():
        try:
            info = describe_model(load_model(str(path)))
        except AccelsimError as err:
            rows.append({"name": name, "error": err.one_line()})
            continue
        rows.append({"name": name, "family": info["family"], "layers": info["num_layers"],
                     "params_total": info["params_total"], "params_active": info["params_active"],
                     "kv_bytes_per_token": info["kv_bytes_per_token"],
                     "state_bytes_per_sequence": info["state_bytes_per_sequence"]})
    if as_json:
        options.echo_json(rows)
        return
    frame = pd.DataFrame(rows)
    if "params_total" in frame:
        for col in ("params_total", "params_active"):
            frame[col] = frame[col].map(lambda v: format_si(v, "") if pd.notna(v) else "")
        for col in ("kv_bytes_per_token", "state_bytes_per_sequence"):
            frame[col] = frame[col].map(lambda v: format_si(v, "B") if pd.notna(v) else "")
    click.echo(frame.to_string(index=False))


@models.command("show")
@click.argument("name")
@options.json_option
def models_show(name, as_json):
    """Print one model's spec with parameter counts and cache sizes."""
    spec = load_model(name)
    info = describe_model(spec)
    if as_json:
        options.echo_json(info)
        return
    for key, value in info.items():
        if key != "spec":
            click.echo(f"{key:>22}: {value}")
    import yaml
    click.echo(yaml.safe_dump(info["spec"], sort_keys=False).rstrip())


@click.command("hw")
@options.json_option
def hw_list(as_json):
    """List the bundled hardware configs."""
    rows: list[dict[str, object]] = []
    for name, path in loader.bundled_names("hw_configs").items():
        try:
            chip = hardware.load_hardware(str(path))
        except AccelsimError as err:
            rows.append({"name": name, "error": err.one_line()})
            continue
        offchip = hardware.backend(chip).main_memory(chip)
        rows.append({"name": name, "kind": chip.kind, "description": chip.description,
                     "peak_matrix_flops": max(chip.compute.matrix.values()),
                     "memory_bytes": offchip.capacity, "memory_bandwidth": offchip.bandwidth,
                     "tdp_w": chip.power.tdp})
    if as_json:
        options.echo_json(rows)
        return
    frame = pd.DataFrame(rows)
    if "peak_matrix_flops" in frame:
        frame["peak_matrix_flops"] = frame["peak_matrix_flops"].map(lambda v: format_si(v, "FLOP/s"))
        frame["memory_bytes"] = frame["memory_bytes"].map(lambda v: format_si(v, "B"))
        frame["memory_bandwidth"] = frame["memory_bandwidth"].map(lambda v: format_si(v, "B/s"))
    click.echo(frame.to_string(index=False))


COMMANDS = (models, hw_list)
