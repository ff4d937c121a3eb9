"""The device's update client: python-tuf's ngclient over httpx, mutual TLS, a total download deadline.

The fleet service serves its TUF repository under ``/tuf/metadata/`` and ``/tuf/targets/``. The
device holds the root metadata it was provisioned with (its trust anchor) and, at each update
check, lets python-tuf's ``Updater`` walk the client workflow: newer roots one by one, then
timestamp, snapshot and targets, each signed by the keys root names, fresh, and never older than
what it has seen before. Only then is the image downloaded, and it is kept only if its length and
SHA-256 are the ones the signed targets metadata lists. This refuses rollback (old metadata or
images replayed), freeze (stale metadata held back, caught by the short timestamp lifetime),
mix-and-match (metadata of different versions combined) and swapped or foreign images
(EN 303 645 provision 5.3-10: the device checks authenticity and integrity of an update).

:class:`DeadlineFetcher` is the network layer (ngclient's ``FetcherInterface``): httpx with the
device's client certificate, TLS 1.2 or later, and, unlike ngclient's own fetchers, which bound only
the gap between two chunks, a **total** deadline per file: checked after every chunk, and enforced
by a watchdog that shuts the socket down when a stalled read would outlast it. A slow-drip server
therefore cannot hold a device's download for longer than the deadline.

Errors::

    UpdateError (TrustrootError)   the update could not be fetched or verified
    ├── UpdateRefused              verification failed: rollback, freeze, mix-and-match, a wrong
    │                              hash, a bad signature, or a release below the device's security
    │                              counter; ``reason`` names it, ``__cause__`` is python-tuf's error
    └── UpdateUnavailable          the network failed, the server answered an HTTP error, or the
                                   download deadline passed: try again later (with backoff)

Inside the fetcher, the deadline surfaces to ngclient as :class:`DeadlineExceededError`, a
python-tuf ``SlowRetrievalError``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, urlsplit

import httpx
from tuf.api import exceptions as tuf_errors
from tuf.ngclient.config import UpdaterConfig
from tuf.ngclient.fetcher import FetcherInterface
from tuf.ngclient.updater import Updater

from trustroot._tuf_api import TargetFile
from trustroot.errors import TrustrootError, UsageError

__all__ = [
    "METADATA_PATH",
    "RELEASE_FORMAT",
    "TARGETS_PATH",
    "ClientTls",
    "DeadlineExceededError",
    "DeadlineFetcher",
    "DownloadedRelease",
    "ReleaseInfo",
    "UpdateClient",
    "UpdateClientConfig",
    "UpdateClientLimits",
    "UpdateError",
    "UpdateRefused",
    "UpdateUnavailable",
]

_log = logging.getLogger(__name__)

#: Where the fleet service serves TUF metadata and targets, under its base URL.
METADATA_PATH: Final = "/tuf/metadata/"
TARGETS_PATH: Final = "/tuf/targets/"
#: ``format`` of the custom metadata the fleet puts on every release target.
RELEASE_FORMAT: Final = "trustroot.release/1"


# --- errors ----------------------------------------------------------------------------------------


class UpdateError(TrustrootError):
    """The update could not be fetched or verified."""


class UpdateRefused(UpdateError):
    """The repository's metadata or the image failed verification; ``reason`` says how."""

    def __init__(self, message: str, *, reason: str, provision: str = "5.3-10") -> None:
        super().__init__(message, provision=provision)
        self.reason = reason


class UpdateUnavailable(UpdateError):
    """The network, the server or the deadline failed us: try again later."""


class DeadlineExceededError(tuf_errors.SlowRetrievalError):
    """The total download deadline of one file passed (raised inside ngclient)."""


