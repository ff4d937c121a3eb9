"""Render docs/context.md (the Security Context reference) from the schema's field descriptions.

Run: .venv/bin/python scripts/gen_context_docs.py          (writes docs/context.md)
     .venv/bin/python scripts/gen_context_docs.py --check  (exit 1 if docs/context.md is stale)
"""

from __future__ import annotations

import sys
import types
import typing
from pathlib import Path

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from trustroot.context.schema import SecurityContext

OUT = Path(__file__).resolve().parent.parent / "docs" / "context.md"

INTRO = """\
# Security Context reference (`security-context.toml`, schema version 1)

The Security Context is the one description of a product's security; every trustroot command
reads it. `trustroot init` writes one with secure defaults; `trustroot context check` lints it
against ETSI EN 303 645; `trustroot context schema` exports this schema as JSON Schema for
editors. Unknown keys, wrong types and out-of-range values are refused with the key path and the
line. Sizes may be written in hex (`header_size = 0x200`); dates are TOML dates (`2031-12-31`).

This page is generated from the schema by `scripts/gen_context_docs.py`; a test keeps it current.

## What `trustroot context check` refuses

| finding | provision | key |
|---|---|---|
| TLS below 1.2 allowed | 5.5-1 | `communication.min_tls_version` |
| devices not authenticated by certificate (no mutual TLS) | 5.5-1 | `communication.mutual_tls` |
| one default password shared by every unit, or a fixed password configured | 5.1-1 | `identity.password.mode`, `identity.password.shared_value` |
| generated passwords below the entropy floor | 5.1-2 | `identity.password.length` |
| unsigned images | 5.3-10 | `boot.signature` |
| anti-rollback off | 5.3-7 | `boot.anti_rollback` |
| signature / encryption pair MCUboot cannot use; hash not paired with the signature | 5.3-7 | `boot.encryption`, `boot.hash` |
| no support period, or one already past | 5.3-13 | `product.support_period_end` |
| no vulnerability disclosure contact or policy | 5.2-1 | `product.disclosure` |
| personal data not deleted on factory reset | 5.11-1 | `data.delete_on_reset` |

Advice (recommendations; fails only with `--strict`): placeholder disclosure contacts (5.2-1),
no test boot (5.7-1), X25519 with a PKCS#11 key store (5.4-1), no deletion on transfer (5.11-2),
personal data in telemetry (6-4), no check-in jitter (5.9-3), updates not automatic (5.3-4A),
telemetry off (5.10-1), no scan targets (5.6-9), an entropy floor under 60 bits (5.1-2).
"""


def _type_name(annotation: object) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " \\| ".join(f"`{a!r}`".replace("'", '"') for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args if a is not type(None)) + " (optional)"
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin is list:
        return f"list of {_type_name(args[0])}"
    if origin is dict:
        return f"table of {_type_name(args[1])}"
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            return "table"
        return {"str": "string", "int": "integer", "float": "number", "bool": "boolean", "date": "date"}.get(
            annotation.__name__, annotation.__name__
        )
    return str(annotation)


def _default(info: FieldInfo) -> str:
    if info.default is not PydanticUndefined:
        value = info.default
    elif info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
    else:
        return "required"
    if isinstance(value, BaseModel):
        return "(table)"
    if isinstance(value, list) and value and isinstance(value[0], BaseModel):
        return f"{len(value)} entries"
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0x1000:
        return f"`0x{value:x}`"
    return f"`{value!r}`".replace("'", '"').replace("True", "true").replace("False", "false").replace("None", "unset")


def _models(model: type[BaseModel], prefix: str, out: list[str]) -> None:
    rows: list[str] = []
    nested: list[tuple[type[BaseModel], str]] = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        inner = [a for a in (typing.get_args(annotation) or (annotation,)) if isinstance(a, type)]
        sub = next((a for a in inner if issubclass(a, BaseModel)), None)
        if typing.get_origin(annotation) is list:
            element = typing.get_args(annotation)[0]
            if isinstance(element, type) and issubclass(element, BaseModel):
                nested.append((element, f"[[{prefix}{name}]]"))
        elif typing.get_origin(annotation) is dict:
            element = typing.get_args(annotation)[1]
            if isinstance(element, type) and issubclass(element, BaseModel):
                nested.append((element, f'[{prefix}{name}."PROVISION"]'))
        elif sub is not None:
            nested.append((sub, f"[{prefix}{name}]"))
            continue
        rows.append(f"| `{name}` | {_type_name(annotation)} | {_default(info)} | {info.description or ''} |")
    if rows:
        out += ["| key | type | default | meaning |", "|---|---|---|---|", *rows, ""]
    for sub_model, header in nested:
        out += [f"### `{header}`", "", (sub_model.__doc__ or "").strip(), ""]
        _models(sub_model, header.strip("[]").replace('."PROVISION"', "") + ".", out)


def render() -> str:
    out = [INTRO, "## Top level", ""]
    _models(SecurityContext, "", out)
    return "\n".join(out).rstrip() + "\n"


def main() -> int:
    text = render()
    if "--check" in sys.argv:
        if not OUT.exists() or OUT.read_text() != text:
            sys.stderr.write("docs/context.md is stale: run .venv/bin/python scripts/gen_context_docs.py\n")
            return 1
        return 0
    OUT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
