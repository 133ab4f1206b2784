"""Authenticated webhooks (Basic auth from the URL, headers, signatures); secrets kept out of logs."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python import usage
from twisted.trial.unittest import TestCase

from tests.support import login, rest, start_consumer, start_proxy
from ykcproxy.forward.http import redact_url, signature, split_credentials
from ykcproxy.options import Options

PILE = "32010200000001"


class Pieces(TestCase):
    def test_credentials_split_and_redacted(self) -> None:
        url, auth = split_credentials("https://hook:p%40ss@example.com:8443/ykc")
        self.assertEqual(url, "https://example.com:8443/ykc")
        self.assertEqual(auth, b"Basic aG9vazpwQHNz")
        self.assertEqual(split_credentials("http://h/x"), ("http://h/x", None))
        self.assertEqual(redact_url("http://u:secret@h/x"), "http://u:***@h/x")

    def test_signature_is_hmac_of_time_dot_body(self) -> None:
        expected = hmac.new(b"k", b"1700000000.{}", hashlib.sha256).hexdigest()
        self.assertEqual(signature(b"k", 1700000000, b"{}"), f"t=1700000000,v1={expected}".encode())

    def test_header_option(self) -> None:
        options = Options(environ={})
        options.parseOptions(["--httpHeader", "Authorization: Bearer abc", "--httpHeader=X-Tenant: 7"])
        self.assertEqual(options.config.http_headers, (("Authorization", "Bearer abc"), ("X-Tenant", "7")))
        error = self.assertRaises(
            usage.UsageError, Options(environ={}).parseOptions, ["--httpHeader", "nocolon"]
        )
        self.assertIn("--httpHeader", str(error))
        error = self.assertRaises(
            usage.UsageError, Options(environ={}).parseOptions, ["--servers", "http://u:topsecret@/x"]
        )
        self.assertNotIn("topsecret", str(error))


class EndToEnd(TestCase):
    timeout = 20

    @inlineCallbacks
    def test_signed_authenticated_posts_and_no_secret_in_the_log(self) -> None:
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        key_file = os.path.abspath(self.mktemp())
        with open(key_file, "w") as f:
            f.write("signing-s3cret\n")
        consumer, url = start_consumer(self)
        proxy = start_proxy(
            self,
            servers=(f"http://hook:basic-s3cret@{url}",),
            auto_verification=True,
            http_headers=(("X-Api-Key", "header-s3cret"),),
            http_signing_key_file=key_file,
            api_token="api-s3cret",
            password="broker-s3cret",
        )
        link = yield login(self, proxy, PILE)
        yield consumer.count(2)
        post = consumer.posts[0]
        self.assertEqual(post.headers["authorization"], "Basic aG9vazpiYXNpYy1zM2NyZXQ=")
        self.assertEqual(post.headers["x-api-key"], "header-s3cret")
        stamp, mac = post.headers["x-ykcproxy-signature"].split(",")
        self.assertTrue(stamp.startswith("t=") and mac.startswith("v1="))
        expected = hmac.new(
            b"signing-s3cret", stamp[2:].encode() + b"." + post.raw, hashlib.sha256
        ).hexdigest()
        self.assertEqual(mac[3:], expected)
        code, health = yield rest(proxy, "GET", "/healthz")
        link.transport.loseConnection()
        yield link.lost
        text = "\n".join(formatEvent(e) + " " + repr(e) for e in events) + json.dumps(health)
        for secret in ("basic-s3cret", "header-s3cret", "signing-s3cret", "api-s3cret", "broker-s3cret"):
            self.assertNotIn(secret, text)
