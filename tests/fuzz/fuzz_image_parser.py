"""atheris target: the MCUboot image parser and verifier on arbitrary bytes.

Run: ``python tests/fuzz/fuzz_image_parser.py -runs=100000 [corpus dir]`` (needs ``atheris``).
A finding is any exception other than the project's: ``ImageFormatError`` from the parser,
``ImageVerificationError`` from the verifier. ``test_one_input`` is also run by the unit suite
over a seed corpus (tests/unit/test_image_fuzz.py), so CI exercises it without atheris.
"""

from __future__ import annotations

import sys

from cryptography.hazmat.primitives.asymmetric import ed25519

from trustroot._mcuboot import ImageFormatError, ImageVerificationError, parse_image
from trustroot.image import verify_image

_KEY = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32))).public_key()


def test_one_input(data: bytes) -> None:
    """Parse and verify ``data``; anything but the two refusals propagates (a finding)."""
    for strict in (True, False):
        try:
            layout = parse_image(data, strict_tail=strict)
        except ImageFormatError:
            continue
        if layout.tlv_end > len(data):
            raise AssertionError("a layout beyond the data")
    try:
        verify_image(data, keys=[_KEY])
    except ImageVerificationError:
        return


def main() -> None:
    import atheris  # type: ignore[import-not-found]

    atheris.instrument_all()
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