# --- configuration ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class UpdateClientLimits:
    """Every limit of the update client (safe defaults, in the spirit of ngclient's ``UpdaterConfig``)."""

    #: Total time one image download may take, start to last byte (``[update] download_deadline_s``).
    download_deadline_s: float = 600.0
    #: Total time one metadata file may take.
    metadata_deadline_s: float = 60.0
    #: Longest silence between two reads.
    gap_timeout_s: float = 30.0
    connect_timeout_s: float = 10.0
    chunk_size: int = 64 << 10
    #: Largest image accepted, whatever the signed metadata says.
    max_image_bytes: int = 256 << 20

    def __post_init__(self) -> None:
        for name in ("download_deadline_s", "metadata_deadline_s", "gap_timeout_s", "connect_timeout_s"):
            if getattr(self, name) <= 0:
                raise UsageError(f"update client limit {name} must be positive")
        if self.chunk_size < 1 or self.max_image_bytes < 1:
            raise UsageError("update client chunk_size and max_image_bytes must be positive")


@dataclass(frozen=True)
class ClientTls:
    """The device's TLS material: who it trusts for the server, and its own certificate and key."""

    #: CA certificates (PEM) the service's certificate must chain to.
    ca_file: Path
    #: The device certificate (PEM, with its chain) and private key, for mutual TLS.
    cert_file: Path | None = None
    key_file: Path | None = None

    def ssl_context(self) -> ssl.SSLContext:
        """A client context: TLS 1.2 or later, the server verified against ``ca_file``, our certificate."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca_file))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.cert_file is not None:
            context.load_cert_chain(str(self.cert_file), str(self.key_file) if self.key_file else None)
        return context


@dataclass(frozen=True)
class UpdateClientConfig:
    """Where the service is and where the device keeps TUF state."""

    #: The fleet service, ``https://host:port`` (``[communication] service_url``).
    service_url: str
    #: ngclient's metadata cache (trusted root history, last timestamp, snapshot, targets).
    metadata_dir: Path
    #: Where verified images are put.
    targets_dir: Path
    tls: ClientTls
    limits: UpdateClientLimits = UpdateClientLimits()

    def __post_init__(self) -> None:
        parts = urlsplit(self.service_url)
        if parts.scheme != "https" or not parts.hostname:
            raise UsageError(f"service URL {self.service_url!r}: the update client speaks https:// only")

    @property
    def metadata_url(self) -> str:
        return self.service_url.rstrip("/") + METADATA_PATH

    @property
    def targets_url(self) -> str:
        return self.service_url.rstrip("/") + TARGETS_PATH


# --- the fetcher -----------------------------------------------------------------------------------


def _shutdown(response: httpx.Response) -> None:
    """Abort a response's connection from another thread (a blocked read returns at once)."""
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            # The plain socket's shutdown, also for an SSLSocket: it wakes the reader without
            # touching the TLS object another thread is using.
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


