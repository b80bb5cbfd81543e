"""Email notifications against a real SMTP server (aiosmtpd): plain, AUTH, STARTTLS and
TLS from the start, and a refused recipient."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from jobtrail.core.model import Delivery, Observation, utcnow
from jobtrail.core.settings import Settings
from jobtrail.dispatch import run as dispatch_run
from jobtrail.dispatch import signing
from jobtrail.receiver.serve import store_for
from jobtrail.runtime.health import Health
from jobtrail.store.base import Store
from tests.e2e.helpers import free_port


class Inbox:
    def __init__(self, refuse: str | None = None) -> None:
        self.messages: list[Envelope] = []
        self.refuse = refuse

    async def handle_RCPT(
        self, server: Any, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if self.refuse and address == self.refuse:
            return "550 5.1.1 no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        self.messages.append(envelope)
        return "250 Message accepted"


def authenticate(
    server: Any, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        b"jobtrail",
        b"s3cret-pass",
    )
    return AuthResult(success=ok, handled=False)  # handled=True would leave the reply to us


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, Path]:
    """A self-signed certificate for 127.0.0.1, and the file a client trusts it by."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context, cert_path


@pytest.fixture
def smtp() -> Iterator[Callable[..., tuple[Inbox, int]]]:
    controllers: list[Controller] = []

    def start(inbox: Inbox | None = None, **options: Any) -> tuple[Inbox, int]:
        inbox = inbox or Inbox()
        port = free_port()
        controller = Controller(inbox, hostname="127.0.0.1", port=port, **options)
        controller.start()
        controllers.append(controller)
        return inbox, port

    yield start
    for controller in controllers:
        controller.stop()


@pytest.fixture
async def mail(make_settings: Callable[..., Settings], tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    stores: list[Store] = []

    async def send(url: str, job_id: str = "p1", to: str = "team@example.com") -> tuple[Store, Any]:
        settings = make_settings(
            JOBTRAIL_DATA_DIR=str(tmp_path / f"data-{job_id}"),
            APIFRAME_API_KEY="",
            JOBTRAIL_SMTP_URL=url,
            JOBTRAIL_EMAIL_FROM="jobtrail@example.com",
            JOBTRAIL_EMAIL_TO=to,
            JOBTRAIL_RETRY_SCHEDULE="60s",
        )
        store = store_for(settings)
        await store.open()
        stores.append(store)
        await store.intake(
            Delivery("webhook", "pixazo", utcnow(), {}, b"{}", job_id),
            [Observation("pixazo", job_id, "failed", error="GPU fell over")],
        )
        async with dispatch_run.running(settings, store, Health()):
            for _ in range(500):
                [entry] = await store.outbox_for_job("pixazo", job_id)
                if entry.attempts:
                    break
                await asyncio.sleep(0.02)
        return store, entry

    yield send
    for store in stores:
        await store.close()


def received(inbox: Inbox) -> Any:
    [envelope] = inbox.messages
    return message_from_bytes(envelope.original_content or b"")


async def test_plain_smtp_sends_a_plain_text_email_saying_the_outcome(smtp: Any, mail: Any) -> None:
    inbox, port = smtp()
    _, entry = await mail(f"smtp://127.0.0.1:{port}")
    assert "done" == entry.status
    message = received(inbox)
    assert "[jobtrail] pixazo job p1 failed" == message["Subject"]
    assert "text/plain" == message.get_content_type()
    body = message.get_payload(decode=True).decode()
    assert "Status:   failed" in body and "GPU fell over" in body
    assert ["team@example.com"] == inbox.messages[0].rcpt_tos
    assert f"<{signing.webhook_id(entry.item.key)}@jobtrail>" == message["Message-ID"], (
        "stable across retries"
    )


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_auth_with_the_credentials_from_the_url(smtp: Any, mail: Any) -> None:
    # Plain-text AUTH only because this is loopback; aiosmtpd warns about it, rightly.
    inbox, port = smtp(authenticator=authenticate, auth_require_tls=False, auth_required=True)
    _, entry = await mail(f"smtp://jobtrail:s3cret-pass@127.0.0.1:{port}")
    assert ("done", 1) == (entry.status, len(inbox.messages))
    _, refused = await mail(f"smtp://jobtrail:wrong@127.0.0.1:{port}", job_id="p2")
    assert "pending" == refused.status and "535" in (refused.last_error or "")
    assert "wrong" not in (refused.last_error or "")


async def test_starttls_with_a_private_ca(smtp: Any, mail: Any, tls: Any) -> None:
    context, cert = tls
    inbox, port = smtp(tls_context=context, require_starttls=True)
    _, entry = await mail(f"smtp://127.0.0.1:{port}?starttls=require&ca_file={cert}")
    assert ("done", 1) == (entry.status, len(inbox.messages))


async def test_starttls_refuses_an_untrusted_certificate(smtp: Any, mail: Any, tls: Any) -> None:
    context, _ = tls
    inbox, port = smtp(tls_context=context, require_starttls=True)
    _, entry = await mail(f"smtp://127.0.0.1:{port}?starttls=require")
    assert ("pending", 0) == (entry.status, len(inbox.messages))
    assert "CERTIFICATE_VERIFY_FAILED" in (entry.last_error or "")


async def test_tls_from_the_start(smtp: Any, mail: Any, tls: Any) -> None:
    context, cert = tls
    inbox, port = smtp(ssl_context=context)
    _, entry = await mail(f"smtps://127.0.0.1:{port}?ca_file={cert}")
    assert ("done", 1) == (entry.status, len(inbox.messages))


async def test_a_refused_recipient_is_a_failed_attempt(smtp: Any, mail: Any) -> None:
    inbox, port = smtp(Inbox(refuse="nobody@example.com"))
    _, entry = await mail(f"smtp://127.0.0.1:{port}", to="nobody@example.com")
    assert ("pending", []) == (entry.status, inbox.messages)
    assert "550" in (entry.last_error or "")
