"""A real, throwaway Mosquitto broker for the test suite (Debian package ``mosquitto``).

:func:`start_broker` writes trustroot's broker configuration (:func:`trustroot.fleet.broker.write_broker_config`)
for a product into a temporary directory of its own, on a free loopback port, starts ``mosquitto -c``
there and waits until a TLS handshake with the ingest identity succeeds. Run as root, the broker drops
privileges to the ``mosquitto`` user before it reads its certificates: the test then also proves that
the files are owned so that it can. :meth:`Broker.stop` terminates it (SIGTERM, then SIGKILL) and
removes the directory; it is safe to call twice and is registered with :mod:`atexit`.

A missing installation raises :class:`MosquittoUnavailable` naming ``scripts/setup.sh``; tests fail, never skip.
"""

from __future__ import annotations

import atexit
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from trustroot.fleet.broker import BrokerFiles, write_broker_config
from trustroot.product import Product

__all__ = ["Broker", "MosquittoUnavailable", "free_port", "start_broker"]

START_TIMEOUT_S = 20.0


class MosquittoUnavailable(RuntimeError):
    """mosquitto is not installed."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Broker:
    files: BrokerFiles
    process: subprocess.Popen[bytes]
    log_path: Path
    base: Path

    @property
    def port(self) -> int:
        return self.files.port

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def client_context(self, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.files.ca))
        if cert is not None and key is not None:
            context.load_cert_chain(cert, key)
        return context

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        shutil.rmtree(self.base, ignore_errors=True)


def _handshake(port: int, context: ssl.SSLContext) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                return tls.version() is not None
    except OSError:
        return False


def start_broker(product: Product) -> Broker:
    """Configure and start a broker for ``product`` on a free loopback port."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(binary).exists():
        raise MosquittoUnavailable("mosquitto is not installed: run scripts/setup.sh (Debian package mosquitto)")
    base = Path(tempfile.mkdtemp(prefix="trustroot-mqtt-"))
    base.chmod(0o755)  # the broker's own user must reach the configuration directory inside
    files = write_broker_config(product, base / "broker", port=free_port())
    log_path = base / "mosquitto.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen([binary, "-c", str(files.config)], stdout=log, stderr=subprocess.STDOUT)
    broker = Broker(files=files, process=process, log_path=log_path, base=base)
    atexit.register(broker.stop)
    context = broker.client_context(files.ingest_cert, files.ingest_key)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"mosquitto exited with {process.returncode}:\n{broker.log()}")
        if _handshake(files.port, context):
            return broker
        time.sleep(0.05)
    broker.stop()
    raise AssertionError(f"mosquitto did not come up in {START_TIMEOUT_S} s:\n{broker.log()}")
