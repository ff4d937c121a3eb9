"""The TUF repository of a product's releases, on disk, signed with the product's update keys.

Layout (``.trustroot/releases/tuf/`` of the product; consistent snapshots)::

    metadata/
      1.root.json  2.root.json ...     every root version (clients walk them one by one)
      N.targets.json                   every targets version, by version
      N.snapshot.json                  every snapshot version, by version
      timestamp.json                   the one unversioned file: the commit point of a change
    targets/
      stable/<sha256>.<name>-<version>.img      hash-prefixed target files, one directory per channel
    .lock                              writers (the CLI, every service worker) serialise here

A change writes the new target file, then ``N+1.targets.json``, ``M+1.snapshot.json`` and last
``timestamp.json``, each atomically (temp file + rename). Readers that race a writer see the old
or the new repository, never a mix: nothing is referenced before it exists, and old versions
stay (a client part-way through an update still finds the versions it was told about).

Roles, keys and lifetimes::

    role        key (store role)     passphrase   signed when                         lifetime
    ─────────   ──────────────────   ──────────   ─────────────────────────────────   ────────────────────
    root        update-root          root         creation, key change (offline)      365 days
    targets     update-targets       store        every publish; renewed by refresh   30 days
    snapshot    update-snapshot      store        every change; renewed by refresh    7 days
    timestamp   update-timestamp     store        every change; renewed by refresh    timestamp_expiry_hours

:func:`refresh_timestamp` (the service calls it periodically, see
:attr:`ExpiryPolicy.refresh_interval`) re-signs a role once less than ``renew_fraction`` of its
lifetime is left, so a short timestamp lifetime bounds how long a device can be kept on stale
metadata (the freeze attack) without anyone having to act.

Every release target carries custom metadata (``format`` ``trustroot.release/1``): the image's
version and security counter, its channel, its SHA-256, the product's support period end (5.3-13)
and the publication time. :func:`channel_counter` reads the highest counter of a channel from the
signed targets metadata.

Errors (from :mod:`trustroot.errors`)::

    StateError      the repository is missing, exists already, or its metadata is damaged, or an
                    update key in the store is not the key the root trusts for its role
    UsageError      a target path, channel or custom field is malformed
    PolicyRefusal   a target that is already published with other content
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final, cast

from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata
from tuf.api.serialization import DeserializationError, SerializationError
from tuf.api.serialization.json import JSONSerializer

from trustroot._fsutil import atomic_write, exclusive_lock, read_bounded
from trustroot._tuf_api import MetaFile, Root, Signed, Signer, Snapshot, TargetFile, Targets, Timestamp
from trustroot.context.schema import Update
from trustroot.errors import PolicyRefusal, StateError, TrustrootError, UnreadableInputError, UsageError
from trustroot.fleet.releases.signer import KeyHandleSigner, tuf_key_from_info
from trustroot.keys._interface import KeyRole
from trustroot.keys.store import KeyStore

__all__ = [
    "CUSTOM_FORMAT",
    "KEY_ROLES",
    "METADATA_DIR",
    "REPOSITORY_SUBDIR",
    "ROOT_WARNING",
    "TARGETS_DIR",
    "TARGET_PATH_PATTERN",
    "ExpiryPolicy",
    "ReleaseRepository",
    "ReleaseTarget",
    "RoleStatus",
    "SignerSource",
    "channel_counter",
    "keystore_signers",
    "refresh_timestamp",
    "release_target",
]

_log = logging.getLogger(__name__)

#: ``format`` of the custom metadata of every release target.
CUSTOM_FORMAT: Final = "trustroot.release/1"
#: Where a product keeps its repository, under its state directory (``.trustroot``).
REPOSITORY_SUBDIR: Final = "releases/tuf"
METADATA_DIR: Final = "metadata"
TARGETS_DIR: Final = "targets"
_LOCK_FILE = ".lock"
#: ``<channel>/<name>-<version>.img``-like paths: a channel slug, one file name, no dot segments.
TARGET_PATH_PATTERN: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}/[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_VERSIONED = re.compile(r"([1-9][0-9]{0,9})\.root\.json")

#: TUF role -> the key store role whose active key signs it.
KEY_ROLES: Final[Mapping[str, KeyRole]] = {
    Root.type: KeyRole.UPDATE_ROOT,
    Targets.type: KeyRole.UPDATE_TARGETS,
    Snapshot.type: KeyRole.UPDATE_SNAPSHOT,
    Timestamp.type: KeyRole.UPDATE_TIMESTAMP,
}
#: Upper bound on any metadata file this module reads back (python-tuf's client limits are lower
#: for timestamp; targets grows with releases).
_MAX_METADATA_BYTES = 5_000_000
_HASHES = ["sha256"]
#: :meth:`ReleaseRepository.refresh` warns when root expires sooner than this (it cannot re-sign it).
ROOT_WARNING: Final = timedelta(days=30)
_SERIALIZER = JSONSerializer(compact=False)

#: A source of signers by TUF role name (``"root"``, ``"targets"``, ``"snapshot"``, ``"timestamp"``).
SignerSource = Callable[[str], Signer]


def keystore_signers(keys: KeyStore) -> SignerSource:
    """Signers over the active update keys of ``keys`` (each unlocked on first use, once per process)."""

    def signer(role: str) -> Signer:
        info = keys.active(KEY_ROLES[role])
        return KeyHandleSigner(keys.unlock(info.name))

    return signer


@dataclass(frozen=True)
class ExpiryPolicy:
    """Lifetimes of the four roles and when :func:`refresh_timestamp` renews them."""

    timestamp: timedelta = timedelta(hours=24)
    snapshot: timedelta = timedelta(days=7)
    targets: timedelta = timedelta(days=30)
    root: timedelta = timedelta(days=365)
    #: A role is re-signed once less than this share of its lifetime is left.
    renew_fraction: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.renew_fraction < 1:
            raise UsageError(f"renew_fraction {self.renew_fraction}: must lie strictly between 0 and 1")
        for name in ("timestamp", "snapshot", "targets", "root"):
            if getattr(self, name) <= timedelta(0):
                raise UsageError(f"the {name} lifetime must be positive")

    @classmethod
    def from_context(cls, update: Update) -> ExpiryPolicy:
        """The policy for a product: the timestamp lifetime from ``[update] timestamp_expiry_hours``."""
        return cls(timestamp=timedelta(hours=update.timestamp_expiry_hours))

    def lifetime(self, role: str) -> timedelta:
        return cast(timedelta, getattr(self, role))

    @property
    def refresh_interval(self) -> timedelta:
        """How often the service should call :func:`refresh_timestamp`: a quarter of the renewal window."""
        return self.timestamp * self.renew_fraction / 4


@dataclass(frozen=True)
class RoleStatus:
    """Version and expiry of one role's current metadata."""

    role: str
    version: int
    expires: datetime

    def remaining(self, now: datetime) -> timedelta:
        return self.expires - now


