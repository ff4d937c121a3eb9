"""``trustroot scan``: the code and firmware scanning gate (guidelines 1, 4, 5, 6 and 13)."""

from __future__ import annotations

import io
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from trustroot.cli._common import ContextOpt, JsonOpt, QuietOpt

if TYPE_CHECKING:
    from trustroot.product import Product
    from trustroot.scan.gate import ScanResult

__all__ = ["scan"]

_FORMATS = ("text", "json", "sarif")


class _RichProgress:
    """The gate's progress on a Rich bar (stderr); the total grows as targets are unpacked."""

    def __init__(self, progress: Any) -> None:
        self.progress = progress
        self.task = progress.add_task("scanning", total=0)

    def add(self, steps: int, label: str) -> None:
        total = self.progress.tasks[0].total or 0
        self.progress.update(self.task, total=total + steps, description=f"scanning {label}"[:60])

    def step(self, label: str) -> None:
        self.progress.update(self.task, advance=1, description=label[:60])


def _find_product(context: Path | None) -> tuple[Product | None, str]:
    """The product to record evidence in: the given context's, else one found upward, else none."""
    from trustroot.errors import ContextNotFoundError, StateError
    from trustroot.product import open_product

    if context is not None:
        return open_product(context), ""
    try:
        return open_product(None), ""
    except ContextNotFoundError:
        return None, "no security-context.toml here: the scan is not recorded as evidence"
    except StateError as why:
        return None, f"{why}: the scan is not recorded as evidence"


def _render_plain(markup: str) -> str:
    from rich.console import Console

    buffer = io.StringIO()
    Console(file=buffer, width=200, no_color=True, highlight=False, soft_wrap=True).print(markup)
    return buffer.getvalue()


def _print_engines(quiet: bool, json_: bool) -> int:
    import json

    from trustroot.components import default_tools_dir
    from trustroot.scan.gate import engine_versions

    tools = default_tools_dir()
    versions: dict[str, Any] = dict(engine_versions(tools))
    for helper in ("unsquashfs", "binwalk"):
        versions[helper] = "installed" if shutil.which(helper) else None
    if json_:
        sys.stdout.write(json.dumps({"tools_dir": str(tools) if tools else None, "engines": versions}, indent=2) + "\n")
        return 0
    from rich.console import Console

    console = Console(highlight=False)
    if not quiet:
        console.print(f"tools environment: {tools or '(none: scripts/setup.sh --tools)'}")
    for name, version in versions.items():
        state = f"[green]{version}[/green]" if version else "[yellow]missing: skipped when scanning[/yellow]"
        console.print(f"  {name:<15} {state}")
    return 0


