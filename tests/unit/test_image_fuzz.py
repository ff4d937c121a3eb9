"""The atheris target tests/fuzz/fuzz_image_parser.py, over a seed corpus, without atheris.

The corpus: every committed imgtool vector, each cut and flipped at a few places, and some
hand-made near-images. The target raises on anything but the project's refusals.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from trustroot.image.hexfile import iter_hex

REPO = Path(__file__).resolve().parents[2]
VECTORS = REPO / "tests" / "vectors" / "mcuboot"


def _target() -> Callable[[bytes], None]:
    spec = importlib.util.spec_from_file_location("fuzz_image_parser", REPO / "tests" / "fuzz" / "fuzz_image_parser.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    target: Callable[[bytes], None] = module.test_one_input
    return target


def _images() -> Iterator[bytes]:
    for path in sorted(VECTORS.iterdir()):
        if path.suffix == ".bin":
            yield path.read_bytes()
        elif path.suffix == ".hex":
            yield b"".join(iter_hex(path))


def _corpus() -> Iterator[bytes]:
    yield from (b"", b"\x3d\xb8\xf3\x96", b"\x3d\xb8\xf3\x96" + bytes(60), b"\xff" * 64)
    for image in _images():
        yield image
        for fraction in (1, 2, 3, 5, 7):
            cut = len(image) * fraction // 8
            yield image[:cut]
            flipped = bytearray(image)
            flipped[cut] ^= 0x5A
            yield bytes(flipped)
        yield image + b"\x00"


CORPUS = list(_corpus())


def test_the_target_accepts_the_seed_corpus() -> None:
    target = _target()
    assert len(CORPUS) > 150
    for data in CORPUS:
        target(data)


def test_the_target_reports_other_exceptions(monkeypatch: pytest.MonkeyPatch) -> None:
    target = _target()
    from trustroot.image import verify

    def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError

    monkeypatch.setattr(verify, "_verify", broken)
    with pytest.raises(ZeroDivisionError):
        target(CORPUS[4])