@dataclass(frozen=True)
class ReleaseTarget:
    """A release target as published: its TUF path, length, hash and the trustroot custom fields."""

    path: str
    length: int
    sha256: str
    channel: str
    version: str
    security_counter: int
    published: str
    support_period_end: str | None

    def custom(self) -> dict[str, Any]:
        """The custom metadata stored in targets.json for this target."""
        return {
            "format": CUSTOM_FORMAT,
            "channel": self.channel,
            "version": self.version,
            "security_counter": self.security_counter,
            "sha256": self.sha256,
            "published": self.published,
            "support_period_end": self.support_period_end,
        }


def _require(condition: bool, path: str, what: str) -> None:
    if not condition:
        raise StateError(f"TUF target {path!r}: custom metadata field {what}")


def release_target(target: TargetFile) -> ReleaseTarget:
    """The trustroot view of a TUF target; :class:`StateError` if its custom metadata is not ours."""
    custom = target.custom
    path = target.path
    is_ours = isinstance(custom, dict) and custom.get("format") == CUSTOM_FORMAT
    _require(is_ours, path, f"'format' is not {CUSTOM_FORMAT}")
    fields = cast(dict[str, Any], custom)
    counter = fields.get("security_counter")
    if type(counter) is not int or not 0 <= counter < 2**32:
        raise StateError(f"TUF target {path!r}: custom metadata field 'security_counter' is not a 32-bit counter")
    for key in ("channel", "version", "sha256", "published"):
        _require(isinstance(fields.get(key), str), path, f"{key!r} is missing")
    _require(_HEX64.fullmatch(fields["sha256"]) is not None, path, "'sha256' is not a SHA-256 hex digest")
    _require(target.hashes.get("sha256") == fields["sha256"], path, "'sha256' differs from the TUF hash")
    end = fields.get("support_period_end")
    _require(end is None or isinstance(end, str), path, "'support_period_end' is not a date")
    return ReleaseTarget(
        path=path,
        length=target.length,
        sha256=fields["sha256"],
        channel=fields["channel"],
        version=fields["version"],
        security_counter=counter,
        published=fields["published"],
        support_period_end=end,
    )


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise UsageError("times given to the release repository must be timezone-aware")
    return moment.astimezone(UTC)


