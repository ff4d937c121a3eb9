"""Shamir secret sharing over GF(2^8) and the custodian share text."""

from __future__ import annotations

import hashlib
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trustroot.errors import BackupError
from trustroot.keys import shamir
from trustroot.keys.shamir import Share, combine, parse_share, split
from trustroot.limits import Limits

SECRET = bytes(range(32))
BACKUP_ID = "00112233445566778899aabbccddeeff"


def ref_mul(a: int, b: int) -> int:
    """Schoolbook carry-less product reduced by 0x11b: an independent reference."""
    product = 0
    for bit in range(8):
        if b >> bit & 1:
            product ^= a << bit
    for bit in range(14, 7, -1):
        if product >> bit & 1:
            product ^= 0x11B << (bit - 8)
    return product


def ref_eval(coefficients: list[int], x: int) -> int:
    total, power = 0, 1
    for coefficient in coefficients:
        total ^= ref_mul(coefficient, power)
        power = ref_mul(power, x)
    return total


def with_checksum(body: str) -> str:
    return f"{body}:{hashlib.sha256(body.encode()).hexdigest()[:8]}"


# ------------------------------------------------------------------------------------------- arithmetic


def test_reference_matches_fips197() -> None:
    assert ref_mul(0x57, 0x83) == 0xC1  # FIPS-197 §4.2
    assert ref_mul(0x53, 0xCA) == 0x01  # FIPS-197 §5.1.1: {53}^-1 = {ca}


def test_bitsliced_scale_matches_reference_for_every_pair() -> None:
    lanes = shamir._Lanes(256)
    everything = lanes.pack(bytes(range(256)))
    for factor in range(256):
        scaled = lanes.unpack(lanes.scale(everything, factor))
        assert scaled == bytes(ref_mul(a, factor) for a in range(256)), factor


def test_tables_and_weights() -> None:
    assert sorted(shamir._EXP[:255]) == list(range(1, 256))
    for a in range(1, 256):
        assert shamir._EXP[shamir._LOG[a]] == a
    # interpolating at a known x-coordinate gives that point alone weight 1
    assert shamir._weight(3, 3, [1, 2]) == 1
    assert shamir._weight(3, 1, [3, 2]) == 0


def test_combine_recovers_a_hand_made_polynomial() -> None:
    # one byte per lane, polynomials chosen here and evaluated by the reference code
    polys = [[0x42, 0x17, 0xA9], [0x00, 0xFF, 0x01], [0xFF, 0x00, 0x00]]
    shares = [Share(BACKUP_ID, x, 3, 4, bytes(ref_eval(poly, x) for poly in polys)) for x in range(1, 5)]
    for subset in itertools.combinations(shares, 3):
        assert combine(subset) == bytes([0x42, 0x00, 0xFF])


# ------------------------------------------------------------------------------------------ split/combine


def test_every_threshold_subset_recovers_and_smaller_ones_refuse() -> None:
    shares = split(SECRET, 3, 5)
    assert {s.backup_id for s in shares} == {shares[0].backup_id}
    assert [s.index for s in shares] == [1, 2, 3, 4, 5]
    for size in (3, 4, 5):
        for subset in itertools.combinations(shares, size):
            assert combine(reversed(subset)) == SECRET
    for subset in itertools.combinations(shares, 2):
        with pytest.raises(BackupError, match="needs 3 of its 5 shares, only 2 given"):
            combine(subset)


def test_extremes() -> None:
    assert combine(split(b"k", 2, 2)) == b"k"
    big = split(b"\x80\x01", 255, 255)
    assert combine(big[::-1]) == b"\x80\x01"
    assert len({s.value for s in split(SECRET, 2, 255)}) == 255


def test_split_refusals() -> None:
    for threshold, count in ((1, 3), (4, 3), (2, 256), (0, 0)):
        with pytest.raises(BackupError, match="a split needs 2 <= threshold <= shares <= 255"):
            split(SECRET, threshold, count)
    with pytest.raises(BackupError, match="must be 1 to 4096 bytes, got 0"):
        split(b"", 2, 3)
    with pytest.raises(BackupError, match="got 4097"):
        split(bytes(4097), 2, 3)


def test_combine_refusals() -> None:
    first, second = split(SECRET, 2, 3), split(SECRET, 2, 3)
    with pytest.raises(BackupError, match="no shares given"):
        combine([])
    with pytest.raises(BackupError, match="belong to different backups"):
        combine([first[0], second[1]])
    with pytest.raises(BackupError, match="is given more than once"):
        combine([first[0], first[0]])
    with pytest.raises(BackupError, match="is given more than once"):
        combine([first[0], Share(first[0].backup_id, 1, 2, 3, bytes(32))])
    odd = Share(first[0].backup_id, 2, 2, 4, first[1].value)
    with pytest.raises(BackupError, match="from different splits"):
        combine([first[0], odd])
    short = Share(first[0].backup_id, 2, 2, 3, first[1].value[:16])
    with pytest.raises(BackupError, match="from different splits"):
        combine([first[0], short])
    damaged = Share(first[0].backup_id, 3, 2, 3, bytes(b ^ 1 for b in first[2].value))
    with pytest.raises(BackupError, match="do not agree: at least one is damaged"):
        combine([first[0], first[1], damaged])


