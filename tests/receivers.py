"""Real receivers for the notification tests: an HTTP server that answers a
scripted sequence, and an SMTP server (aiosmtpd), each on a free port of
127.0.0.1 in a thread of the test process (a Celery worker process reaches them
too). The pytest fixtures: `http_receiver`, `https_receiver` (with a test
certificate authority), `smtp_receiver`; and `alert_make`, a firing alert to
notify about; `attempt`, one delivery attempt as a worker makes it.
"""

import email
import email.policy
import ipaddress
import ssl
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.utils import timezone

from analytics.models import Alert, AlertRule, NotificationChannel, NotificationDelivery, Severity
from analytics.notifications.delivery import DeliveryRetry, notification_deliver
from devices.models import Device, Site
from tests.sshd import free_port

# How long a hanging answer holds its connection at most (the test ends sooner).
HANG_SECONDS = 30.0


@dataclass(frozen=True)
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    # Answer nothing until the receiver stops (a receiver that times out).
    hang: bool = False


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes


class HttpReceiver:
    """Records every request; answers them with the scripted answers in order,
    then with 200. HTTPS with `tls` (a server certificate and its key)."""

    def __init__(self, tls: "TlsFiles | None" = None) -> None:
        self.requests: list[Received] = []
        self.answers: deque[Answer] = deque()
        self.stopping = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.receiver = self  # type: ignore[attr-defined]
        self.scheme = "https" if tls else "http"
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(tls.cert_file, tls.key_file)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def url(self, path: str = "/hook", host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def script(self, *answers: Answer | int) -> None:
        self.answers.extend(a if isinstance(a, Answer) else Answer(a) for a in answers)

    def answer_next(self) -> Answer:
        return self.answers.popleft() if self.answers else Answer()

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 (the name http.server calls)
        self._receive()

    def do_GET(self) -> None:  # noqa: N802
        self._receive()

    def _receive(self) -> None:
        receiver: HttpReceiver = self.server.receiver  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        headers = {name.lower(): value for name, value in self.headers.items()}
        receiver.requests.append(Received(self.command, self.path, headers, body))
        answer = receiver.answer_next()
        if answer.hang:
            receiver.stopping.wait(HANG_SECONDS)
            return
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


class SmtpReceiver:
    """Accepts every message (parsed into `messages`), but for the recipients
    given a reply in `rcpt_replies` ("550 5.1.1 no such user")."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.rcpt_replies: dict[str, str] = {}
        self.port = free_port()
        self.controller = Controller(_SmtpHandler(self), hostname="127.0.0.1", port=self.port)

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()


class _SmtpHandler:
    def __init__(self, receiver: SmtpReceiver) -> None:
        self.receiver = receiver

    async def handle_RCPT(  # noqa: N802 (the name aiosmtpd calls)
        self, server: object, session: object, envelope: object, address: str, options: list
    ) -> str:
        reply = self.receiver.rcpt_replies.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)  # type: ignore[attr-defined]
        return "250 OK"

    async def handle_DATA(  # noqa: N802
        self, server: object, session: object, envelope: object
    ) -> str:
        content = envelope.content  # type: ignore[attr-defined]
        message = email.message_from_bytes(content, policy=email.policy.default)
        message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)  # type: ignore[attr-defined]
        self.receiver.messages.append(message)
        return "250 Message accepted for delivery"


@dataclass(frozen=True)
class TlsFiles:
    ca_file: Path  # the authority that signed the certificate (trust it to verify)
    cert_file: Path  # for "localhost" and 127.0.0.1
    key_file: Path


def tls_files_make(folder: Path) -> TlsFiles:
    """A certificate authority and a server certificate it signed, as PEM files."""
    ca_key, server_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "HOMEPOT test CA")])
    ca = (
        _certificate(ca_name, ca_name, ca_key.public_key(), ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_ca_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    server_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    server = (
        _certificate(server_name, ca_name, server_key.public_key(), ca_key)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    files.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert_file.write_bytes(server.public_bytes(serialization.Encoding.PEM))
    files.key_file.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


def _certificate(
    subject: x509.Name, issuer: x509.Name, public_key: object, signer: object
) -> x509.CertificateBuilder:
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
    )


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


@pytest.fixture
def https_receiver(tmp_path: Path) -> Iterator[tuple[HttpReceiver, TlsFiles]]:
    tls = tls_files_make(tmp_path)
    receiver = HttpReceiver(tls)
    receiver.start()
    yield receiver, tls
    receiver.stop()


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver()
    receiver.start()
    yield receiver
    receiver.stop()


@pytest.fixture
def smtp_receiver(settings) -> Iterator[SmtpReceiver]:  # noqa: ANN001 (pytest-django fixture)
    """The SMTP server, and Django's SMTP backend pointed at it (pytest-django
    swaps in the in-memory backend otherwise)."""
    receiver = SmtpReceiver()
    receiver.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = receiver.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    yield receiver
    receiver.stop()


# --- An alert to notify about ------------------------------------------------------------


def alert_make(
    site: Site,
    channels: list[NotificationChannel],
    *,
    severity: str = Severity.CRITICAL,
    value: float = 85.2,
    device_id: str = "pi-lab-01",
) -> Alert:
    """A firing alert of a rule "temp > 80" notifying `channels`, on a new device."""
    device = Device.objects.create(
        public_id=device_id, name="Lab Pi 1", device_type="raspberry_pi", site=site
    )
    rule = AlertRule.objects.create(
        name="Hot board", metric="temp", condition="gt", threshold=80, severity=severity
    )
    rule.channels.set(channels)
    return Alert.objects.create(
        rule=rule,
        device=device,
        severity=severity,
        value=value,
        last_value=value,
        fired_at=timezone.now(),
        message=f"temp {value} > 80",
    )


def attempt(delivery: NotificationDelivery, now: datetime | None = None) -> DeliveryRetry | None:
    """One run of the delivery task's work at `now`, as a worker makes it; the
    retry it asks for, if any. `delivery` is refreshed."""
    try:
        notification_deliver(
            delivery_pk=delivery.pk, attempts=delivery.attempts, now=now or timezone.now()
        )
        return None
    except DeliveryRetry as retry:
        return retry
    finally:
        delivery.refresh_from_db()
