"""The Typer application: command groups ``trustroot <group> <verb>`` and top-level verbs."""

from __future__ import annotations

import typer

__all__ = ["build_app"]


def build_app() -> typer.Typer:
    """Assemble the CLI (imported only when a command runs)."""
    from trustroot import __version__
    from trustroot.cli import context_cmd, evidence_cmd, keys_cmd
    from trustroot.cli._common import exit_code
    from trustroot.cli.demo_cmd import demo
    from trustroot.cli.doctor_cmd import doctor
    from trustroot.cli.init_cmd import init

    app = typer.Typer(
        name="trustroot",
        help=f"trustroot {__version__}: make a connected product secure by design and prove it (ETSI EN 303 645).",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.command("init")(exit_code(init))
    app.command("doctor")(exit_code(doctor))
    app.command("demo")(exit_code(demo))
    app.add_typer(context_cmd.app, name="context")
    app.add_typer(keys_cmd.app, name="keys")
    app.add_typer(evidence_cmd.app, name="evidence")
    return app
