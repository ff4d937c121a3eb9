"""The device as the agent sees it: its directory, identity, trust anchors and local state.

The agent reads the directory ``trustroot provision program`` wrote (``trustroot.device/1``:
device.json, chain.pem, the encrypted key) plus the trust material :func:`enroll` adds::

    DEVDIR/trust/tuf-root.json     the TUF root metadata the device trusts for updates (5.3-10)
    DEVDIR/trust/image-keys.pem    the product's firmware-signing public keys (boot integrity, 5.7-1)
    DEVDIR/agent/                  the agent's state directory (slots/, state.json, status.json,
                                   telemetry.queue, tuf/ cache, data/<category>/ personal data)

The service's TLS certificate is checked against the product's root CA (the last certificate of
chain.pem). The device's private key is decrypted in memory and handed to OpenSSL through an
anonymous memory file (``memfd``), itself encrypted under a random one-time password: it is never
written to a disk in clear.
"""

from __future__ import annotations

import os
import secrets
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from trustroot._fsutil import atomic_write, read_bounded
from trustroot.agent.slots import SlotImage, Slots
from trustroot.errors import AgentError, ImageVerificationError, UsageError
from trustroot.image.verify import verify_image
from trustroot.provision.device_dir import DeviceConfig, load_device_config, load_device_identity
from trustroot.provision.identity import DevicePrivateKey

__all__ = [
    "AGENT_DIR",
    "IMAGE_KEYS_FILE",
    "TRUST_DIR",
    "TUF_ROOT_FILE",
    "AgentDevice",
    "enroll",
    "load_image_keys",
]

TRUST_DIR: Final = "trust"
TUF_ROOT_FILE: Final = "tuf-root.json"
IMAGE_KEYS_FILE: Final = "image-keys.pem"
AGENT_DIR: Final = "agent"
_MAX_TRUST_FILE: Final = 1 << 20
_MAX_IMAGE: Final = 256 << 20


def load_image_keys(pem: bytes, where: str) -> list[PublicKeyTypes]:
    """Every public key of a PEM bundle; :class:`AgentError` if there is none or one is malformed."""
    keys: list[PublicKeyTypes] = []
    marker = b"-----END PUBLIC KEY-----"
    for block in pem.split(marker)[:-1]:
        try:
            keys.append(serialization.load_pem_public_key(block.strip() + b"\n" + marker + b"\n"))
        except ValueError as exc:
            raise AgentError(f"{where}: a public key does not parse ({exc})") from exc
    if not keys:
        raise AgentError(f"{where}: no public key (the device cannot verify images)", provision="5.7-1")
    return keys


def _key_pem_file(key: DevicePrivateKey, password: bytes) -> tuple[int, str]:
    """An fd and path holding the key as encrypted PKCS#8 PEM, in memory where the OS allows it."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password),
    )
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("trustroot-device-key", getattr(os, "MFD_CLOEXEC", 0))
        os.write(fd, pem)
        return fd, f"/proc/self/fd/{fd}"
    fd, name = tempfile.mkstemp(prefix=".device-key-")  # pragma: no cover - non-Linux
    os.write(fd, pem)
    return fd, name


@dataclass
class AgentDevice:
    """A loaded device: identity (in memory), configuration, trust anchors, state directory."""

    directory: Path
    state_dir: Path
    config: DeviceConfig
    service_url: str
    tuf_root: bytes
    image_keys: list[PublicKeyTypes]
    chain: list[x509.Certificate]
    _key: DevicePrivateKey = field(repr=False)

    @property
    def serial(self) -> str:
        return self.config.serial

    @classmethod
    def load(
        cls,
        directory: Path,
        device_secret: bytes,
        *,
        state_dir: Path | None = None,
        service_url: str | None = None,
    ) -> AgentDevice:
        """Open ``directory`` with the device secret (see the module docstring for the files read)."""
        directory = Path(directory)
        key, chain = load_device_identity(directory, device_secret)
        config = load_device_config(directory)
        trust = directory / TRUST_DIR
        if not (trust / TUF_ROOT_FILE).exists():
            raise AgentError(
                f"{trust / TUF_ROOT_FILE}: no TUF root; the device cannot verify updates",
                provision="5.3-10",
                hint="trustroot agent enroll --device DIR --image FACTORY.img (at the station)",
            )
        tuf_root = read_bounded(trust / TUF_ROOT_FILE, _MAX_TRUST_FILE, what="TUF root")
        keys_path = trust / IMAGE_KEYS_FILE
        image_keys = load_image_keys(read_bounded(keys_path, _MAX_TRUST_FILE, what="image keys"), str(keys_path))
        url = service_url or config.service_url
        if not url.startswith("https://"):
            raise UsageError(f"service URL {url!r}: the agent speaks https:// only", provision="5.5-1")
        return cls(
            directory=directory,
            state_dir=Path(state_dir) if state_dir is not None else directory / AGENT_DIR,
            config=config,
            service_url=url.rstrip("/"),
            tuf_root=tuf_root,
            image_keys=image_keys,
            chain=chain,
            _key=key,
        )

    def ssl_context(self) -> ssl.SSLContext:
        """TLS 1.2+ (the context's minimum), the service checked against the product root, our certificate."""
        root_pem = self.chain[-1].public_bytes(serialization.Encoding.PEM).decode("ascii")
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=root_pem)
        context.minimum_version = (
            ssl.TLSVersion.TLSv1_3 if self.config.context.min_tls_version == "1.3" else ssl.TLSVersion.TLSv1_2
        )
        password = secrets.token_bytes(32)
        fd, key_path = _key_pem_file(self._key, password)
        try:
            context.load_cert_chain(str(self.directory / "chain.pem"), key_path, password=password)
        finally:
            os.close(fd)
            if not key_path.startswith("/proc/"):  # pragma: no cover - non-Linux
                Path(key_path).unlink()
        return context

    @property
    def slots(self) -> Slots:
        return Slots(self.state_dir / "slots")

    @property
    def data_dir(self) -> Path:
        """Where the device keeps the owner's personal data, one directory per category."""
        return self.state_dir / "data"


def enroll(
    directory: Path,
    *,
    tuf_root: bytes,
    image_keys_pem: bytes,
    factory_image: bytes,
    state_dir: Path | None = None,
) -> SlotImage:
    """Give a programmed device its trust anchors and its factory image (at the station).

    The image is verified under ``image_keys_pem`` before it goes into slot a; the TUF root must be
    JSON root metadata. Refuses a device whose slots exist already.
    """
    directory = Path(directory)
    load_device_config(directory)  # a device directory, or DeviceDirectoryError
    keys = load_image_keys(image_keys_pem, "image keys")
    if len(factory_image) > _MAX_IMAGE:
        raise UsageError(f"factory image of {len(factory_image)} bytes is over {_MAX_IMAGE}")
    try:
        verified = verify_image(factory_image, keys=keys)
    except ImageVerificationError as exc:
        raise AgentError(f"factory image refused: {exc.message}", provision="5.7-1") from exc
    if b'"_type"' not in tuf_root[:4096] and b'"root"' not in tuf_root:
        raise UsageError("the TUF root is not TUF root metadata")
    trust = directory / TRUST_DIR
    atomic_write(trust / TUF_ROOT_FILE, tuf_root, mode=0o644)
    atomic_write(trust / IMAGE_KEYS_FILE, image_keys_pem, mode=0o644)
    state = Path(state_dir) if state_dir is not None else directory / AGENT_DIR
    return Slots(state / "slots").initialise(factory_image, str(verified.version), verified.security_counter or 0)
