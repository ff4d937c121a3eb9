"""``trustroot image sign | verify | info``: argparse, no Typer, Rich or pydantic on the way in.

``trustroot.cli.main`` hands ``image sign|verify|info`` here before the Typer application is
imported, so signing a build's image costs a bare Python start plus ``cryptography``. Inside a
product (a ``security-context.toml`` here or above, or ``--context``) the context is loaded and
evidence written; outside one, the commands behave like imgtool (explicit sizes, ``--key FILE``)
and say so on stderr. The work is in :mod:`trustroot.image.recipes`.

Exit codes (``trustroot.cli.main.exit_code_for``): 0 ok; 1 not a valid image, a refusal;
2 an unreadable file or wrong usage; 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from trustroot.errors import ContextNotFoundError, TrustrootError, UsageError

if TYPE_CHECKING:
    from trustroot.product import Product

__all__ = ["COMMANDS", "build_parser", "main", "typer_app"]

#: The verbs handled here, with their one-line summaries.
COMMANDS = {
    "sign": "Sign (and optionally encrypt) a firmware image in MCUboot's format.",
    "verify": "Verify an MCUboot image: hash, signature, key, security counter.",
    "info": "Show an image's header, version, security counter and TLVs (unverified).",
}
_CONTEXT_FILE = "security-context.toml"  # trustroot.context.load.CONTEXT_FILE, without importing pydantic
_STANDALONE_NOTE = (
    "note: no security-context.toml here or above: working like imgtool "
    "(no context defaults read, no evidence written)\n"
)

_SIGN_EPILOG = """\
Examples:
  Example: trustroot image sign build/zephyr.bin build/zephyr.signed.bin --version 1.4.0 --confirm
  Example: trustroot image sign app.hex app.signed.hex --version 1.2.3+4 --key root-ec-p256.pem \\
             --header-size 0x200 --pad-header --slot-size 0x60000 --align 8
Sizes and addresses take decimal or 0x hex. Inside a product the [boot] section gives the
defaults and the key store the key; --security-counter auto counts the product's evidence.
"""
_VERIFY_EPILOG = """\
Examples:
  Example: trustroot image verify build/zephyr.signed.bin --min-counter 7
  Example: trustroot image verify app.signed.bin --key root-ec-p256.pem --json
Exit code 0: the image verifies; 1: it does not (the reason is printed); 2: unreadable or wrong usage.
"""
_INFO_EPILOG = """\
Examples:
  Example: trustroot image info build/zephyr.signed.bin
  Example: trustroot image info app.signed.hex --json
Nothing shown is verified: use 'trustroot image verify' before trusting it.
"""


class _Parser(argparse.ArgumentParser):
    """argparse that raises :class:`UsageError` instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}", hint=f"see: {self.prog} --help")


def _number(name: str) -> Callable[[str], int]:
    """An argparse type: decimal or 0x hex (``_`` allowed), not negative (as ``cli._common.int_option``)."""

    def parse(value: str) -> int:
        text = value.strip().lower().replace("_", "")
        try:
            number = int(text, 16) if text.startswith("0x") else int(text, 10)
        except ValueError:
            raise UsageError(f"{name} {value!r}: not a decimal or 0x-hex number") from None
        if number < 0:
            raise UsageError(f"{name} {value!r}: must not be negative")
        return number

    return parse


def _counter(value: str) -> int | str:
    return "auto" if value.strip().lower() == "auto" else _number("--security-counter")(value)


def _dependency(value: str) -> tuple[int, str]:
    image_id, sep, version = value.partition(",")
    if not sep:
        raise UsageError(f"--dependency {value!r}: expected ID,VERSION, e.g. 1,2.0.0")
    number = _number("--dependency image id")(image_id)
    if number > 255:
        raise UsageError(f"--dependency {value!r}: the image id must be 0..255")
    return number, version.strip()


