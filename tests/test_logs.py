"""Logging (levels, factory noise, JSON lines, quiet scrapes), the SIGHUP registry and the bounded stop."""

from __future__ import annotations

import io
import json
import os

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import Clock
from twisted.logger import LogLevel, LogPublisher, globalLogPublisher
from twisted.trial.unittest import TestCase

from tests.daemon import command, spawn
from tests.support import rest, start_proxy
from ykcproxy import logs
from ykcproxy.api.site import QuietSite
from ykcproxy.config import LogFormat, LogLevelName
from ykcproxy.operations import OperationsService, stop_within
from ykcproxy.options import default_config
from ykcproxy.reload import Reloads


class Settings(TestCase):
    def setUp(self):
        saved = (logs.control.format, logs.control.level)
        self.addCleanup(lambda: (setattr(logs.control, "format", saved[0]), logs.set_level(saved[1])))

    def publish(self, fmt: LogFormat, level: LogLevelName) -> tuple[io.StringIO, LogPublisher]:
        logs.control.format = fmt
        logs.set_level(level)
        out = io.StringIO()
        publisher = LogPublisher(logs.filtered(logs.output_observer(out)))
        return out, publisher

    def event(self, fmt: str, level: LogLevel = LogLevel.info, **fields):
        return {
            "log_format": fmt,
            "log_level": level,
            "log_namespace": "ykcproxy.test",
            "log_time": 0.5,
            **fields,
        }

    def test_json_lines_carry_fields(self):
        out, publisher = self.publish(LogFormat.JSON, LogLevelName.INFO)
        publisher(self.event("pile {id} online from {peer}", id="3202", peer="127.0.0.1:5", seq=7))
        line = out.getvalue()
        self.assertTrue(line.endswith("\n") and line.count("\n") == 1)
        record = json.loads(line)
        self.assertEqual(record["text"], "pile 3202 online from 127.0.0.1:5")
        self.assertEqual(record["level"], "info")
        self.assertEqual(record["namespace"], "ykcproxy.test")
        self.assertEqual(record["time"], "1970-01-01T00:00:00.500Z")
        self.assertEqual((record["id"], record["peer"], record["seq"]), ("3202", "127.0.0.1:5", 7))

    def test_unencodable_fields_are_shown(self):
        out, publisher = self.publish(LogFormat.JSON, LogLevelName.INFO)
        publisher(self.event("x {o}", o=object()))
        self.assertIn("<object object", json.loads(out.getvalue())["o"])

    def test_level_filter_and_change(self):
        out, publisher = self.publish(LogFormat.TEXT, LogLevelName.INFO)
        publisher(self.event("debug line", LogLevel.debug))
        publisher(self.event("info line"))
        self.assertNotIn("debug line", out.getvalue())
        self.assertIn("info line", out.getvalue())
        logs.set_level(LogLevelName.DEBUG)
        publisher(self.event("second debug", LogLevel.debug))
        self.assertIn("second debug", out.getvalue())
        logs.set_level(LogLevelName.ERROR)
        publisher(self.event("a warning", LogLevel.warn))
        publisher(self.event("an error", LogLevel.error))
        self.assertNotIn("a warning", out.getvalue())
        self.assertIn("an error", out.getvalue())

    def test_factory_noise_dropped(self):
        out, publisher = self.publish(LogFormat.TEXT, LogLevelName.DEBUG)
        publisher(self.event("Starting factory {factory!r}", factory="<_HTTP11ClientFactory>"))
        publisher(self.event("Stopping factory {factory!r}", factory="<_HTTP11ClientFactory>"))
        self.assertEqual(out.getvalue(), "")


class QuietScrapes(TestCase):
    @inlineCallbacks
    def test_no_access_lines_for_metrics_and_healthz(self):
        proxy = start_proxy(self)
        site = proxy.rest_listener.factory
        self.assertIsInstance(site, QuietSite)
        logged: list[bytes] = []
        original = QuietSite.__mro__[1].log  # twisted's Site.log
        self.patch(QuietSite.__mro__[1], "log", lambda self, request: logged.append(request.path))
        yield rest(proxy, "GET", "/healthz")
        yield rest(proxy, "GET", "/metrics")
        yield rest(proxy, "GET", "/piles")
        self.assertEqual(logged, [b"/piles"])
        self.assertIsNot(original, None)