class DeadlineFetcher(FetcherInterface):
    """ngclient's network layer: httpx, mutual TLS, a total deadline per file.

    ``deadline_s`` applies to each file from the request to its last byte; :meth:`deadline`
    changes it for a block (the client uses the image deadline for targets and the shorter
    metadata deadline otherwise). ``clock`` is injectable for tests.
    """

    def __init__(
        self,
        client: httpx.Client,
        *,
        deadline_s: float,
        gap_timeout_s: float = 30.0,
        connect_timeout_s: float = 10.0,
        chunk_size: int = 64 << 10,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self.deadline_s = deadline_s
        self._gap = gap_timeout_s
        self._connect = connect_timeout_s
        self._chunk = chunk_size
        self._clock = clock

    @classmethod
    def for_tls(cls, tls: ClientTls, limits: UpdateClientLimits) -> DeadlineFetcher:
        """A fetcher over a new httpx client with the device's TLS material."""
        client = httpx.Client(
            verify=tls.ssl_context(),
            follow_redirects=False,
            trust_env=False,
            headers={"User-Agent": "trustroot-agent"},
        )
        return cls(
            client,
            deadline_s=limits.metadata_deadline_s,
            gap_timeout_s=limits.gap_timeout_s,
            connect_timeout_s=limits.connect_timeout_s,
            chunk_size=limits.chunk_size,
        )

    def close(self) -> None:
        self._client.close()

    @contextlib.contextmanager
    def deadline(self, seconds: float) -> Iterator[None]:
        """Use a total deadline of ``seconds`` per file inside the block."""
        previous, self.deadline_s = self.deadline_s, seconds
        try:
            yield
        finally:
            self.deadline_s = previous

    def _fetch(self, url: str) -> Iterator[bytes]:
        start = self._clock()
        limit = self.deadline_s
        timeout = httpx.Timeout(
            connect=min(self._connect, limit), read=min(self._gap, limit), write=min(self._gap, limit), pool=limit
        )
        try:
            # identity: the bytes hashed are the bytes sent (and no decompression bomb)
            request = self._client.build_request("GET", url, timeout=timeout, headers={"Accept-Encoding": "identity"})
            response = self._client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise tuf_errors.SlowRetrievalError(f"{url}: no answer within the timeout") from exc
        except httpx.HTTPError as exc:
            raise tuf_errors.DownloadError(f"{url}: {exc}") from exc
        if response.status_code != 200:  # redirects are not followed: only 200 carries the file
            response.close()
            raise tuf_errors.DownloadHTTPError(f"{url}: HTTP {response.status_code}", response.status_code)
        if response.headers.get("content-encoding", "identity").lower() != "identity":
            response.close()
            raise tuf_errors.DownloadError(f"{url}: a content-encoded answer was refused (identity was asked for)")
        return self._chunks(url, response, start, limit)

    def _chunks(self, url: str, response: httpx.Response, start: float, limit: float) -> Iterator[bytes]:
        fired = threading.Event()

        def expire() -> None:
            fired.set()
            _shutdown(response)

        remaining = limit - (self._clock() - start)
        watchdog = threading.Timer(max(remaining, 0.0), expire)
        watchdog.daemon = True
        watchdog.start()
        try:
            for chunk in response.iter_raw(self._chunk):
                if fired.is_set() or self._clock() - start > limit:
                    raise DeadlineExceededError(f"{url}: not downloaded within the deadline of {limit:g} s")
                yield chunk
        except httpx.HTTPError as exc:
            if fired.is_set():
                raise DeadlineExceededError(f"{url}: not downloaded within the deadline of {limit:g} s") from exc
            if isinstance(exc, httpx.TimeoutException):
                raise tuf_errors.SlowRetrievalError(f"{url}: no data for {self._gap:g} s") from exc
            raise tuf_errors.DownloadError(f"{url}: {exc}") from exc
        finally:
            watchdog.cancel()
            response.close()


# --- the client ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReleaseInfo:
    """What the signed targets metadata says about a release (its custom fields, checked)."""

    target_path: str
    length: int
    sha256: str
    version: str
    security_counter: int
    channel: str
    support_period_end: str | None


@dataclass(frozen=True)
class DownloadedRelease:
    """A release image on the device's disk, verified against the signed targets metadata."""

    path: Path
    info: ReleaseInfo


def _release_info(target: TargetFile) -> ReleaseInfo:
    custom: Any = target.custom
    if not isinstance(custom, dict) or custom.get("format") != RELEASE_FORMAT:
        raise UpdateRefused(f"target {target.path!r} is not a trustroot release", reason="not a release")
    counter = custom.get("security_counter")
    version = custom.get("version")
    channel = custom.get("channel")
    end = custom.get("support_period_end")
    sha256 = target.hashes.get("sha256")
    if (
        type(counter) is not int
        or not 0 <= counter < 2**32
        or not isinstance(version, str)
        or not isinstance(channel, str)
        or not (end is None or isinstance(end, str))
        or not isinstance(sha256, str)
    ):
        raise UpdateRefused(f"target {target.path!r}: malformed release metadata", reason="malformed release")
    return ReleaseInfo(
        target_path=target.path,
        length=target.length,
        sha256=sha256,
        version=version,
        security_counter=counter,
        channel=channel,
        support_period_end=end,
    )


def _refused(exc: tuf_errors.RepositoryError) -> UpdateRefused:
    reasons: list[tuple[type[tuf_errors.RepositoryError], str]] = [
        (tuf_errors.ExpiredMetadataError, "expired metadata (freeze)"),
        (tuf_errors.BadVersionNumberError, "version rollback"),
        (tuf_errors.LengthOrHashMismatchError, "length or hash mismatch"),
        (tuf_errors.UnsignedMetadataError, "missing or bad signature"),
    ]
    reason = next((text for kind, text in reasons if isinstance(exc, kind)), "repository error")
    return UpdateRefused(f"update refused: {reason}: {exc}", reason=reason)


class UpdateClient:
    """Fetches and verifies releases from the fleet service's TUF repository.

    ``trusted_root`` is the root metadata the device was provisioned with (its trust anchor); it
    is given at every construction, the newer roots come from the cache or the service. Each
    :meth:`check` or :meth:`download` runs a complete, fresh TUF refresh (ngclient refreshes once
    per ``Updater``).
    """

    def __init__(
        self,
        config: UpdateClientConfig,
        trusted_root: bytes,
        *,
        fetcher: DeadlineFetcher | None = None,
    ) -> None:
        self.config = config
        self._root = trusted_root
        self._fetcher = fetcher or DeadlineFetcher.for_tls(config.tls, config.limits)
        config.metadata_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        config.targets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    def close(self) -> None:
        self._fetcher.close()

    def __enter__(self) -> UpdateClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _updater(self) -> Updater:
        config = UpdaterConfig(app_user_agent="trustroot-agent")
        with self._translated():
            return Updater(
                metadata_dir=str(self.config.metadata_dir),
                metadata_base_url=self.config.metadata_url,
                target_dir=str(self.config.targets_dir),
                target_base_url=self.config.targets_url,
                fetcher=self._fetcher,
                config=config,
                bootstrap=self._root,
            )

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except tuf_errors.RepositoryError as exc:
            raise _refused(exc) from exc
        except tuf_errors.DownloadError as exc:
            raise UpdateUnavailable(f"update not fetched: {exc}") from exc

    def check(self, target_path: str) -> ReleaseInfo:
        """Refresh the metadata and return what it says about ``target_path``."""
        updater = self._updater()
        with self._translated():
            updater.refresh()
            target = updater.get_targetinfo(target_path)
        if target is None:
            raise UpdateRefused(
                f"target {target_path!r} is not in the signed targets metadata", reason="unknown target"
            )
        return _release_info(target)

    def download(self, target_path: str, *, min_counter: int) -> DownloadedRelease:
        """Refresh, then download ``target_path`` if its security counter is at least ``min_counter``.

        The image is written to ``targets_dir`` only after its length and SHA-256 match the
        signed metadata (then renamed into place). A release below ``min_counter`` (the device's
        own security counter) is refused without download (provision 5.3-7).
        """
        updater = self._updater()
        with self._translated():
            updater.refresh()
            target = updater.get_targetinfo(target_path)
        if target is None:
            raise UpdateRefused(
                f"target {target_path!r} is not in the signed targets metadata", reason="unknown target"
            )
        info = _release_info(target)
        if info.security_counter < min_counter:
            raise UpdateRefused(
                f"release {info.version} has security counter {info.security_counter}, below the device's "
                f"{min_counter}: a downgrade is refused",
                reason="downgrade",
                provision="5.3-7",
            )
        if info.length > self.config.limits.max_image_bytes:
            raise UpdateRefused(
                f"release {info.version} is {info.length} bytes, over the limit of "
                f"{self.config.limits.max_image_bytes}",
                reason="too large",
            )
        final = self.config.targets_dir / quote(target.path, safe="")
        fd, temporary = tempfile.mkstemp(prefix=".download-", dir=self.config.targets_dir)
        os.close(fd)
        try:
            with self._translated(), self._fetcher.deadline(self.config.limits.download_deadline_s):
                updater.download_target(target, filepath=temporary)
            Path(temporary).replace(final)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                Path(temporary).unlink()
            raise
        _log.info("downloaded release %s (counter %d) to %s", info.version, info.security_counter, final)
        return DownloadedRelease(path=final, info=info)
