"""Publish a signed firmware image as a release: verify it, refuse a downgrade, sign TUF, record it.

:func:`publish_release` is what ``trustroot release publish IMAGE --channel stable`` runs, on the
operator's machine that holds the product's keys::

    read IMAGE (at most [boot] slot_size bytes)
      ─► verify_image: MCUboot hash and signature under a firmware-signing key of the
         product (active or retired, never revoked)                          refused: 5.3-10
      ─► a security counter, not below the channel's highest one           refused: 5.3-7
      ─► TUF: target <channel>/<name>-<version>.img with its custom metadata,
         new targets + snapshot + timestamp (the repository is created on the first
         publish: root v1 is signed by the offline update-root key)
      ─► store: one row in ``releases`` (what rollouts refer to)
      ─► evidence: ``release.published`` in the PRODUCT's evidence log

Publishing is recorded in the product's evidence log only (it is done with the product's keys, from
the command line); rollout changes are recorded in the service's audit chain only. Publishing the
same image again is idempotent: nothing changes and no second record is written.

Errors: :class:`~trustroot.errors.PolicyRefusal` (image does not verify, downgrade, a published
name reused with other bytes), :class:`~trustroot.errors.UsageError` (unknown channel),
:class:`~trustroot.errors.UnreadableInputError` (the image cannot be read), and the key store's
errors (wrong passphrase).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from sqlalchemy import func, select

from trustroot._fsutil import read_bounded
from trustroot._mcuboot import ImageVerificationError
from trustroot.errors import PolicyRefusal, StateError, UsageError
from trustroot.fleet.releases.models import Release
from trustroot.fleet.releases.repository import REPOSITORY_SUBDIR, ExpiryPolicy, ReleaseRepository
from trustroot.fleet.rollouts import ReleaseView
from trustroot.fleet.store.db import Store
from trustroot.image.verify import verify_image
from trustroot.keys._interface import KeyHandle, KeyRole, KeyStatus
from trustroot.product import Product

__all__ = [
    "PublishedRelease",
    "firmware_public_keys",
    "open_repository",
    "publish_release",
    "release_name",
    "repository_path",
]

_NAME: Final = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


@dataclass(frozen=True)
class PublishedRelease:
    """The outcome of a publish."""

    release: ReleaseView
    #: The repository was created by this publish (root v1 signed).
    created_repository: bool
    #: The same image was published already: nothing changed.
    already_published: bool
    #: Version and expiry of each TUF role after the publish.
    tuf: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "release": self.release.as_dict(),
            "created_repository": self.created_repository,
            "already_published": self.already_published,
            "tuf": self.tuf,
        }


def repository_path(product: Product) -> Path:
    """The product's TUF repository: ``.trustroot/releases/tuf``."""
    return product.state_dir / REPOSITORY_SUBDIR


def open_repository(product: Product, *, create: bool = False) -> tuple[ReleaseRepository, bool]:
    """The product's repository, made first (root signed with the offline key) if ``create``; (repo, made)."""
    policy = ExpiryPolicy.from_context(product.context.model.update)
    path = repository_path(product)
    if ReleaseRepository.exists(path):
        return ReleaseRepository.open(path, product.keys, policy), False
    if not create:
        return ReleaseRepository.open(path, product.keys, policy), False  # raises StateError with the hint
    return ReleaseRepository.create(path, product.keys, policy, product.clock()), True


def firmware_public_keys(product: Product) -> list[PublicKeyTypes]:
    """Public keys of every firmware-signing key that still counts: active and retired, not revoked."""
    keys = [
        serialization.load_pem_public_key(info.public_pem.encode("ascii"))
        for info in product.keys.list()
        if info.role is KeyRole.FIRMWARE_SIGNING and info.status is not KeyStatus.REVOKED and info.public_pem
    ]
    if not keys:
        raise StateError("the key store holds no firmware-signing key: no image can be verified")
    return keys


def release_name(product: Product) -> str:
    """The default release name: the product's model designation as a lower-case slug."""
    slug = re.sub(r"[^a-z0-9._-]+", "-", product.context.model.product.model.lower()).strip("-._")
    return slug or "firmware"


