"""Command-line interface: thin wrappers that parse arguments, call the API and print.

Every command lives in its own module and is registered in ``COMMANDS``; no modelling logic
lives here.  Bad input ends with one line on stderr and exit status 2, never a traceback.
"""
from __future__ import annotations

import os
import sys

import click

from accelsim.errors import AccelsimError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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
      accelsim validate                     # predictions vs published measurements
      accelsim models / accelsim hw         # what is in the catalogue
    Models and hardware are given by bundled name or by path to a YAML file
    (a Hugging Face config.json works as a model).
    """


def _register() -> None:
    """Every module in this package that defines ``COMMANDS`` contributes its commands."""
    import importlib
    import pkgutil
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for command in getattr(module, "COMMANDS", ()):
            cli.add_command(command)


_register()


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
