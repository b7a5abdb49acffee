"""Command-line interface: thin wrappers that parse arguments, call the API and print.

Every command lives in its own module and is registered in ``COMMANDS``; no modelling logic
lives here.  Bad input ends with one line on stderr and exit status 2, never a traceback.
"""
from __future__ import annotations

import ast
import importlib
import os
import pkgutil
import sys
from pathlib import Path

import click

from accelsim.errors import AccelsimError


class _Lazy(click.Command):
    """A command listed before its module is imported: its name and help, read from the source."""

    def __init__(self, name: str, module: str, help_text: str | None):
        super().__init__(name, help=help_text)
        self.module = module


def _literal(node: ast.expr | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _listed(source: str, module: str) -> list[_Lazy] | None:
    """The commands a CLI module's ``COMMANDS`` registers (name and help as click derives them
    from the decorator and docstring), or None where the source says it less plainly."""
    tree = ast.parse(source)
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    names: list[str] | None = None
    for n in tree.body:
        if isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "COMMANDS" for t in n.targets):
            if not isinstance(n.value, ast.Tuple) or not all(isinstance(e, ast.Name) for e in n.value.elts):
                return None
            names = [e.id for e in n.value.elts if isinstance(e, ast.Name)]
    if names is None:
        return []
    out = []
    for name in names:
        fn = functions.get(name)
        if fn is None:
            return None
        command = next((d for d in fn.decorator_list if isinstance(d, ast.Call)
                        and isinstance(d.func, ast.Attribute) and d.func.attr in ("command", "group")), None)
        if command is None:
            return None
        keywords = {k.arg: k.value for k in command.keywords}
        if "help" in keywords or "short_help" in keywords or "name" in keywords or len(command.args) > 1:
            return None
        given = _literal(command.args[0]) if command.args else None
        if command.args and given is None:
            return None
        # click's own rule: the function's name, underscores as dashes, suffixes trimmed.
        default = name.lower().replace("_", "-")
        for suffix in ("-command", "-cmd", "-group", "-grp"):
            default = default.removesuffix(suffix)
        out.append(_Lazy(given or default, module, ast.get_docstring(fn)))
    return out


class _Group(click.Group):
    """Imports a command's module only when that command runs (or its help is asked for):
    `accelsim --help` reads names and help from the sources, so start-up stays instant."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if isinstance(command, _Lazy):
            module = importlib.import_module(command.module)
            for real in getattr(module, "COMMANDS", ()):
                self.add_command(real)
            command = super().get_command(ctx, cmd_name)
            if isinstance(command, _Lazy):  # the source was misread: never run a placeholder
                raise click.ClickException(f"internal: command {cmd_name!r} is not in {command.module}")
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        shown = [(n, self.commands[n]) for n in self.list_commands(ctx) if not self.commands[n].hidden]
        limit = formatter.width - 6 - max((len(n) for n, _ in shown), default=0)
        rows = [(name, command.get_short_help_str(limit)) for name, command in shown]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _register(group: click.Group) -> None:
    """Every module in this package that defines ``COMMANDS`` contributes its commands."""
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        module = f"{__name__}.{info.name}"
        path = Path(__file__).with_name(f"{info.name}.py")
        listed = _listed(path.read_text(encoding="utf-8"), module) if path.is_file() else None
        if listed is None:  # not plain enough to read: import it now
            for command in getattr(importlib.import_module(module), "COMMANDS", ()):
                group.add_command(command)
            continue
        for lazy in listed:
            group.add_command(lazy)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="accelsim")
def cli() -> None:
    """accelsim: simulate language models on accelerators and compare designs.

    \b
    Typical use:
      accelsim run --model llama-3.1-8b --hw h100-sxm --phase decode --batch 1 --context 2048
      accelsim compare                      # the bundled headline comparison -> reports/compare
      accelsim study studies/headline.yaml  # models x chips x workloads -> reports/headline
      accelsim sweep --space hw_configs/spaces/hardwired.yaml   # design-space exploration
      accelsim serve --rate 8 --requests 2000                   # TTFT/TPOT under load
      accelsim tco --hw hardwired-llama-3.1-8b --hw h100-sxm    # cost, NRE, breakeven
      accelsim validate                     # predictions vs published measurements
      accelsim models / accelsim hw         # what is in the catalogue
    Models and hardware are given by bundled name or by path to a YAML file
    (a Hugging Face config.json works as a model).
    """


_register(cli)


def main(argv: list[str] | None = None) -> int:
    try:
        cli.main(args=argv, prog_name="accelsim", standalone_mode=False)
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.ClickException as err:
        # One line, like every other bad-input error; `--help` has the usage.
        ctx = getattr(err, "ctx", None)  # only usage errors carry their command's context
        command = ctx.command_path if ctx is not None else "accelsim"
        hint = f" (see '{command} --help')" if isinstance(err, click.UsageError) else ""
        click.echo(f"error: {command}: {' '.join(err.format_message().split())}{hint}", err=True)
        return 2 if isinstance(err, click.UsageError) else err.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except AccelsimError as err:
        click.echo(f"error: {err.one_line()}", err=True)
        return 2
    except Exception as err:  # a bug, not bad input: still one line unless asked for more
        if os.environ.get("ACCELSIM_DEBUG"):
            raise
        click.echo(f"internal error: {type(err).__name__}: {err} (set ACCELSIM_DEBUG=1 for a "
                   f"traceback and please report it)", err=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
