"""``trustroot doctor``: every component the product uses, its version, or how to install it."""

from __future__ import annotations

from trustroot.cli._common import ContextOpt, JsonOpt, Output, QuietOpt


def doctor(context: ContextOpt = None, quiet: QuietOpt = False, json_: JsonOpt = False) -> int:
    """List Debian packages, scanning engines, the PKCS#11 module and Python libraries with versions.

    Exit 1 when a required component is missing. Example: trustroot doctor --json
    """
    from trustroot.components import discover

    out = Output.of(json_flag=json_, quiet=quiet)
    components = discover()
    missing = [c for c in components if c.status != "ok"]
    from rich.table import Table

    table = Table(title="trustroot components", show_lines=False)
    for column in ("component", "kind", "version", "status", "for / how to install"):
        table.add_column(column)
    for c in components:
        colour = "green" if c.status == "ok" else "red"
        table.add_row(
            c.name,
            c.kind,
            c.version or "-",
            f"[{colour}]{c.status}[/]",
            c.purpose if c.status == "ok" else c.install_hint,
        )
    if out.json:
        out.result("", [c.__dict__ for c in components])
    else:
        out.console.print(table)
        if missing:
            out.console.print(
                f"[yellow]{len(missing)} component(s) missing or broken[/]: the last column says how to install each"
            )
    return 1 if any(c.status != "ok" and c.required for c in components) else 0
