"""``trustroot context``: check, set, schema, show, security-txt."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from trustroot.cli._common import ContextOpt, FormatOpt, JsonOpt, Output, QuietOpt, command

app = typer.Typer(no_args_is_help=True, help="Lint and edit the Security Context (security-context.toml).")


@command(app, "check")
def check(
    context: ContextOpt = None,
    strict: Annotated[bool, typer.Option("--strict", help="Advice (recommendations) fails the check too.")] = False,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
    fmt: FormatOpt = "text",
) -> int:
    """Lint the context against EN 303 645: exit 0 clean, 1 with findings, 2 on unreadable input.

    Example: trustroot context check --context demo/security-context.toml
    """
    from trustroot.context import find_context, load_context
    from trustroot.context.lint import lint
    from trustroot.errors import ContextError

    out = Output.of(json_flag=json_, quiet=quiet, fmt=fmt)
    path = find_context(None, context)
    try:
        loaded = load_context(path)
    except ContextError as error:
        if not error.issues:
            raise
        issues = [{"key": k, "line": n, "message": m} for k, n, m in error.issues]
        text = "\n".join(f"{path}:{n}: {k}: {m}" for k, n, m in error.issues)
        out.result(f"[red]{len(issues)} schema error(s)[/red]\n{text}", {"path": str(path), "schema_errors": issues})
        return 1
    findings = lint(loaded, today=datetime.now(UTC).date())
    errors = [f for f in findings if f.severity == "error"]
    failing = findings if strict else errors
    lines = [
        f"{path}:{f.line}: {f.key}: [{'red' if f.severity == 'error' else 'yellow'}]{f.severity}[/] "
        f"EN 303 645 {f.provision}: {f.message}\n    fix: {f.fix}"
        for f in findings
    ]
    summary = (
        f"[green]context OK[/green]: {path} ({len(findings) - len(errors)} advice)"
        if not failing
        else f"[red]{len(failing)} finding(s)[/red] in {path}"
    )
    out.result(
        "\n".join([*lines, summary]),
        {"path": str(path), "ok": not failing, "findings": [f.as_dict() for f in findings]},
    )
    if not quiet and not failing:
        from trustroot.product import record_context_check

        record_context_check(path, len(findings))
    return 1 if failing else 0


@command(app, "set")
def set_value(
    key: Annotated[str, typer.Argument(help="Dotted key, e.g. communication.min_tls_version.")],
    value: Annotated[str, typer.Argument(help="New value as TOML (strings quoted: '\"1.3\"'), or a bare word.")],
    context: ContextOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """Change one key, keeping the file's comments and layout; refused if the result is invalid.

    Example: trustroot context set communication.min_tls_version '"1.3"'
    """
    from trustroot.context.edit import set_key
    from trustroot.context.load import find_context

    out = Output.of(json_flag=json_, quiet=quiet)
    path = find_context(None, context)
    old, new = set_key(path, key, value)
    out.result(f"{key}: {old} -> {new}", {"key": key, "old": old, "new": new})
    return 0


@command(app, "schema")
def schema(
    out_file: Annotated[Path | None, typer.Option("--out", help="Write to this file instead of stdout.")] = None,
    context: ContextOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """Export the JSON Schema of security-context.toml.

    Example: trustroot context schema --out security-context.schema.json
    """
    from trustroot._fsutil import atomic_write
    from trustroot.context import json_schema

    text = json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"
    if out_file:
        atomic_write(out_file, text.encode())
    else:
        typer.echo(text, nl=False)
    return 0


@command(app, "show")
def show(context: ContextOpt = None, quiet: QuietOpt = False, json_: JsonOpt = False) -> int:
    """Print the context with every default filled in, as JSON (the only format).

    Example: trustroot context show | jq .boot
    """
    from trustroot.context import find_context, load_context

    loaded = load_context(find_context(None, context))
    typer.echo(json.dumps(loaded.model.model_dump(mode="json"), indent=2))
    return 0


@command(app, "security-txt")
def security_txt_cmd(
    context: ContextOpt = None,
    out_file: Annotated[Path | None, typer.Option("--out", help="Write to this file instead of stdout.")] = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """Print the product's security.txt (RFC 9116).

    Example: trustroot context security-txt --out .well-known/security.txt
    """
    from trustroot._fsutil import atomic_write
    from trustroot.context import find_context, load_context
    from trustroot.context.security_txt import security_txt

    loaded = load_context(find_context(None, context))
    text = security_txt(loaded.model, now=datetime.now(UTC))
    if json_:
        Output(json=True).result("", {"security_txt": text})
        return 0
    if out_file:
        atomic_write(out_file, text.encode())
    else:
        typer.echo(text, nl=False)
    return 0
