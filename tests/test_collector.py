"""The garbage collector policy: freezes on its schedule, gives the objects back every renew-th time."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import TestCase

from ykcproxy.collector import CollectorPolicy
from ykcproxy.forward.service import PeriodicService
from ykcproxy.options import default_config
from ykcproxy.service import Options, ProxyService


class Policy(TestCase):
    def test_freezes_on_each_tick_and_unfreezes_every_renew_th(self) -> None:
        calls: list[str] = []
        policy = CollectorPolicy(
            renew=3, freeze=lambda: calls.append("freeze"), unfreeze=lambda: calls.append("unfreeze"),
            frozen=lambda: 0,
        )  # fmt: skip
        clock = Clock()
        service = PeriodicService("collector freeze", 300, policy.tick, clock)
        service.startService()
        self.assertEqual(calls, ["freeze"], "the first tick at start")
        clock.advance(300)
        clock.advance(300)
        clock.advance(300)
        self.assertEqual(calls, ["freeze", "freeze", "unfreeze", "freeze"])
        service.stopService()
        clock.advance(3000)
        self.assertEqual(len(calls), 4, "nothing once stopped")

    def test_wired_by_default_and_off_with_0(self) -> None:
        def named(config: object) -> list[str]:
            proxy = ProxyService(config, MemoryReactor())  # type: ignore[arg-type]
            return [getattr(s, "name", "") for s in proxy]

        self.assertEqual(default_config().gc_freeze_interval, 300.0)
        self.assertIn("collector freeze", named(default_config(data_dir="")))
        self.assertNotIn("collector freeze", named(default_config(data_dir="", gc_freeze_interval=0)))

    def test_0_is_accepted_where_users_write_it(self) -> None:
        for argv, environ in ((["--gcFreezeInterval", "0"], {}), ([], {"YKCPROXY_GCFREEZEINTERVAL": "0"})):
            options = Options(environ=environ)
            options.parseOptions(argv)
            self.assertEqual(options.config.gc_freeze_interval, 0.0)
        with self.assertRaises(Exception) as caught:
            Options(environ={}).parseOptions(["--gcFreezeInterval", "-1"])
        self.assertIn("--gcFreezeInterval", str(caught.exception))