def _common(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("common options")
    group.add_argument("--context", metavar="PATH", help="The security-context.toml (default: found upward from here).")
    group.add_argument("--quiet", "-q", action="store_true", help="Print only errors and the result.")
    group.add_argument("--json", action="store_true", help="Machine-readable JSON output.")


def _sign_parser(sub: Any) -> None:
    p = sub.add_parser(
        "sign",
        help=COMMANDS["sign"],
        description=COMMANDS["sign"],
        epilog=_SIGN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", metavar="IN", help="The firmware: raw binary, or Intel HEX if it ends in .hex.")
    p.add_argument("output", metavar="OUT", help="The signed image (Intel HEX if it ends in .hex).")
    p.add_argument("--version", "-v", required=True, help="Image version MAJOR.MINOR.REVISION[+BUILD].")
    p.add_argument(
        "--security-counter",
        "-s",
        type=_counter,
        help="Anti-rollback counter N, or auto (one more than the product's highest; default in a product "
        "with anti_rollback on).",
    )
    p.add_argument("--key", "-k", type=Path, metavar="FILE", help="PEM signing key (default in a product: its key).")
    p.add_argument("--password-env", metavar="NAME", help="Environment variable holding the PEM key file's password.")
    p.add_argument(
        "--encrypt",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Encrypt the payload (default: the context's [boot] encryption; implied by --enc-key).",
    )
    p.add_argument(
        "--enc-key", "-E", type=Path, metavar="FILE", help="Boot loader's encryption key (PEM, P-256/X25519)."
    )
    p.add_argument(
        "--encrypt-keylen", type=int, choices=(128, 256), help="AES key bits (default 128, or the context's)."
    )
    p.add_argument("--header-size", "-H", type=_number("--header-size"), help="Image header size.")
    p.add_argument("--pad-header", action="store_true", help="Put a header of erased bytes in front of the input.")
    p.add_argument("--slot-size", "-S", type=_number("--slot-size"), help="Slot size (the secondary slot's).")
    p.add_argument("--align", type=int, choices=(1, 2, 4, 8, 16, 32), help="Flash write alignment (default 1).")
    p.add_argument(
        "--max-align", type=int, choices=(8, 16, 32), help="Maximum flash alignment (default max(8, align))."
    )
    p.add_argument("--max-sectors", "-M", type=_number("--max-sectors"), help="Sectors the trailer is sized for.")
    p.add_argument("--pad", action="store_true", help="Pad to the slot size and add the trailer magic.")
    p.add_argument("--confirm", action="store_true", help="Mark the image confirmed (image_ok; implies --pad).")
    p.add_argument(
        "--dependency",
        "-d",
        action="append",
        type=_dependency,
        default=[],
        metavar="ID,VERSION",
        help="The image needs image ID at VERSION or later (repeatable).",
    )
    p.add_argument("--load-addr", "-L", type=_number("--load-addr"), default=0, help="RAM load address (RAM_LOAD).")
    p.add_argument("--rom-fixed", "-F", type=_number("--rom-fixed"), help="Flash address the image is built for.")
    p.add_argument("--non-bootable", action="store_true", help="Mark the image non-bootable.")
    p.add_argument(
        "--hex-addr", "-x", type=_number("--hex-addr"), help="Address of a .hex output (default: the input's)."
    )
    p.add_argument("--erased-val", "-R", type=_number("--erased-val"), help="Erased flash value: 0 or 0xff.")
    p.add_argument("--public-key-format", choices=("hash", "full"), default="hash", help="KEYHASH or the full PUBKEY.")
    p.add_argument("--hash", choices=("sha256", "sha384", "sha512"), help="Image hash (default: the key's).")
    _common(p)


def _verify_parser(sub: Any) -> None:
    p = sub.add_parser(
        "verify",
        help=COMMANDS["verify"],
        description=COMMANDS["verify"],
        epilog=_VERIFY_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("image", metavar="IMAGE", help="The image (.hex too).")
    p.add_argument(
        "--key",
        "-k",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="Public (or private) PEM key to accept (repeatable; default in a product: its firmware-signing keys).",
    )
    p.add_argument("--password-env", metavar="NAME", help="Environment variable holding a PEM key file's password.")
    p.add_argument("--enc-key", "-E", type=Path, metavar="FILE", help="Decryption key of an encrypted image (PEM).")
    p.add_argument("--min-counter", type=_number("--min-counter"), help="Refuse a security counter below N.")
    _common(p)


def _info_parser(sub: Any) -> None:
    p = sub.add_parser(
        "info",
        help=COMMANDS["info"],
        description=COMMANDS["info"],
        epilog=_INFO_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("image", metavar="IMAGE", help="The image (.hex too).")
    _common(p)


def build_parser() -> argparse.ArgumentParser:
    """The ``trustroot image`` parser with its three subcommands."""
    parser = _Parser(prog="trustroot image", description="Sign, verify and inspect MCUboot firmware images.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)
    _sign_parser(sub)
    _verify_parser(sub)
    _info_parser(sub)
    return parser


# --- running ---------------------------------------------------------------------------------------


def _find_context(explicit: str | None) -> Path | None:
    """The context file named by --context, else the first one upward from here, else None."""
    if explicit is not None:
        path = Path(explicit)
        candidate = path / _CONTEXT_FILE if path.is_dir() else path
        if not candidate.is_file():
            raise ContextNotFoundError(f"--context {explicit}: no such file")
        return candidate
    here = Path.cwd().resolve()
    for directory in (here, *here.parents):
        candidate = directory / _CONTEXT_FILE
        if candidate.is_file():
            return candidate
    return None


def _product(args: argparse.Namespace) -> Product | None:
    found = _find_context(args.context)
    if found is None:
        if not args.quiet:
            sys.stderr.write(_STANDALONE_NOTE)
        return None
    from trustroot.product import open_product

    return open_product(found)


def _emit(args: argparse.Namespace, text: str, data: object) -> None:
    if args.json:
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
    else:
        sys.stdout.write(text + "\n")


def _run_sign(args: argparse.Namespace) -> int:
    from trustroot.image.recipes import SignRequest, evidence_data, password_from_env, sign_request

    product = _product(args)
    request = SignRequest(
        source=Path(args.input),
        destination=Path(args.output),
        version=args.version,
        security_counter=args.security_counter,
        encrypt=args.encrypt,
        encrypt_keylen=args.encrypt_keylen,
        header_size=args.header_size,
        pad_header=args.pad_header,
        slot_size=args.slot_size,
        align=args.align,
        max_align=args.max_align,
        max_sectors=args.max_sectors,
        pad=args.pad,
        confirm=args.confirm,
        dependencies=_dependencies(args.dependency),
        key_file=args.key,
        key_password=password_from_env(args.password_env),
        enc_key_file=args.enc_key,
        load_addr=args.load_addr,
        rom_fixed=args.rom_fixed,
        non_bootable=args.non_bootable,
        hex_addr=args.hex_addr,
        erased_val=args.erased_val,
        public_key_format=args.public_key_format,
        hash_algorithm=args.hash,
    )
    signed = sign_request(request, product)
    counter = "none" if signed.security_counter is None else str(signed.security_counter)
    text = (
        f"signed {signed.path}: version {signed.version}, security counter {counter}, "
        f"{signed.algorithm or 'unsigned'}{', encrypted' if signed.encrypted else ''}, "
        f"image hash ({signed.hash_algorithm}) {signed.digest.hex()}, {signed.size} bytes"
    )
    if product is not None:
        text += " (recorded as evidence)"
    _emit(args, text, {**evidence_data(signed), "evidence": product is not None})
    return 0


def _dependencies(items: Sequence[tuple[int, str]]) -> tuple[Any, ...]:
    from trustroot._mcuboot import Dependency, ImageFormatError, ImageVersion

    found = []
    for image_id, version in items:
        try:
            found.append(Dependency(image_id, ImageVersion.parse(version)))
        except ImageFormatError as exc:
            raise UsageError(f"--dependency {image_id},{version}: {exc.message}") from None
    return tuple(found)


def _run_verify(args: argparse.Namespace) -> int:
    from trustroot.image import recipes
    from trustroot.image.verify import verify_image

    product = _product(args)
    password = recipes.password_from_env(args.password_env)
    paths: list[Path] = args.key
    keys: Any
    if paths:  # a loader: the image is hashed while the key files are read
        keys = lambda: [recipes.load_public_key_file(path, password) for path in paths]  # noqa: E731
    elif product is None:
        raise UsageError("give the public key to verify with (--key FILE)", hint="or run inside a product")
    else:
        keys = recipes.product_verification_keys(product)
        if not keys:
            raise UsageError(f"the product at {product.root} has no firmware-signing key to verify with")
    enc_key: Any = None
    if args.enc_key is not None:
        enc_key = recipes.decryption_key_file(args.enc_key, password)
    elif product is not None and _is_encrypted(args.image):
        enc_key = recipes.product_decryption_key(product)
    verified = verify_image(args.image, keys=keys, enc_key=enc_key, min_counter=args.min_counter)
    counter = "none" if verified.security_counter is None else str(verified.security_counter)
    text = (
        f"OK {args.image}: version {verified.version}, security counter {counter}, "
        f"signed by {verified.algorithm} key {(verified.key_id or '')[:16]}"
        f"{', encrypted' if verified.encrypted else ''}, image hash ({verified.hash_algorithm}) {verified.digest.hex()}"
    )
    _emit(
        args,
        text,
        {
            "verified": True,
            "image": args.image,
            "version": str(verified.version),
            "security_counter": verified.security_counter,
            "dependencies": [
                {"image_id": d.image_id, "min_version": str(d.min_version)} for d in verified.dependencies
            ],
            "hash_algorithm": verified.hash_algorithm,
            "hash": verified.digest.hex(),
            "key_id": verified.key_id,
            "algorithm": verified.algorithm,
            "encrypted": verified.encrypted,
            "size": verified.size,
        },
    )
    return 0


def _is_encrypted(image: str) -> bool:
    from trustroot._mcuboot import ImageFormatError
    from trustroot.image.info import read_layout

    try:
        return read_layout(image).header.encrypted
    except ImageFormatError:
        return False  # verify_image names the fault


def _run_info(args: argparse.Namespace) -> int:
    from trustroot.image.info import image_info

    info = image_info(args.image)
    _emit(args, _render_info(args.image, info), info)
    return 0


def _render_info(name: str, info: dict[str, Any]) -> str:
    header = info["header"]
    lines = [
        f"{name}: MCUboot image, {info['size']} bytes (NOT verified)",
        f"  version            {info['version']}",
        f"  header             size 0x{header['header_size']:x}, load address 0x{header['load_addr']:x}, "
        f"flags 0x{header['flags']:x} {' '.join(header['flag_names'])}".rstrip(),
        f"  payload            offset 0x{info['payload']['offset']:x}, size 0x{info['payload']['size']:x}",
        f"  security counter   {'none' if info['security_counter'] is None else info['security_counter']}",
    ]
    lines += [f"  dependency         image {d['image_id']} >= {d['min_version']}" for d in info["dependencies"]]
    if info["hash"]:
        lines.append(f"  hash               {info['hash']['algorithm']} {info['hash']['value']}")
    if info["key_hash"]:
        lines.append(f"  key hash           {info['key_hash']}")
    for area, key in (("protected TLV", "protected_tlvs"), ("TLV", "tlvs")):
        for tlv in info[key]:
            value = tlv["value"] if len(tlv["value"]) <= 64 else tlv["value"][:64] + "..."
            lines.append(f"  {area:<18} {tlv['name']:<12} {tlv['length']:>4} bytes  {value}")
    trailer = info["trailer"]
    if trailer:
        ok = "set" if trailer["image_ok"] == 1 else "unset"
        lines.append(
            f"  trailer            at 0x{trailer['offset']:x}, max align {trailer['max_align']}, image_ok {ok}"
        )
    return "\n".join(lines)


_RUNNERS: dict[str, Callable[[argparse.Namespace], int]] = {"sign": _run_sign, "verify": _run_verify, "info": _run_info}


def main(argv: Sequence[str]) -> int:
    """Run ``trustroot image <argv>`` and return the exit code; errors become one or two lines."""
    from trustroot.cli.main import exit_code_for, render_error

    try:
        args = build_parser().parse_args(list(argv))
        return _RUNNERS[args.command](args)
    except TrustrootError as error:
        sys.stderr.write(render_error(error) + "\n")
        return exit_code_for(error)
    except SystemExit as done:  # --help
        code = done.code
        return code if isinstance(code, int) else (0 if code is None else 2)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130


# --- the Typer group that lists (and forwards to) these commands -----------------------------------


def typer_app() -> Any:
    """A Typer group ``image`` whose sign / verify / info forward to :func:`main` (for ``--help``).

    Other image commands (``bootloader-config``) are added to it by the application.
    """
    import typer

    app = typer.Typer(no_args_is_help=True, help="Sign, verify and inspect MCUboot firmware images.")
    for name, summary in COMMANDS.items():
        app.command(
            name,
            help=f"{summary} (see: trustroot image {name} --help)",
            context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
            add_help_option=False,
        )(_forwarder(name, typer))
    return app


def _forwarder(name: str, typer: Any) -> Callable[..., None]:
    def forward(ctx: Any) -> None:
        code = main([name, *ctx.args])
        if code:
            raise typer.Exit(code)

    forward.__annotations__ = {"ctx": typer.Context, "return": None}
    forward.__name__ = f"image_{name}"
    return forward
