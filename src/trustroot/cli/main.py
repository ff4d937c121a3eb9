"""The ``trustroot`` console script: dispatch, and the one place errors become exit codes.

Exit codes: 0 success; 1 the thing checked is not acceptable (a finding, a refusal, malformed
content); 2 an unreadable file or wrong usage; 130 interrupted. A ``TrustrootError`` is printed
in one or two lines (message, then the fix) without a traceback.

Start-up stays lean: this module imports only the standard library and the error hierarchy;
the Typer application and everything below it are imported on demand.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from trustroot.errors import (
    ContextNotFoundError,
    TrustrootError,
    UnreadableInputError,
    UsageError,
)

__all__ = ["exit_code_for", "main", "render_error"]


def exit_code_for(error: TrustrootError) -> int:
    """2 for unreadable input and wrong usage, 1 for every other refusal."""
    if isinstance(error, UnreadableInputError | UsageError | ContextNotFoundError):
        return 2
    return 1


def render_error(error: TrustrootError) -> str:
    """The one or two lines the CLI prints for ``error``."""
    text = f"error: {error}"
    if error.hint:
        text += f"\n  fix: {error.hint}"
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default ``sys.argv[1:]``) and return the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) > 1 and args[0] == "image" and args[1] in ("sign", "verify", "info"):
        from trustroot.cli.image_cmd import main as image_main  # argparse: no Typer, Rich or pydantic

        return image_main(args[1:])
    from trustroot.cli.app import build_app

    try:
        build_app()(args=args, prog_name="trustroot", standalone_mode=True)
    except TrustrootError as error:
        sys.stderr.write(render_error(error) + "\n")
        return exit_code_for(error)
    except SystemExit as done:  # Typer ends every run this way, usage errors with 2
        code = done.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except OSError as error:  # a path the system refused (missing, not permitted, full, read-only)
        if os.environ.get(DEBUG_ENV):
            raise
        sys.stderr.write(render_os_error(error) + "\n")
        return 2
    return 0


#: Set to show the traceback of an operating-system error instead of its one-line message.
DEBUG_ENV = "TRUSTROOT_DEBUG"


def render_os_error(error: OSError) -> str:
    """One line for an operating-system error that reached the CLI: what failed, on which path."""
    what = error.strerror or type(error).__name__
    where = f": {error.filename}" if error.filename else ""
    if error.filename2:
        where += f" -> {error.filename2}"
    return f"error: {what}{where}\n  fix: check the path and its permissions ({DEBUG_ENV}=1 shows the traceback)"


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
