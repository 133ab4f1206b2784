"""TLS on both listeners through endpoint descriptions, with a certificate made by the test."""

from __future__ import annotations

import datetime
import os

import treq
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import reactor, ssl
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import SSL4ClientEndpoint, connectProtocol
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS, HTTPConnectionPool

from tests.support import start_proxy
from ykcproxy.sim.link import PileLink
from ykcproxy.wire.examples import example

PILE = "32010200000001"


def make_certificate(directory: str) -> tuple[str, str, bytes]:
    """A self-signed certificate for 127.0.0.1: (key path, certificate path, certificate PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = os.path.join(directory, "key.pem"), os.path.join(directory, "cert.pem")
    with open(key_path, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    with open(cert_path, "wb") as f:
        f.write(pem)
    return key_path, cert_path, pem


class Tls(TestCase):
    timeout = 20

    @inlineCallbacks
    def test_a_pile_and_a_rest_client_over_tls(self) -> None:
        directory = self.mktemp()
        os.makedirs(directory)
        key, cert, pem = make_certificate(directory)
        description = f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"
        proxy = start_proxy(self, auto_verification=True, pile_endpoint=description, api_endpoint=description)
        authority = ssl.Certificate.loadPEM(pem)
        options = ssl.optionsForClientTLS("127.0.0.1", trustRoot=authority)
        link = PileLink()
        yield connectProtocol(SSL4ClientEndpoint(reactor, "127.0.0.1", proxy.tcp_port, options), link)
        self.addCleanup(lambda: link.transport.loseConnection())
        link.send(0x01, example(0x01, PILE))
        reply = yield link.expect(0x02)
        self.assertTrue(reply.fields["result"])
        link.send(0x03, example(0x03, PILE))
        yield link.expect(0x04)

        pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(pool.closeCachedConnections)
        agent = Agent(reactor, contextFactory=BrowserLikePolicyForHTTPS(trustRoot=authority), pool=pool)
        client = treq.client.HTTPClient(agent)
        response = yield client.get(f"https://127.0.0.1:{proxy.http_port}/piles")
        body = yield response.json()
        self.assertEqual([p["id"] for p in body], [PILE])
        link.transport.loseConnection()
        yield link.lost
