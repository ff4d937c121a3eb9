"""Firmware images in MCUboot's format: sign, verify, inspect (guidelines 3 and 7).

The recipes choose nothing themselves; the format codec is :mod:`trustroot._mcuboot`, Intel HEX
is :mod:`trustroot.image.hexfile`, encryption is :mod:`trustroot.image.encryption`. Names are
imported lazily, so ``import trustroot.image`` costs nothing until one is used.

Errors::

    TrustrootError
    └── ImageError
        ├── ImageFormatError          not an MCUboot image / malformed (HexFileError: a bad HEX file)
        └── ImageVerificationError    verify_image refused the image (the reason in one line)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trustroot._mcuboot import (
        Dependency,
        ImageError,
        ImageFormatError,
        ImageLayout,
        ImageVerificationError,
        ImageVersion,
    )
    from trustroot.image.hexfile import HexFileError
    from trustroot.image.info import image_info, read_layout
    from trustroot.image.sign import (
        PayloadEncryptor,
        SignedImage,
        SigningKey,
        load_key_file,
        sign_image,
        sign_image_bytes,
        sign_image_file,
    )
    from trustroot.image.verify import VerifiedImage, verify_image, verify_image_file

__all__ = [
    "Dependency",
    "HexFileError",
    "ImageError",
    "ImageFormatError",
    "ImageLayout",
    "ImageVerificationError",
    "ImageVersion",
    "PayloadEncryptor",
    "SignedImage",
    "SigningKey",
    "VerifiedImage",
    "image_info",
    "load_key_file",
    "read_layout",
    "sign_image",
    "sign_image_bytes",
    "sign_image_file",
    "verify_image",
    "verify_image_file",
]

_HOME = {
    "Dependency": "trustroot._mcuboot",
    "ImageError": "trustroot._mcuboot",
    "ImageFormatError": "trustroot._mcuboot",
    "ImageLayout": "trustroot._mcuboot",
    "ImageVerificationError": "trustroot._mcuboot",
    "ImageVersion": "trustroot._mcuboot",
    "HexFileError": "trustroot.image.hexfile",
    "image_info": "trustroot.image.info",
    "read_layout": "trustroot.image.info",
    "PayloadEncryptor": "trustroot.image.sign",
    "SignedImage": "trustroot.image.sign",
    "SigningKey": "trustroot.image.sign",
    "load_key_file": "trustroot.image.sign",
    "sign_image": "trustroot.image.sign",
    "sign_image_bytes": "trustroot.image.sign",
    "sign_image_file": "trustroot.image.sign",
    "VerifiedImage": "trustroot.image.verify",
    "verify_image": "trustroot.image.verify",
    "verify_image_file": "trustroot.image.verify",
}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(_HOME[name]), name)
    raise AttributeError(f"module 'trustroot.image' has no attribute {name!r}")
