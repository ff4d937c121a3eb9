"""Property tests of the image parser and verifier: arbitrary bytes and mutations of valid images
never raise anything but the project's error (ImageFormatError from the parser,
ImageVerificationError from the verifier), and a mutation inside the signed extent never verifies."""

from __future__ import annotations

import io
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trustroot._mcuboot import (
    ImageFormatError,
    ImageVerificationError,
    ImageVersion,
    TlvType,
    encode_tlv_area,
    parse_image,
    parse_image_stream,
)
from trustroot.image import sign_image_bytes, verify_image
from trustroot.image.hexfile import HexFileError, iter_hex, scan_hex

_KEY = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
_PUBLIC = _KEY.public_key()
_OPTIONS = {"version": "1.2.3", "header_size": 0x40, "pad_header": True, "security_counter": 5}
_VALID = sign_image_bytes(bytes(range(256)) * 4, _KEY, **_OPTIONS)
_PADDED = sign_image_bytes(bytes(range(256)) * 4, _KEY, **_OPTIONS, slot_size=0x2000, confirm=True, align=8)
_TLV_END = parse_image(_VALID).tlv_end
_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _parse_only_refuses(data: bytes) -> None:
    for strict in (True, False):
        try:
            layout = parse_image(data, strict_tail=strict)
        except ImageFormatError as exc:
            assert "\n" not in str(exc)
            continue
        assert layout.tlv_end <= len(data)
        assert parse_image_stream(io.BytesIO(data), strict_tail=strict) == layout


def _verify_only_refuses(data: bytes) -> bool:
    try:
        verify_image(data, keys=[_PUBLIC])
    except ImageVerificationError as exc:
        assert "\n" not in str(exc)
        return False
    return True


@_SETTINGS
@given(st.binary(max_size=600))
def test_arbitrary_bytes(data: bytes) -> None:
    _parse_only_refuses(data)
    assert not _verify_only_refuses(data)


@_SETTINGS
@given(st.binary(max_size=200), st.integers(0x20, 0x80), st.integers(0, 300), st.integers(0, 0xFFFF))
def test_arbitrary_bytes_behind_a_plausible_header(body: bytes, header_size: int, img_size: int, prot: int) -> None:
    """Random areas behind a real header reach deep into the TLV walk."""
    header = b"\x3d\xb8\xf3\x96" + bytes(4) + header_size.to_bytes(2, "little") + prot.to_bytes(2, "little")
    header += img_size.to_bytes(4, "little") + bytes(16)
    data = header + bytes(header_size - 32) + body
    _parse_only_refuses(data)
    _verify_only_refuses(data)


_tlv = st.tuples(st.sampled_from([*map(int, TlvType), 0xA0, 0x0102]), st.binary(max_size=80))


@_SETTINGS
@given(st.lists(_tlv, max_size=5), st.lists(_tlv, max_size=5), st.binary(max_size=64))
def test_arbitrary_tlv_areas(protected: list[tuple[int, bytes]], tlvs: list[tuple[int, bytes]], tail: bytes) -> None:
    from trustroot._mcuboot import ImageHeader

    payload = b"\x5a" * 40
    prot = encode_tlv_area(protected, protected=True)
    header = ImageHeader(0, 0x20, len(prot), len(payload), 0, ImageVersion(1)).pack()
    data = header + payload + prot + encode_tlv_area(tlvs, protected=False) + tail
    _parse_only_refuses(data)
    _verify_only_refuses(data)


@_SETTINGS
@given(st.lists(st.tuples(st.integers(0, len(_PADDED) - 1), st.integers(0, 255)), min_size=1, max_size=8))
def test_mutations_of_a_valid_image(edits: list[tuple[int, int]]) -> None:
    data = bytearray(_PADDED)
    for position, value in edits:
        data[position] = value
    verified = _verify_only_refuses(bytes(data))
    signed_part_changed = bytes(data[:_TLV_END]) != _PADDED[:_TLV_END]
    assert not (verified and signed_part_changed)


@_SETTINGS
@given(st.integers(0, len(_VALID)), st.binary(max_size=40), st.integers(0, len(_VALID)))
def test_insertions_and_cuts(position: int, inserted: bytes, cut: int) -> None:
    data = _VALID[:position] + inserted + _VALID[position:]
    if inserted:
        _parse_only_refuses(data)
        assert not _verify_only_refuses(data)
    assert _verify_only_refuses(_VALID[:cut]) == (cut == len(_VALID))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.text(alphabet=":0123456789ABCDEFabcdef\r \n", max_size=60), max_size=8))
def test_hex_files_only_refuse_with_hex_errors(lines: list[str]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.hex"
        path.write_text("\n".join(lines))
        try:
            scan_hex(path)
            assert sum(len(c) for c in iter_hex(path)) >= 1
        except HexFileError as exc:
            assert "\n" not in str(exc)
