"""``trustroot operator``: operators of the fleet service and their API tokens.

``add`` prints the new token ONCE (it is stored only as a hash); ``revoke`` stops it at once.
Works on the store named by ``--database`` (default: the product's ``.trustroot/fleet.sqlite``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from trustroot.cli._common import ContextOpt, DatabaseOpt, JsonOpt, Output, QuietOpt, command, open_product_for_cli
from trustroot.fleet.service import product_service

if TYPE_CHECKING:
    from trustroot.fleet.operators import OperatorView

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True, help="Operators of the fleet service: API tokens with scopes.")


def _data(view: OperatorView) -> dict[str, Any]:
    return {
        "name": view.name,
        "scopes": list(view.scopes),
        "token_id": view.token_id,
        "created_at": view.created_at.isoformat(),
        "created_by": view.created_by,
        "last_used_at": view.last_used_at.isoformat() if view.last_used_at else None,
        "revoked_at": view.revoked_at.isoformat() if view.revoked_at else None,
    }


@command(app, "add")
def add(
    name: Annotated[str, typer.Argument(help="The operator's name (letters, digits, . _ @ -).")],
    scope: Annotated[
        str, typer.Option("--scope", help="Comma-separated scopes: read, release, device-admin, disclosure.")
    ],
    context: ContextOpt = None,
    database: DatabaseOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """Add an operator and print its API token, ONCE: store it now, it cannot be shown again.

    Example: trustroot operator add alice --scope read,release
    """
    from trustroot.fleet.operators import add_operator

    out = Output.of(json_flag=json_, quiet=quiet)
    product = open_product_for_cli(context)
    with product_service(product, database) as service:
        made = add_operator(service, name, scope, actor=product.actor)
    out.result(
        f"operator [bold]{name}[/bold] added with scopes {', '.join(made.view.scopes)}\n"
        f"API token (shown once, store it now):\n{made.token}",
        {**_data(made.view), "token": made.token},
    )
    return 0


@command(app, "list")
def list_(
    context: ContextOpt = None,
    database: DatabaseOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """List operators (never their tokens).

    Example: trustroot operator list
    """
    from trustroot.fleet.operators import list_operators

    out = Output.of(json_flag=json_, quiet=quiet)
    with product_service(open_product_for_cli(context), database) as service:
        found = list_operators(service)
    lines = [
        f"{v.name:<24} {','.join(v.scopes):<36} "
        f"{'revoked ' + v.revoked_at.isoformat() if v.revoked_at else 'active':<40} "
        f"last used {v.last_used_at.isoformat() if v.last_used_at else 'never'}"
        for v in found
    ]
    out.result("\n".join(lines) or "no operators", [_data(v) for v in found])
    return 0


@command(app, "revoke")
def revoke(
    name: Annotated[str, typer.Argument(help="The operator to revoke.")],
    context: ContextOpt = None,
    database: DatabaseOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """Revoke an operator's token (takes effect at the next request).

    Example: trustroot operator revoke alice
    """
    from trustroot.fleet.operators import revoke_operator

    out = Output.of(json_flag=json_, quiet=quiet)
    product = open_product_for_cli(context)
    with product_service(product, database) as service:
        view = revoke_operator(service, name, actor=product.actor)
    out.result(f"operator {name} revoked", _data(view))
    return 0


def _terminal_qr(text: str) -> str:
    """``text`` as a QR code drawn with half-block characters (two modules per character cell)."""
    import qrcode

    code = qrcode.QRCode(border=2, error_correction=qrcode.constants.ERROR_CORRECT_M)
    code.add_data(text)
    code.make(fit=True)
    matrix: list[list[bool]] = code.get_matrix()
    if len(matrix) % 2:
        matrix.append([False] * len(matrix[0]))
    glyph = {(False, False): "█", (True, False): "▄", (False, True): "▀", (True, True): " "}
    return "\n".join(
        "".join(glyph[(top, bottom)] for top, bottom in zip(matrix[row], matrix[row + 1], strict=True))
        for row in range(0, len(matrix), 2)
    )


@command(app, "console-user")
def console_user(
    name: Annotated[str, typer.Argument(help="The operator's name (added with --scope if it does not exist).")],
    scope: Annotated[
        str | None,
        typer.Option("--scope", help="Scopes for a new operator: read, release, device-admin, disclosure."),
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input (else one is generated).")
    ] = False,
    context: ContextOpt = None,
    database: DatabaseOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """Give an operator a web console login: a password and a TOTP second factor (shown ONCE, with a QR code).

    Example: trustroot operator console-user alice --scope read,release
    """
    import sys

    from trustroot.fleet.console_users import create_console_user

    out = Output.of(json_flag=json_, quiet=quiet)
    password = sys.stdin.readline().rstrip("\r\n") if password_stdin else None
    product = open_product_for_cli(context)
    with product_service(product, database) as service:
        made = create_console_user(
            service,
            name,
            scope,
            actor=product.actor,
            password=password,
            issuer=f"trustroot {product.context.model.product.name}",
        )
    lines = [f"console login for [bold]{made.name}[/bold] ({', '.join(made.scopes)}); shown once, store it now:"]
    if made.password is not None:
        lines.append(f"password:    {made.password}")
    lines.append(f"TOTP secret: {made.totp_secret}  (SHA-1, 6 digits, 30 s)")
    lines.append(f"TOTP URI:    {made.otpauth_uri}")
    if made.api_token is not None:
        lines.append(f"API token:   {made.api_token}")
    lines.append("Scan this with an authenticator app:")
    lines.append(_terminal_qr(made.otpauth_uri))
    out.result(
        "\n".join(lines),
        {
            "name": made.name,
            "scopes": list(made.scopes),
            "password": made.password,
            "totp_secret": made.totp_secret,
            "otpauth_uri": made.otpauth_uri,
            "api_token": made.api_token,
        },
    )
    return 0
