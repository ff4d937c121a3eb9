"""KeyHandleSigner: TUF metadata signed through a trustroot key handle verifies in securesystemslib."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from securesystemslib.exceptions import UnverifiedSignatureError
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata

from trustroot._tuf_api import Root, SSlibKey, Timestamp
from trustroot.errors import KeyStateError
from trustroot.fleet.releases.signer import TUF_SCHEMES, KeyHandleSigner, tuf_key, tuf_key_from_info
from trustroot.keys._interface import Algorithm, KeyRole
from trustroot.keys.filestore import FileBackend
from trustroot.keys.passphrase import fixed_secrets
from trustroot.keys.store import KeyStore, forget_unlocked_keys

PAYLOAD = b'{"_type":"timestamp","version":7}'


@pytest.fixture
def keys(tmp_path: Path) -> Iterator[KeyStore]:
    secrets = fixed_secrets("unit-test-store-passphrase")
    yield KeyStore(tmp_path / "keys", {"file": FileBackend(tmp_path / "keys", secrets)}, "file")
    forget_unlocked_keys()


@pytest.mark.parametrize("algorithm", list(TUF_SCHEMES), ids=str)
def test_signatures_verify_under_the_tuf_key(keys: KeyStore, algorithm: Algorithm) -> None:
    info = keys.create(KeyRole.UPDATE_TIMESTAMP, algorithm)
    signer = KeyHandleSigner(keys.unlock(info.name))
    keytype, scheme = TUF_SCHEMES[algorithm]
    public = signer.public_key
    assert isinstance(public, SSlibKey)
    assert (public.keytype, public.scheme) == (keytype, scheme)
    # the key id is securesystemslib's default (the same from the handle and from the index)
    assert tuf_key_from_info(info) == public == tuf_key(keys.unlock(info.name))
    assert signer.keyid == public.keyid
    signature = signer.sign(PAYLOAD)
    assert signature.keyid == public.keyid
    public.verify_signature(signature, PAYLOAD)
    with pytest.raises(UnverifiedSignatureError):
        public.verify_signature(signature, PAYLOAD + b" ")


@pytest.mark.parametrize("algorithm", [Algorithm.ED25519, Algorithm.ECDSA_P256], ids=str)
def test_metadata_signed_through_the_adapter_satisfies_root(keys: KeyStore, algorithm: Algorithm) -> None:
    info = keys.create(KeyRole.UPDATE_TIMESTAMP, algorithm)
    signer = KeyHandleSigner(keys.unlock(info.name))
    root = Root(expires=datetime.now(UTC) + timedelta(days=1))
    root.add_key(signer.public_key, Timestamp.type)
    metadata = Metadata(Timestamp(expires=datetime.now(UTC) + timedelta(hours=1)))
    metadata.sign(signer)
    root.verify_delegate(Timestamp.type, metadata.signed_bytes, metadata.signatures)
    # a change after signing no longer satisfies root
    metadata.signed.version += 1
    with pytest.raises(UnsignedMetadataError, match="timestamp was signed by 0/1 keys"):
        root.verify_delegate(Timestamp.type, metadata.signed_bytes, metadata.signatures)


def test_a_retired_key_no_longer_signs_metadata(keys: KeyStore) -> None:
    old = keys.create(KeyRole.UPDATE_TARGETS, Algorithm.ED25519)
    signer = KeyHandleSigner(keys.unlock(old.name))
    keys.rotate(KeyRole.UPDATE_TARGETS)
    metadata = Metadata(Timestamp(expires=datetime.now(UTC) + timedelta(hours=1)))
    with pytest.raises(UnsignedMetadataError) as caught:
        metadata.sign(signer)
    assert isinstance(caught.value.__cause__, KeyStateError)
    assert "retired" in str(caught.value.__cause__)


@pytest.mark.parametrize(
    ("role", "algorithm"),
    [(KeyRole.IMAGE_ENCRYPTION, Algorithm.ECIES_P256), (KeyRole.FACTORY_SECRET, Algorithm.HMAC_SHA256)],
    ids=["ecies", "hmac"],
)
def test_keys_that_cannot_sign_tuf_metadata_are_refused(keys: KeyStore, role: KeyRole, algorithm: Algorithm) -> None:
    info = keys.create(role, algorithm)
    with pytest.raises(KeyStateError, match="cannot sign TUF metadata"):
        KeyHandleSigner(keys.unlock(info.name))
    with pytest.raises(KeyStateError, match="cannot sign TUF metadata"):
        tuf_key_from_info(info)


def test_a_signer_is_never_made_from_a_uri(keys: KeyStore) -> None:
    info = keys.create(KeyRole.UPDATE_SNAPSHOT, Algorithm.ED25519)
    with pytest.raises(ValueError, match="not from a private key URI"):
        KeyHandleSigner.from_priv_key_uri("file:/tmp/key", tuf_key_from_info(info))
    assert "update-snapshot-1" in repr(KeyHandleSigner(keys.unlock(info.name)))
