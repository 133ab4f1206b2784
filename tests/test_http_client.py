"""The webhook client's shortcuts around treq: same requests, less work per POST."""

from __future__ import annotations

from hyperlink import EncodedURL
from twisted.internet.defer import inlineCallbacks
from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import TestCase
from twisted.web.client import URI
from twisted.web.error import SchemeNotSupported

from tests.support import start_consumer
from ykcproxy.forward.base import Message
from ykcproxy.forward.http import HttpPublisher, PreparedURL, ReusedEndpoints

from .support import reactor


class PreparedURLTests(TestCase):
    def test_same_uri_as_treq_computes(self):
        texts = (
            "http://127.0.0.1:8080/13",
            "https://consumer.example:8443/hooks/batch",
            "http://bücher.example/3b",
        )
        for text in texts:
            prepared = PreparedURL.prepare(text)
            self.assertEqual(prepared.to_uri().to_text(), EncodedURL.from_text(text).to_uri().to_text())
            copy = prepared.replace(path=("x",))
            self.assertEqual(
                copy.to_uri().to_text(), EncodedURL.from_text(text).replace(path=("x",)).to_uri().to_text()
            )
            self.assertEqual(prepared.to_text(), text)


class ReusedEndpointsTests(TestCase):
    def test_one_endpoint_per_scheme_host_and_port(self):
        endpoints = ReusedEndpoints(MemoryReactor())
        a = endpoints.endpointForURI(URI.fromBytes(b"http://127.0.0.1:8080/13"))
        b = endpoints.endpointForURI(URI.fromBytes(b"http://127.0.0.1:8080/3b"))
        c = endpoints.endpointForURI(URI.fromBytes(b"http://127.0.0.1:8081/13"))
        tls = endpoints.endpointForURI(URI.fromBytes(b"https://127.0.0.1:8080/13"))
        self.assertIs(a, b)
        self.assertIsNot(a, c)
        self.assertIsNot(a, tls)
        self.assertEqual(type(tls).__name__, "_WrapperEndpoint")  # TLS around the TCP endpoint

    def test_other_schemes_are_refused(self):
        endpoints = ReusedEndpoints(MemoryReactor())
        self.assertRaises(SchemeNotSupported, endpoints.endpointForURI, URI.fromBytes(b"ftp://h:21/x"))


class PublisherTests(TestCase):
    @inlineCallbacks
    def test_posts_reach_the_consumer_in_order(self):
        consumer, url = start_consumer(self)
        publisher = HttpPublisher([url], reactor, max_connections=1)
        self.addCleanup(publisher.stop)
        for i in range(5):
            yield publisher.publish(Message("13", "32010200000001", f"m{i}", b'{"i": %d}' % i))
        self.assertEqual([p.path for p in consumer.posts], ["/13"] * 5)
        self.assertEqual([p.body["i"] for p in consumer.posts], list(range(5)))
