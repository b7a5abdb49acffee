"""The CLI lists its commands without importing them: the listing must match the modules."""
from __future__ import annotations

from pathlib import Path


def test_commands_listed_from_sources_are_the_commands_the_modules_define():
    """`accelsim --help` reads command names and help from the CLI modules' sources; they must be
    what click makes of the imported modules."""
    import importlib
    import pkgutil

    from accelsim import cli

    listed = 0
    for info in pkgutil.iter_modules(cli.__path__):
        module_name = f"accelsim.cli.{info.name}"
        path = Path(cli.__file__).with_name(f"{info.name}.py")
        placeholders = cli._listed(path.read_text(encoding="utf-8"), module_name)
        if placeholders is None:
            continue  # imported eagerly instead
        real = {c.name: c for c in getattr(importlib.import_module(module_name), "COMMANDS", ())}
        assert sorted(p.name for p in placeholders) == sorted(real), module_name
        for p in placeholders:
            assert p.get_short_help_str(80) == real[p.name].get_short_help_str(80), p.name
            listed += 1
    assert listed >= 10