def _decryption_key(product: Product) -> KeyHandle | None:
    if product.context.model.boot.encryption == "none":
        return None
    return product.keys.unlock(product.keys.active(KeyRole.IMAGE_ENCRYPTION).name)


def publish_release(
    product: Product,
    image: Path,
    *,
    channel: str,
    store: Store,
    name: str | None = None,
) -> PublishedRelease:
    """Publish the signed image at ``image`` on ``channel`` (see the module docstring)."""
    model = product.context.model
    if channel not in model.update.channels:
        raise UsageError(
            f"channel {channel!r} is not one of the product's update channels ({', '.join(model.update.channels)})",
            hint="add it to [update] channels in security-context.toml",
        )
    name = name or release_name(product)
    if _NAME.fullmatch(name) is None:
        raise UsageError(f"release name {name!r}: use 1 to 64 of a-z, 0-9, '.', '_', '-'")
    data = read_bounded(Path(image), model.boot.slot_size, what="firmware image")
    try:
        verified = verify_image(data, keys=firmware_public_keys(product), enc_key=_decryption_key(product))
    except ImageVerificationError as exc:
        raise PolicyRefusal(
            f"image {image} is not published: {exc.message}",
            provision="5.3-10",
            hint="sign it with the product's firmware-signing key: trustroot image sign",
        ) from exc
    counter = verified.security_counter
    if counter is None:
        if model.boot.anti_rollback:
            raise PolicyRefusal(
                f"image {image} has no security counter, so devices could not refuse a later downgrade",
                provision="5.3-7",
                hint="sign it with --security-counter N",
            )
        counter = 0
    version = str(verified.version)
    sha256 = hashlib.sha256(data).hexdigest()
    target_path = f"{channel}/{name}-{version}.img"
    repo, created = open_repository(product, create=True)
    now = product.clock()
    with store.transaction() as session:
        existing = session.scalar(
            select(Release).where(
                (Release.target_path == target_path) | ((Release.channel == channel) & (Release.version == version))
            )
        )
        if existing is not None:
            if existing.sha256 != sha256:
                raise PolicyRefusal(
                    f"version {version} is published on channel {channel!r} already (as {existing.target_path}) "
                    "with other content; a release is never replaced",
                    hint="publish under a new version",
                )
            return PublishedRelease(ReleaseView.of(existing), created, True, _tuf_status(repo))
        highest = session.scalar(select(func.max(Release.security_counter)).where(Release.channel == channel))
        if highest is not None and counter < highest:
            raise PolicyRefusal(
                f"security counter {counter} of {version} is below {highest}, the highest already published on "
                f"channel {channel!r}: a downgrade is never published",
                provision="5.3-7",
                hint="sign the image with a security counter at least as high as the channel's",
            )
        end = model.product.support_period_end
        target = repo.add_target(
            target_path,
            data,
            channel=channel,
            version=version,
            security_counter=counter,
            now=now,
            support_period_end=end,
        )
        row = Release(
            channel=channel,
            name=name,
            version=version,
            security_counter=counter,
            sha256=sha256,
            size=len(data),
            target_path=target.path,
            published_at=now,
            published_by=product.actor,
            support_period_end=end.isoformat() if end else None,
        )
        session.add(row)
        session.flush()
        view = ReleaseView.of(row)
    tuf = _tuf_status(repo)
    product.record(
        "release.published",
        target_path,
        {
            "release_id": view.id,
            "channel": channel,
            "name": name,
            "version": version,
            "security_counter": counter,
            "sha256": sha256,
            "size": len(data),
            "image_key_id": verified.key_id,
            "image_algorithm": verified.algorithm,
            "encrypted": verified.encrypted,
            "support_period_end": view.support_period_end,
            "after_support_period": end is not None and now.date() > end,
            "repository_created": created,
            "tuf": {entry["role"]: entry["version"] for entry in tuf},
        },
    )
    return PublishedRelease(view, created, False, tuf)


def _tuf_status(repo: ReleaseRepository) -> list[dict[str, Any]]:
    return [
        {"role": status.role, "version": status.version, "expires": status.expires.isoformat().replace("+00:00", "Z")}
        for status in repo.status()
    ]
