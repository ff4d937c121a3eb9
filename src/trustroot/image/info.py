"""What an image says about itself, as plain data for ``trustroot image info`` (``--json``).

Nothing here is verified: the header and TLVs are reported as they stand (``"verified": false``
in the output says so). Use :func:`trustroot.image.verify_image` before trusting any of it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, cast

from trustroot._mcuboot import (
    HASH_TLV_TYPES,
    ImageFormatError,
    ImageLayout,
    Tlv,
    TlvType,
    flag_names,
    parse_image,
    parse_image_stream,
)
from trustroot.errors import UnreadableInputError
from trustroot.image.hexfile import is_hex_path, iter_hex, scan_hex

__all__ = ["image_info", "layout_info", "read_layout"]

JSON = dict[str, object]
#: Longest TLV value shown in full (hex); longer ones are cut, with their length given.
_MAX_SHOWN = 512


def _tlv(tlv: Tlv) -> JSON:
    entry: JSON = {
        "type": tlv.type,
        "name": tlv.name,
        "offset": tlv.offset,
        "length": len(tlv.value),
        "value": tlv.value[:_MAX_SHOWN].hex(),
    }
    if tlv.type == TlvType.SEC_CNT:
        entry["security_counter"] = int.from_bytes(tlv.value, "little")
    return entry


def layout_info(layout: ImageLayout) -> JSON:
    """The layout as JSON-ready data (ints and strings only, no floats)."""
    header = layout.header
    hash_tlv = layout.hash_tlv
    key_hash = next((t for t in layout.tlvs if t.type == TlvType.KEYHASH), None)
    trailer = layout.trailer
    return {
        "verified": False,
        "size": layout.file_size,
        "header": {
            "load_addr": header.load_addr,
            "header_size": header.header_size,
            "protect_tlv_size": header.protect_tlv_size,
            "img_size": header.img_size,
            "flags": header.flags,
            "flag_names": flag_names(header.flags),
        },
        "version": str(header.version),
        "security_counter": layout.security_counter,
        "dependencies": [{"image_id": d.image_id, "min_version": str(d.min_version)} for d in layout.dependencies],
        "hash": (
            {"algorithm": HASH_TLV_TYPES[TlvType(hash_tlv.type)], "value": hash_tlv.value.hex()} if hash_tlv else None
        ),
        "key_hash": key_hash.value.hex() if key_hash else None,
        "encrypted": header.encrypted,
        "payload": {"offset": layout.payload_offset, "size": layout.payload_size},
        "protected_tlvs": [_tlv(t) for t in layout.protected_tlvs],
        "tlvs": [_tlv(t) for t in layout.tlvs],
        "tlv_end": layout.tlv_end,
        "trailer": (
            {
                "offset": trailer.offset,
                "max_align": trailer.max_align,
                "image_ok": trailer.image_ok,
                "erased_value": trailer.erased_value,
            }
            if trailer
            else None
        ),
    }


@contextlib.contextmanager
def _binary(path: Path) -> Iterator[BinaryIO]:
    if is_hex_path(path):
        import tempfile

        scan_hex(path)
        with tempfile.TemporaryFile() as stream:
            for chunk in iter_hex(path, fill=0xFF):
                stream.write(chunk)
            yield cast(BinaryIO, stream)
        return
    try:
        handle = path.open("rb")
    except FileNotFoundError as exc:
        raise UnreadableInputError(f"image {path}: no such file") from exc
    except IsADirectoryError as exc:
        raise UnreadableInputError(f"image {path}: is a directory, expected a file") from exc
    except OSError as exc:
        raise UnreadableInputError(f"image {path}: cannot be read ({exc.strerror})") from exc
    with handle:
        yield handle


def read_layout(source: str | os.PathLike[str] | bytes, *, strict_tail: bool = False) -> ImageLayout:
    """Parse the image at ``source`` (path, ``.hex`` included, or bytes) without verifying it.

    The tail is not examined by default, so a slot read from flash can be inspected too.
    Raises :class:`~trustroot._mcuboot.ImageFormatError`.
    """
    if isinstance(source, bytes):
        return parse_image(source, strict_tail=strict_tail)
    path = Path(source)
    with _binary(path) as stream:
        try:
            return parse_image_stream(stream, strict_tail=strict_tail)
        except ImageFormatError as exc:
            raise ImageFormatError(f"image {path}: {exc.message}") from exc


def image_info(source: str | os.PathLike[str] | bytes) -> JSON:
    """:func:`layout_info` of the image at ``source`` (unverified)."""
    return layout_info(read_layout(source))