class ReloadRegistry(TestCase):
    def test_every_reload_runs_and_a_failure_does_not_stop_the_others(self):
        reloads = Reloads()
        calls = []
        reloads.register("a", lambda: calls.append("a") or "1 entry")

        def broken():
            raise ValueError("bad file")

        reloads.register("b", broken)
        unregister = reloads.register("c", lambda: calls.append("c") or None)
        self.assertEqual(reloads.reload_all(), {"a": "1 entry", "c": None})
        self.assertEqual(calls, ["a", "c"])
        self.assertEqual(len(self.flushLoggedErrors()), 0)
        unregister()
        self.assertEqual(reloads.names, ["a", "b"])

    def test_log_level_from_the_config_file(self):
        saved = logs.control.level
        self.addCleanup(logs.set_level, saved)
        path = self.mktemp()
        with open(path, "w") as f:
            f.write('logLevel = "warn"\n')
        ops = OperationsService(default_config(), Clock())
        ops.activate(path, {})
        self.assertEqual(ops.reloads.reload_all(), {"logLevel": "logLevel info -> warn"})
        self.assertIs(logs.control.level, LogLevelName.WARN)
        with open(path, "w") as f:
            f.write('logLevel = "loud"\n')
        self.assertEqual(ops.reloads.reload_all(), {})
        self.assertIs(logs.control.level, LogLevelName.WARN)

    def test_command_line_wins_over_the_file(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write('logLevel = "debug"\n')
        ops = OperationsService(default_config(), Clock())
        ops.activate(path, {"logLevel": "command line"})
        self.assertIn("set on the command line", ops.reload_log_level())
        self.assertIs(logs.control.level, LogLevelName.INFO)


class Slow(Service):
    name = "slow part"

    def __init__(self) -> None:
        self.d: Deferred[None] = Deferred()

    def stopService(self):
        super().stopService()
        return self.d


class BoundedStop(TestCase):
    def test_fires_when_the_parts_are_done(self):
        clock, parent, slow = Clock(), MultiService(), Slow()
        slow.setServiceParent(parent)
        parent.startService()
        d = stop_within(parent, 10, clock)
        self.assertNoResult(d)
        slow.d.callback(None)
        self.successResultOf(d)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_fires_at_the_bound_and_names_what_is_pending(self):
        clock, parent, slow = Clock(), MultiService(), Slow()
        slow.setServiceParent(parent)
        Service().setServiceParent(parent)
        parent.startService()
        events: list[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        d = stop_within(parent, 10, clock)
        clock.advance(9.9)
        self.assertNoResult(d)
        clock.advance(0.1)
        self.successResultOf(d)
        self.assertFalse(parent.running)
        warnings = [e for e in events if "--shutdownTimeout" in e.get("log_format", "")]
        self.assertEqual(len(warnings), 1)
        self.assertEqual(warnings[0]["pending"], "slow part")
        slow.d.callback(None)  # finishing late changes nothing

    def test_a_failing_part_is_logged(self):
        clock, parent, slow = Clock(), MultiService(), Slow()
        slow.setServiceParent(parent)
        parent.startService()
        d = stop_within(parent, 10, clock)
        slow.d.errback(RuntimeError("boom"))
        self.successResultOf(d)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class Sighup(TestCase):
    timeout = 30

    @inlineCallbacks
    def test_sighup_rereads_the_log_level(self):
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(workdir)
        config = os.path.join(workdir, "ykcproxy.toml")
        with open(config, "w") as f:
            f.write('tcpPort = 0\nhttpPort = 0\nhost = "127.0.0.1"\nmessagingServerType = "none"\n')
            f.write('logFormat = "json"\nlogLevel = "info"\n')
        proc = spawn(self, [command("ykcproxy"), "-config", config], cwd=workdir)
        yield proc.saying(b"SIGHUP reloads: logLevel")
        with open(config, "w") as f:
            f.write('tcpPort = 0\nhttpPort = 0\nhost = "127.0.0.1"\nmessagingServerType = "none"\n')
            f.write('logFormat = "json"\nlogLevel = "debug"\n')
        proc.signal("HUP")
        yield proc.saying(b"SIGHUP: reloaded")
        proc.signal("TERM")
        code = yield proc.ended
        self.assertEqual(code, 0)
        lines = [json.loads(line) for line in proc.output.decode().splitlines()]
        reloaded = [line for line in lines if line["text"].startswith("reloaded logLevel")]
        self.assertEqual(reloaded[0]["what"], "logLevel info -> debug")
        self.assertEqual({line["namespace"] for line in lines} & {"twisted.internet.protocol"}, set())

    @inlineCallbacks
    def test_sighup_reloads_the_allow_list(self):
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(workdir)
        allow = os.path.join(workdir, "allow.txt")
        with open(allow, "w") as f:
            f.write("32010200000001\n")
        config = os.path.join(workdir, "ykcproxy.toml")
        with open(config, "w") as f:
            f.write('tcpPort = 0\nhttpPort = 0\nhost = "127.0.0.1"\nmessagingServerType = "none"\n')
            f.write(f'logFormat = "json"\nallowList = "{allow}"\n')
        proc = spawn(self, [command("ykcproxy"), "-config", config], cwd=workdir)
        yield proc.saying(b"allowList")
        with open(allow, "w") as f:
            f.write("32010200000001\n32010200000002\n")
        proc.signal("HUP")
        yield proc.saying(b"SIGHUP: reloaded")
        proc.signal("TERM")
        code = yield proc.ended
        self.assertEqual(code, 0)
        lines = [json.loads(line) for line in proc.output.decode().splitlines()]
        reloaded = [line for line in lines if line["text"].startswith("reloaded allowList")]
        self.assertIn("2 pile ids", reloaded[0]["what"])


class UnderTwistd(TestCase):
    timeout = 30

    @inlineCallbacks
    def test_json_filters_and_quiet_scrapes(self):
        import treq

        argv = [command("twistd"), "-n", "--pidfile=", "ykcproxy", "--host=127.0.0.1", "--tcpPort=0"]
        argv += ["--httpPort=0", "--messagingServerType=none", "--logFormat=json", "--dataDir="]
        proc = spawn(self, argv)
        _, http_port = yield proc.ready
        yield proc.saying(b"SIGHUP reloads: logLevel")
        for path in ("/healthz", "/metrics", "/piles"):
            response = yield treq.get(f"http://127.0.0.1:{http_port}{path}", persistent=False)
            yield response.content()
        yield proc.saying(b"GET /piles HTTP/1.1")  # its access line
        proc.signal("TERM")
        yield proc.ended
        output = proc.output.decode()
        after = output[output.index('{"time"') :].splitlines()
        records = [json.loads(line) for line in after]  # every line after the service started
        self.assertTrue(any(r["text"].startswith("running (pid") for r in records))
        self.assertNotIn("/healthz", output)
        self.assertNotIn("/metrics", output)
        self.assertNotIn("Starting factory", output)


class PileLineFields(TestCase):
    """Every log line about a pile carries its id, remote address and seq as fields."""

    def test_pile_lines_carry_id_remote_and_seq(self):
        from tests.stub_api import StubApi
        from ykcproxy.wire.codec import encode_frame
        from ykcproxy.wire.crc import CrcOrder

        events: list[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        stub = StubApi(max_frame_rate=0)
        pile = stub.pile("32010200000001")  # login, online
        pile.send(0x03, seq=9)
        bad = bytearray(encode_frame(0x03, 10, b"\x00" * 13, CrcOrder.LOW_FIRST))
        bad[-1] ^= 0xFF
        pile.protocol.dataReceived(bytes(bad))  # a bad CRC: dropped, logged
        stub.piles.tracer.switch("32010200000001", True)
        pile.send(0x03, seq=11)  # traced
        again = stub.pile("32010200000001")  # logs in again elsewhere: replaces the first
        again.protocol.transport.loseConnection()
        again.protocol.connectionLost()
        about_piles = [e for e in events if e.get("log_namespace", "").startswith("ykcproxy.pile")]
        self.assertGreaterEqual(len(about_piles), 6, [e["log_format"] for e in about_piles])
        for event in about_piles:
            with self.subTest(line=event["log_format"]):
                self.assertIn("remote", event)
                self.assertTrue(event["remote"].startswith("10.0.0.1:"), event)
                self.assertIn("seq", event)
                self.assertIn(event.get("pile_id"), ("32010200000001", ""), event)
        seqs: dict[str, list[int]] = {}
        for e in about_piles:
            seqs.setdefault(e["log_format"], []).append(e["seq"])
        self.assertEqual(seqs["dropped {kind} from {remote}: {detail}: {hex}"], [9])  # the latest good frame
        self.assertEqual(seqs["trace {pile_id} {direction} 0x{ft} seq {seq}: {hex} {fields}"][:2], [11, 11])