def test_share_validation_and_repr() -> None:
    cases = [
        ("XYZ", 1, 2, 3, b"v", "32 lower-case hex digits"),
        (BACKUP_ID, 0, 2, 3, b"v", "share index 0 is outside 1..3"),
        (BACKUP_ID, 4, 2, 3, b"v", "share index 4 is outside 1..3"),
        (BACKUP_ID, 1, 1, 3, b"v", "threshold 1 and count 3"),
        (BACKUP_ID, 1, 3, 2, b"v", "threshold 3 and count 2"),
        (BACKUP_ID, 1, 2, 3, b"", "a share value must be 1 to 4096 bytes"),
    ]
    for backup_id, index, threshold, count, value, message in cases:
        with pytest.raises(BackupError, match=message):
            Share(backup_id, index, threshold, count, value)
    share = Share(BACKUP_ID, 1, 2, 3, b"top-secret-value")
    assert "top-secret" not in repr(share)
    assert share.label == "share 1-of-3 of backup 00112233"


# ----------------------------------------------------------------------------------------------- text


def test_text_round_trip_and_tolerated_forms() -> None:
    share = split(SECRET, 3, 5)[3]
    text = share.to_text()
    fields = text.split(":")
    assert fields[0] == "trustroot-share-v1"
    assert fields[2] == "4-of-5"
    assert fields[3] == "3"
    assert "=" not in text
    assert parse_share(text) == share
    assert parse_share(text.encode()) == share
    prefix, backup_id, position, threshold, value, checksum = fields
    shouting = ":".join([prefix, backup_id.upper(), position, threshold, value.lower(), checksum.upper()])
    assert parse_share(shouting) == share
    framed = f"# custodian: Alice\n\n  {text}  \n# keep offline\n"
    assert parse_share(framed, source="alice.txt") == share


@pytest.mark.parametrize(("field", "offset"), [(1, 5), (4, 0), (4, 25), (4, 51), (5, 7)])
def test_typo_is_refused_naming_the_share(field: int, offset: int) -> None:
    fields = split(SECRET, 3, 5)[1].to_text().split(":")
    original = fields[field][offset]
    fields[field] = fields[field][:offset] + ("7" if original != "7" else "2") + fields[field][offset + 1 :]
    with pytest.raises(BackupError, match=r"^custodian-2\.txt: checksum mismatch, the share was mistyped"):
        parse_share(":".join(fields), source="custodian-2.txt")


def test_typo_in_index_is_refused() -> None:
    text = split(SECRET, 3, 5)[1].to_text()
    with pytest.raises(BackupError, match="claims to be share 3-of-5"):
        parse_share(text.replace(":2-of-5:", ":3-of-5:"), source="bob")


MALFORMED = [
    pytest.param("hello", "not a trustroot share", id="not a share"),
    pytest.param("trustroot-share-v2:a:b:c:d:e", "unsupported share format 'trustroot-share-v2'", id="v2"),
    pytest.param("trustroot-share-v1:a:b", "6 ':'-separated fields, found 3", id="fields"),
    pytest.param(with_checksum(f"trustroot-share-v1:{BACKUP_ID[:30]}:1-of-3:2:AE"), "backup id", id="short id"),
    pytest.param(with_checksum(f"trustroot-share-v1:{BACKUP_ID}:01-of-3:2:AE"), "malformed index", id="index 01"),
    pytest.param(with_checksum(f"trustroot-share-v1:{BACKUP_ID}:1of3:2:AE"), "malformed index", id="index"),
    pytest.param(with_checksum(f"trustroot-share-v1:{BACKUP_ID}:1-of-3:x:AE"), "malformed index", id="threshold"),
    pytest.param(with_checksum(f"trustroot-share-v1:{BACKUP_ID}:1-of-3:2:A1"), "not base32", id="alphabet"),
    pytest.param(with_checksum(f"trustroot-share-v1:{BACKUP_ID}:1-of-3:2:A"), "not valid base32", id="length"),
    pytest.param(with_checksum(f"trustroot-share-v1:{BACKUP_ID}:1-of-3:2:AF"), "not canonical", id="trailing bits"),
    pytest.param(with_checksum(f"trustroot-share-v1:{BACKUP_ID}:4-of-3:2:AE"), "index 4 is outside", id="range"),
    pytest.param(with_checksum(f"trustroot-share-v1:{BACKUP_ID}:1-of-3:1:AE"), "threshold 1 and", id="t=1"),
    pytest.param("a\nb", "expected one share line, found 2", id="two lines"),
    pytest.param("# only a comment\n", "expected one share line, found 0", id="empty"),
    pytest.param("trustroot-share-v1:é", "non-ASCII", id="non-ascii"),
]


@pytest.mark.parametrize(("text", "message"), MALFORMED)
def test_malformed_share_text(text: str, message: str) -> None:
    with pytest.raises(BackupError, match=f"^carol: .*{message}"):
        parse_share(text, source="carol")


def test_share_file_size_limit() -> None:
    text = split(SECRET, 2, 3)[0].to_text()
    with pytest.raises(BackupError, match="larger than the limit of 50 bytes"):
        parse_share(text, limits=Limits(max_share_file_bytes=50))


# ------------------------------------------------------------------------------------------- properties


@settings(max_examples=60, deadline=None)
@given(data=st.data(), secret=st.binary(min_size=1, max_size=64), count=st.integers(2, 16))
def test_property_split_combine_round_trip(data: st.DataObject, secret: bytes, count: int) -> None:
    threshold = data.draw(st.integers(2, count), label="threshold")
    shares = split(secret, threshold, count)
    subset = data.draw(st.permutations(shares), label="order")[: data.draw(st.integers(threshold, count))]
    assert combine(subset) == secret
    if threshold > 2:
        with pytest.raises(BackupError, match="only"):
            combine(subset[: threshold - 1])
    picked = data.draw(st.sampled_from(shares), label="share")
    assert parse_share(picked.to_text()) == picked
