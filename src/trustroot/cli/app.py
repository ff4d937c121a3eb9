"""The Typer application: command groups ``trustroot <group> <verb>`` and top-level verbs.

``trustroot image sign|verify|info`` are dispatched by ``cli/main.py`` to a lean argparse path
before this module is imported; the ``image`` group here lists them for ``--help``.
"""

from __future__ import annotations

import typer

__all__ = ["build_app"]


def build_app() -> typer.Typer:
    """Assemble the CLI (imported only when a command runs)."""
    from trustroot import __version__
    from trustroot.cli import (
        agent_cmd,
        bootloader_cmd,
        compliance_cmd,
        context_cmd,
        disclosure_cmd,
        evidence_cmd,
        fleet_cmd,
        image_cmd,
        keys_cmd,
        monitor_cmd,
        operator_cmd,
        provision_cmd,
        release_cmd,
    )
    from trustroot.cli._common import command, exit_code
    from trustroot.cli.assess_cmd import assess
    from trustroot.cli.demo_cmd import demo
    from trustroot.cli.doctor_cmd import doctor
    from trustroot.cli.init_cmd import init
    from trustroot.cli.scan_cmd import scan
    from trustroot.cli.serve_cmd import serve
    from trustroot.cli.simulate_cmd import simulate

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
    app.command("serve")(exit_code(serve))
    app.command("assess")(exit_code(assess))
    app.command("scan")(exit_code(scan))
    app.command("declare")(exit_code(compliance_cmd.declare))
    app.command("simulate")(exit_code(simulate))
    command(keys_cmd.app, "export-bootloader-secret")(bootloader_cmd.export_bootloader_secret)
    image_app = image_cmd.typer_app()
    command(image_app, "bootloader-config")(bootloader_cmd.bootloader_config)
    app.add_typer(context_cmd.app, name="context")
    app.add_typer(keys_cmd.app, name="keys")
    app.add_typer(evidence_cmd.app, name="evidence")
    app.add_typer(image_app, name="image")
    app.add_typer(provision_cmd.app, name="provision")
    app.add_typer(release_cmd.app, name="release")
    app.add_typer(release_cmd.rollout_app, name="rollout")
    app.add_typer(fleet_cmd.app, name="fleet")
    app.add_typer(operator_cmd.app, name="operator")
    app.add_typer(disclosure_cmd.app, name="disclosure")
    app.add_typer(compliance_cmd.app, name="compliance")
    app.add_typer(agent_cmd.app, name="agent")
    app.add_typer(monitor_cmd.app, name="monitor")
    return app