def scan(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Source trees, root file systems, archives (tar, zip, cpio) or raw images."),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="Output: text, json or sarif (SARIF 2.1.0).")] = "text",
    out_file: Annotated[
        Path | None, typer.Option("--out", metavar="FILE", help="Write the output here (atomically).")
    ] = None,
    fail_on: Annotated[
        str | None,
        typer.Option("--fail-on", help="Lowest failing severity: low, medium or high (default: context, else medium)."),
    ] = None,
    baseline: Annotated[
        Path | None, typer.Option("--baseline", metavar="FILE", help="Accepted findings (fingerprint + reason each).")
    ] = None,
    engines: Annotated[
        bool, typer.Option("--engines", help="Print the engines found and their versions, then exit.")
    ] = False,
    only: Annotated[
        list[str] | None,
        typer.Option("--engine", metavar="NAME", help="Run only this engine (repeatable; default: the context's)."),
    ] = None,
    misra: Annotated[
        bool | None, typer.Option("--misra/--no-misra", help="cppcheck's MISRA C addon (default: context).")
    ] = None,
    vuln_db: Annotated[
        Path | None,
        typer.Option(
            "--vuln-db", metavar="PATH", help="OSV-format vulnerability data (file or directory; local only)."
        ),
    ] = None,
    sbom_file: Annotated[
        Path | None, typer.Option("--sbom", metavar="FILE", help="Write a CycloneDX SBOM of the components found.")
    ] = None,
    no_evidence: Annotated[
        bool, typer.Option("--no-evidence", help="Do not record the scan in the product's evidence.")
    ] = False,
    context: ContextOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """Scan source trees, firmware root file systems, archives and images; exit 1 on findings at or above --fail-on.

    Engines: cppcheck, clang-tidy, flawfinder (inventory), semgrep (trustroot's rules), detect-secrets,
    unblob (images), and trustroot's own IoT checks. Exit 0 clean, 1 findings at or above --fail-on,
    2 unusable input. Inside a product the SARIF copy goes to .trustroot/scans/ and each target gets
    a scan.completed evidence record.

    --vuln-db matches the component versions found against a local OSV data set (the gate never
    downloads); --sbom writes a CycloneDX SBOM of them.

    Example: trustroot scan firmware/src build/rootfs.tar.gz --format sarif --out scan.sarif
    """
    from trustroot.errors import UsageError

    if json_:
        fmt = "json"
    if fmt not in _FORMATS:
        raise UsageError(f"--format {fmt!r}: use text, json or sarif")
    if engines:
        return _print_engines(quiet, json_)
    if not paths:
        raise UsageError("trustroot scan: give at least one PATH (or --engines)")
    extra = {"vuln_db": vuln_db, "sbom_file": sbom_file}
    return _run(paths, fmt, out_file, fail_on, baseline, only, misra, no_evidence, context, quiet, **extra)


def _run(
    paths: list[Path],
    fmt: str,
    out_file: Path | None,
    fail_on: str | None,
    baseline_path: Path | None,
    only: list[str] | None,
    misra: bool | None,
    no_evidence: bool,
    context: Path | None,
    quiet: bool,
    *,
    vuln_db: Path | None = None,
    sbom_file: Path | None = None,
) -> int:
    from rich.console import Console

    from trustroot._fsutil import atomic_write
    from trustroot.components import default_tools_dir
    from trustroot.scan.baseline import load_baseline
    from trustroot.scan.gate import request_for, run_scan
    from trustroot.scan.record import record_scan
    from trustroot.scan.report import to_json_text, to_text
    from trustroot.scan.sarif import sarif_bytes

    err = Console(stderr=True, highlight=False)
    product, why_not = (None, "") if no_evidence and context is None else _find_product(context)
    request = request_for(
        paths,
        product.context.model.code_quality if product is not None else None,
        engines=only,
        fail_on=fail_on,
        misra=misra,
        baseline=load_baseline(baseline_path) if baseline_path is not None else None,
        tools_dir=default_tools_dir(),
        vuln_db=vuln_db,
    )
    # the bar is drawn on stderr: off with --quiet and --json only
    result = _scan_with_progress(request, run_scan, not quiet and fmt != "json")
    sarif = sarif_bytes(result)
    if fmt == "sarif":
        output = sarif
    elif fmt == "json":
        output = to_json_text(result).encode("utf-8")
    else:
        output = b""
    if sbom_file is not None:
        import json

        from trustroot.scan.checks.components import sbom

        document = sbom(result.components, result.vulnerabilities)
        atomic_write(sbom_file, (json.dumps(document, indent=2, sort_keys=True) + "\n").encode("utf-8"))
    if out_file is not None:
        atomic_write(out_file, output or _render_plain(to_text(result)).encode("utf-8"))
    if product is not None and not no_evidence:
        recorded = record_scan(product, result, sarif)
        if not quiet:
            err.print(f"recorded scan.completed for {', '.join(recorded.targets)}; SARIF copy {recorded.sarif_path}")
    elif why_not and not quiet:
        err.print(why_not)
    if out_file is None and output:
        sys.stdout.buffer.write(output)
        sys.stdout.flush()
    elif fmt == "text":
        text = to_text(result)
        if quiet:
            text = text.splitlines()[-1]
        Console(highlight=False, soft_wrap=True).print(text)
    return result.exit_code()


def _scan_with_progress(request: Any, run_scan: Any, show: bool) -> ScanResult:
    if not show:
        result: ScanResult = run_scan(request)
        return result
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        transient=True,
        console=Console(stderr=True),
    ) as progress:
        done: ScanResult = run_scan(request, _RichProgress(progress))
    return done