class ReleaseRepository:
    """One product's TUF repository in ``directory`` (see the module docstring for the layout).

    Use :meth:`create` once (it signs root with the offline ``update-root`` key), then
    :meth:`open`. Every write holds the repository lock; reads need none.
    """

    def __init__(self, directory: Path, signers: SignerSource, expiry: ExpiryPolicy) -> None:
        self.directory = Path(directory)
        self._signers = signers
        self.expiry = expiry

    def __repr__(self) -> str:
        return f"ReleaseRepository({str(self.directory)!r})"

    # --- making and opening ------------------------------------------------------------------------

    @property
    def metadata_dir(self) -> Path:
        return self.directory / METADATA_DIR

    @property
    def targets_dir(self) -> Path:
        return self.directory / TARGETS_DIR

    @staticmethod
    def exists(directory: Path) -> bool:
        """Whether a repository was created in ``directory``."""
        return (Path(directory) / METADATA_DIR / "1.root.json").is_file()

    @classmethod
    def open(
        cls,
        directory: Path,
        keys: KeyStore,
        expiry: ExpiryPolicy,
        *,
        signers: SignerSource | None = None,
    ) -> ReleaseRepository:
        """The repository in ``directory``; :class:`StateError` if none was created there."""
        if not cls.exists(directory):
            raise StateError(
                f"{directory}: no TUF release repository",
                hint="publish a first release with: trustroot release publish IMAGE --channel stable",
            )
        return cls(directory, signers or keystore_signers(keys), expiry)

    @classmethod
    def create(
        cls,
        directory: Path,
        keys: KeyStore,
        expiry: ExpiryPolicy,
        now: datetime,
        *,
        signers: SignerSource | None = None,
    ) -> ReleaseRepository:
        """Make a new repository: root v1 (signed by the offline root key), empty targets, snapshot, timestamp.

        The root names the active ``update-*`` keys of ``keys``, threshold 1 each. Refuses a
        directory that already holds a repository.
        """
        now = _utc(now)
        repo = cls(directory, signers or keystore_signers(keys), expiry)
        with repo._locked():
            if cls.exists(directory):
                raise StateError(f"{directory}: a TUF release repository exists already; refusing to replace its root")
            root = Root(version=1, expires=now + expiry.root, consistent_snapshot=True)
            for role, key_role in KEY_ROLES.items():
                root.add_key(tuf_key_from_info(keys.active(key_role)), role)
            repo.targets_dir.mkdir(parents=True, exist_ok=True)
            targets = Targets(version=1, expires=now + expiry.targets)
            # Everything else first; 1.root.json last, so a failure leaves no half repository.
            targets_bytes = repo._sign(Metadata(targets), root)
            repo._write(f"1.{Targets.type}.json", targets_bytes)
            snapshot = Snapshot(
                version=1,
                expires=now + expiry.snapshot,
                meta={"targets.json": MetaFile.from_data(1, targets_bytes, _HASHES)},
            )
            snapshot_bytes = repo._sign(Metadata(snapshot), root)
            repo._write(f"1.{Snapshot.type}.json", snapshot_bytes)
            timestamp = Timestamp(
                version=1, expires=now + expiry.timestamp, snapshot_meta=MetaFile.from_data(1, snapshot_bytes, _HASHES)
            )
            repo._write(f"{Timestamp.type}.json", repo._sign(Metadata(timestamp), root))
            repo._write("1.root.json", repo._sign(Metadata(root), root))
        _log.info("created TUF repository %s (root v1, expires %s)", directory, root.expires.isoformat())
        return repo

    # --- reading -----------------------------------------------------------------------------------

    def root_version(self) -> int:
        """The newest root version in the repository."""
        versions = [
            int(match.group(1))
            for path in self.metadata_dir.glob("*.root.json")
            if (match := _VERSIONED.fullmatch(path.name)) is not None
        ]
        if not versions:
            raise StateError(f"{self.metadata_dir}: no root metadata")
        return max(versions)

    def root_bytes(self, version: int | None = None) -> bytes:
        """The signed root metadata (the newest unless ``version``): what a device is given as trust anchor."""
        number = self.root_version() if version is None else version
        return self._read(f"{number}.root.json")

    def root(self) -> Root:
        return self._load_root(self.root_bytes())

    def timestamp(self) -> Metadata[Timestamp]:
        metadata: Metadata[Timestamp] = self._metadata(Timestamp, f"{Timestamp.type}.json")
        return metadata

    def snapshot(self) -> Metadata[Snapshot]:
        version = self.timestamp().signed.snapshot_meta.version
        metadata: Metadata[Snapshot] = self._metadata(Snapshot, f"{version}.{Snapshot.type}.json")
        return metadata

    def targets(self) -> Metadata[Targets]:
        meta = self.snapshot().signed.meta.get("targets.json")
        if meta is None:
            raise StateError(f"{self.metadata_dir}: the snapshot does not list targets.json")
        metadata: Metadata[Targets] = self._metadata(Targets, f"{meta.version}.{Targets.type}.json")
        return metadata

    def status(self) -> list[RoleStatus]:
        """Version and expiry of each role's current metadata (root first)."""
        root = self.root()
        timestamp = self.timestamp().signed
        snapshot = self.snapshot().signed
        targets = self.targets().signed
        return [
            RoleStatus(Root.type, root.version, root.expires),
            RoleStatus(Targets.type, targets.version, targets.expires),
            RoleStatus(Snapshot.type, snapshot.version, snapshot.expires),
            RoleStatus(Timestamp.type, timestamp.version, timestamp.expires),
        ]

    def release_targets(self, channel: str | None = None) -> list[ReleaseTarget]:
        """Every published release target (of ``channel``), lowest security counter first."""
        found = [release_target(target) for target in self.targets().signed.targets.values()]
        if channel is not None:
            found = [target for target in found if target.channel == channel]
        return sorted(found, key=lambda t: (t.security_counter, t.published, t.path))

    def target_file(self, target: ReleaseTarget) -> Path:
        """Where the bytes of ``target`` lie (hash-prefixed)."""
        parent, _, name = target.path.rpartition("/")
        return self.targets_dir / parent / f"{target.sha256}.{name}"

    # --- changing ----------------------------------------------------------------------------------

    def add_target(
        self,
        path: str,
        data: bytes,
        *,
        channel: str,
        version: str,
        security_counter: int,
        now: datetime,
        support_period_end: date | None = None,
    ) -> ReleaseTarget:
        """Publish ``data`` as target ``path``: new targets, snapshot and timestamp versions.

        Publishing the same bytes at the same path again changes nothing and returns the target;
        other bytes at a published path are refused (:class:`PolicyRefusal`): a release is never
        replaced under the same name. So is a security counter below the highest one published on
        ``channel`` (checked under the repository lock: anti-rollback, provision 5.3-7).
        """
        now = _utc(now)
        if TARGET_PATH_PATTERN.fullmatch(path) is None or ".." in path:
            raise UsageError(f"target path {path!r}: use CHANNEL/NAME with letters, digits, '.', '_', '+', '-'")
        if not path.startswith(f"{channel}/"):
            raise UsageError(f"target path {path!r} is not in the directory of channel {channel!r}")
        digest = hashlib.sha256(data).hexdigest()
        release = ReleaseTarget(
            path=path,
            length=len(data),
            sha256=digest,
            channel=channel,
            version=version,
            security_counter=security_counter,
            published=now.replace(microsecond=0).isoformat().replace("+00:00", "Z"),
            support_period_end=support_period_end.isoformat() if support_period_end else None,
        )
        with self._locked():
            targets_md = self.targets()
            existing = targets_md.signed.targets.get(path)
            if existing is not None:
                if existing.hashes.get("sha256") == digest:
                    return release_target(existing)
                raise PolicyRefusal(
                    f"target {path!r} is published already with other content; a release is never replaced",
                    hint="publish under a new version",
                )
            published = [
                release_target(t).security_counter
                for t in targets_md.signed.targets.values()
                if release_target(t).channel == channel
            ]
            if published and security_counter < max(published):
                raise PolicyRefusal(
                    f"security counter {security_counter} is below {max(published)}, the highest already published "
                    f"on channel {channel!r}: a downgrade is never published",
                    provision="5.3-7",
                    hint="sign the image with a security counter at least as high as the channel's",
                )
            file_path = self.target_file(release)
            file_path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(file_path, data, mode=0o644)
            target = TargetFile.from_data(path, data, _HASHES)
            target.unrecognized_fields["custom"] = release.custom()
            targets = targets_md.signed
            targets.targets[path] = target
            self._commit(now, targets=targets)
        _log.info("published TUF target %s (counter %d)", path, security_counter)
        return release

    def refresh(self, now: datetime, *, force: bool = False) -> list[str]:
        """Re-sign the online roles that are within their renewal window (all of them with ``force``).

        Returns the roles re-signed, in signing order (``[]`` when nothing was due). Root is never
        re-signed here: it is the offline key's (a warning is logged when it nears expiry).
        """
        now = _utc(now)
        with self._locked():
            renewed: list[str] = []
            root = self.root()
            if root.expires - now < ROOT_WARNING:
                _log.warning(
                    "TUF root v%d of %s expires %s: re-sign it with the offline update-root key "
                    "(trustroot release root --resign)",
                    root.version,
                    self.directory,
                    root.expires.isoformat(),
                )
            targets = self.targets().signed
            snapshot = self.snapshot().signed
            timestamp = self.timestamp().signed
            if force or self._due(targets.expires, Targets.type, now):
                renewed = self._commit(now, targets=targets)
            elif self._due(snapshot.expires, Snapshot.type, now):
                renewed = self._commit(now)
            elif self._due(timestamp.expires, Timestamp.type, now):
                renewed = self._commit(now, timestamp_only=True)
        if renewed:
            _log.info("re-signed TUF %s of %s", ", ".join(renewed), self.directory)
        return renewed

    def update_root(self, keys: KeyStore, now: datetime, *, renew: bool = False) -> int | None:
        """Sign a new root version: after an online update key was rotated, or (``renew``) to extend its expiry.

        The new root names the active ``update-targets/-snapshot/-timestamp`` keys, expires
        ``expiry.root`` from ``now`` and is signed by the active ``update-root`` key (the offline
        passphrase is asked); every other role is re-signed with it. Returns the new version, or
        ``None`` when root already names the active keys and ``renew`` is false. A changed
        ``update-root`` key itself is refused: a new root must be signed by the old root key too,
        which the key store no longer lets sign.
        """
        now = _utc(now)
        with self._locked():
            root = self.root()
            wanted = {role: tuf_key_from_info(keys.active(key_role)) for role, key_role in KEY_ROLES.items()}
            if wanted[Root.type].keyid not in root.roles[Root.type].keyids:
                raise StateError(
                    "the active update-root key is not the key TUF root trusts; root key rotation needs the old "
                    "root key to cross-sign, which trustroot does not do yet"
                )
            changed = [role for role, key in wanted.items() if root.roles[role].keyids != [key.keyid]]
            if not changed and not renew:
                return None
            for role in changed:
                for keyid in list(root.roles[role].keyids):
                    root.revoke_key(keyid, role)
                root.add_key(wanted[role], role)
            root.version += 1
            root.expires = now + self.expiry.root
            # Every other role is re-signed with the new keys; the new root is written just before
            # the timestamp that needs it, so the window where the two disagree is one rename.
            self._commit(now, targets=self.targets().signed, root=root, root_bytes=self._sign(Metadata(root), root))
        return root.version

    # --- inside ------------------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(self.directory / _LOCK_FILE):
            yield

    def _due(self, expires: datetime, role: str, now: datetime) -> bool:
        return expires - now < self.expiry.lifetime(role) * self.expiry.renew_fraction

    def _commit(
        self,
        now: datetime,
        *,
        targets: Targets | None = None,
        timestamp_only: bool = False,
        root: Root | None = None,
        root_bytes: bytes | None = None,
    ) -> list[str]:
        """Write targets (if given), snapshot, a new root (if given), then timestamp: the commit point."""
        signing_root = root or self.root()
        renewed: list[str] = []
        snapshot = self.snapshot().signed
        if not timestamp_only:
            if targets is not None:
                targets.version += 1
                targets.expires = now + self.expiry.targets
                targets_bytes = self._sign(Metadata(targets), signing_root)
                self._write(f"{targets.version}.{Targets.type}.json", targets_bytes)
                snapshot.meta["targets.json"] = MetaFile.from_data(targets.version, targets_bytes, _HASHES)
                renewed.append(Targets.type)
            snapshot.version += 1
            snapshot.expires = now + self.expiry.snapshot
            snapshot_bytes = self._sign(Metadata(snapshot), signing_root)
            self._write(f"{snapshot.version}.{Snapshot.type}.json", snapshot_bytes)
            renewed.append(Snapshot.type)
            snapshot_meta = MetaFile.from_data(snapshot.version, snapshot_bytes, _HASHES)
        else:
            snapshot_meta = self.timestamp().signed.snapshot_meta
        timestamp = self.timestamp().signed
        if root is not None and root_bytes is not None:
            self._write(f"{root.version}.root.json", root_bytes)
            renewed.append(Root.type)
        timestamp.version += 1
        timestamp.expires = now + self.expiry.timestamp
        timestamp.snapshot_meta = snapshot_meta
        self._write(f"{Timestamp.type}.json", self._sign(Metadata(timestamp), signing_root))
        renewed.append(Timestamp.type)
        return renewed

    def _sign(self, metadata: Metadata[Any], root: Root) -> bytes:
        """Sign ``metadata`` with its role's signer, check root accepts it, and serialise it."""
        role = metadata.signed.type
        signer = self._signers(role)
        try:
            metadata.sign(signer)
            data = metadata.to_bytes(_SERIALIZER)
            root.verify_delegate(role, metadata.signed_bytes, metadata.signatures)
        except UnsignedMetadataError as exc:
            cause = exc.__cause__
            if isinstance(cause, TrustrootError):
                raise cause from exc
            raise StateError(
                f"TUF {role} metadata does not verify under the {role} key of root v{root.version}: "
                f"the store's active {KEY_ROLES[role].value} key is not the one root trusts",
                hint="re-sign root for the rotated key with ReleaseRepository.update_root",
            ) from exc
        except SerializationError as exc:
            raise StateError(f"TUF {role} metadata cannot be serialised: {exc}") from exc
        return data

    def _write(self, name: str, data: bytes) -> None:
        atomic_write(self.metadata_dir / name, data, mode=0o644)

    def _read(self, name: str) -> bytes:
        try:
            return read_bounded(self.metadata_dir / name, _MAX_METADATA_BYTES, what="TUF metadata")
        except UnreadableInputError as exc:
            raise StateError(f"TUF release repository {self.directory}: {exc.message}") from exc

    def _metadata(self, kind: type[Signed], name: str) -> Metadata[Any]:
        data = self._read(name)
        try:
            metadata: Metadata[Any] = Metadata.from_bytes(data)
        except DeserializationError as exc:
            raise StateError(f"TUF metadata {self.metadata_dir / name} is damaged: {exc}") from exc
        if not isinstance(metadata.signed, kind):
            raise StateError(f"TUF metadata {self.metadata_dir / name} is not {kind.type} metadata")
        return metadata

    def _load_root(self, data: bytes) -> Root:
        try:
            signed = Metadata.from_bytes(data).signed
        except DeserializationError as exc:
            raise StateError(f"TUF root metadata in {self.metadata_dir} is damaged: {exc}") from exc
        if not isinstance(signed, Root):
            raise StateError(f"TUF root metadata in {self.metadata_dir} is not root metadata")
        return signed


def refresh_timestamp(repo: ReleaseRepository, now: datetime) -> list[str]:
    """Keep the repository's online metadata fresh: call it every ``repo.expiry.refresh_interval``.

    Re-signs timestamp (and snapshot, targets) when less than half of its lifetime is left;
    cheap when nothing is due, safe to call from every worker at once (the repository lock
    serialises them and each re-checks). Returns the roles re-signed.
    """
    return repo.refresh(now)


def channel_counter(repo: ReleaseRepository, channel: str) -> int | None:
    """The highest security counter published on ``channel`` (``None`` before its first release)."""
    counters = [target.security_counter for target in repo.release_targets(channel)]
    return max(counters) if counters else None
