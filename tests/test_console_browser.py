"""The console in a real headless browser: Debian's chromium and chromedriver, driven by Selenium.

The real service runs on ephemeral loopback ports in the test's reactor; piles
are raw sockets.  Selenium calls block, so they run in a thread
(:func:`deferToThread`) while the reactor keeps serving the proxy.  The tests
skip when Selenium, chromium or chromedriver is missing.

With ``YKCPROXY_SCREENSHOTS=<dir>`` each test saves a screenshot of its view
there (``doc/console/`` holds the committed ones).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest, TestCase

from tests.support import call, connect_pile, login, start_proxy, until
from ykcproxy.sim.link import PileLink
from ykcproxy.wire.examples import example

try:
    from selenium import webdriver
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait
except ImportError:  # pragma: no cover - the test extra installs it
    webdriver = None

PILE = "32010200000001"
OTHER = "32010200000002"
WAIT = 20.0  # seconds a browser condition may take


def _browser() -> tuple[str, str] | str:
    """(chromium, chromedriver), or why there is none."""
    if webdriver is None:
        return "selenium is not installed (pip install selenium, or the 'test' extra)"
    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    driver = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver")
    if chromium is None or driver is None:
        return "no chromium/chromedriver found (Debian: apt-get install chromium chromium-driver)"
    return chromium, driver


BROWSER = _browser()
#: Where screenshots go (a relative path is from the repository's root: trial runs in _trial_temp).
SHOTS = os.environ.get("YKCPROXY_SCREENSHOTS", "")
if SHOTS:
    SHOTS = str(Path(__file__).resolve().parent.parent / SHOTS)


class Browser:
    """One headless chromium; every method blocks (call them in a thread)."""

    def __init__(self, chromium: str, chromedriver: str) -> None:
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for arg in (
            "--headless=new",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--window-size=1500,950",
            "--lang=en-US",
        ):
            options.add_argument(arg)
        service = webdriver.ChromeService(executable_path=chromedriver)
        self.driver = webdriver.Chrome(options=options, service=service)

    def wait(self, condition: Callable[[Any], Any], what: str, timeout: float = WAIT) -> Any:
        """Wait until ``condition(driver)`` is truthy; fails naming ``what``."""
        try:
            return WebDriverWait(
                self.driver,
                timeout,
                poll_frequency=0.05,
                ignored_exceptions=(StaleElementReferenceException,),
            ).until(condition)
        except TimeoutException:
            raise AssertionError(f"browser: {what} not within {timeout} s") from None

    def find(self, css: str) -> Any:
        """The first element matching ``css`` (waited for), displayed."""
        return self.wait(
            lambda d: next((e for e in d.find_elements(By.CSS_SELECTOR, css) if e.is_displayed()), None),
            f"{css!r} shown",
        )

    def all(self, css: str) -> list[Any]:
        return list(self.driver.find_elements(By.CSS_SELECTOR, css))

    def shot(self, name: str) -> None:
        """Save a screenshot when YKCPROXY_SCREENSHOTS names a directory."""
        if SHOTS:
            Path(SHOTS).mkdir(parents=True, exist_ok=True)
            self.driver.save_screenshot(str(Path(SHOTS) / f"{name}.png"))

    def quit(self) -> None:
        self.driver.quit()


class ConsoleTest(TestCase):
    """Each test gets its own browser; ``b(fn, *args)`` runs ``fn(browser, *args)`` in a thread."""

    timeout = 90

    @inlineCallbacks
    def setUp(self) -> Any:
        if isinstance(BROWSER, str):
            raise SkipTest(BROWSER)
        self.browser = yield deferToThread(Browser, *BROWSER)
        self.addCleanup(deferToThread, self.browser.quit)

    def b(self, fn: Callable[..., Any], *args: Any) -> Any:
        return deferToThread(fn, self.browser, *args)

    def open(self, proxy: Any, hash_: str = "") -> Any:
        def go(br: Browser) -> None:
            br.driver.get(f"http://127.0.0.1:{proxy.http_port}/{hash_}")
            br.wait(
                lambda d: "ready" in d.find_element(By.TAG_NAME, "body").get_attribute("class"),
                "the console ready",
            )

        return self.b(go)

    def watch(self, hash_: str) -> Any:
        """Navigate within the page; waits for the live stream."""

        def go(br: Browser) -> None:
            br.driver.execute_script("location.hash = arguments[0]", hash_)
            br.wait(lambda d: d.find_element(By.ID, "stream-state").text == "live", "the event stream live")

        return self.b(go)


def _pile_row(pile_id: str, state: str) -> Callable[[Browser], str]:
    def check(br: Browser) -> str:
        row = br.find(f'tr.pile[data-pile="{pile_id}"][data-state="{state}"]')
        return str(row.text)

    return check


class PileList(ConsoleTest):
    @inlineCallbacks
    def test_a_pile_appears_live_and_goes_offline(self) -> Any:
        proxy = start_proxy(self, auto_verification=True)
        first = yield login(self, proxy, OTHER)
        yield self.open(proxy)
        yield self.b(_pile_row(OTHER, "online"))
        yield self.watch("#/piles")
        yield login(self, proxy, PILE)  # after the page loaded: the stream tells
        text = yield self.b(_pile_row(PILE, "online"))
        self.assertIn("127.0.0.1", text)
        first.send(0x03, example(0x03, OTHER))

        def counts(br: Browser) -> None:
            br.wait(lambda d: d.find_element(By.ID, "count-online").text == "2", "2 online")
            br.wait(
                lambda d: br.find(f'tr.pile[data-pile="{PILE}"] td.protocol').text == "1",
                "the protocol version (from GET /piles)",
            )

        yield self.b(counts)
        assert first.transport is not None
        first.transport.loseConnection()
        yield self.b(_pile_row(OTHER, "offline"))
        yield self.b(lambda br: br.shot("piles"))

        def filtered(br: Browser) -> None:
            box = br.find("#pile-filter")
            box.send_keys("offline")
            br.wait(
                lambda d: [r.get_attribute("data-pile") for r in br.all("tr.pile")] == [OTHER], "filtered"
            )
            br.wait(lambda d: d.find_element(By.ID, "count-offline").text == "1", "1 offline")

        yield self.b(filtered)

    @inlineCallbacks
    def test_a_pending_login_then_accepted_and_its_gun_charging(self) -> Any:
        proxy = start_proxy(self, auto_verification=False)
        yield self.open(proxy)
        yield self.watch("#/piles")
        link: PileLink = yield connect_pile(self, proxy)
        link.send(0x01, example(0x01, PILE))
        yield self.b(_pile_row(PILE, "pending"))
        yield self.b(
            lambda br: br.wait(lambda d: d.find_element(By.ID, "count-pending").text == "1", "1 pending")
        )
        answer = yield call(proxy, "POST", "/proxy/02", {"id": PILE, "result": True})
        self.assertEqual(answer.code, 200)
        yield link.expect(0x02)
        yield self.b(_pile_row(PILE, "online"))
        trade = PILE + "01" + "261207120000" + "0001"
        charging = {**example(0x13, PILE), "tradeSeq": trade, "status": 3, "plugged": 1}
        link.send(0x13, charging)

        def gun(br: Browser) -> None:
            br.find(f'tr.pile[data-pile="{PILE}"] .gun[data-gun="01"] .g-charging')
            link = br.find(f'tr.pile[data-pile="{PILE}"] .gun a.trade')
            assert link.get_attribute("href").endswith("#/order/" + trade)
            assert br.driver.find_element(By.ID, "count-pending").text == "0"
            br.shot("piles-charging")

        yield self.b(gun)


class Frames(ConsoleTest):
    @inlineCallbacks
    def test_frames_live_both_ways_bad_crc_marked_and_hover(self) -> Any:
        proxy = start_proxy(self, auto_verification=True)
        link = yield login(self, proxy, PILE)
        yield self.open(proxy, f"#/pile/{PILE}")
        # The login and its answer come from the history.
        yield self.b(lambda br: br.find('tr.frame[data-code="01"][data-dir="up"]'))
        yield self.b(lambda br: br.find('tr.frame[data-code="02"][data-dir="down"]'))
        yield self.b(
            lambda br: br.wait(lambda d: d.find_element(By.ID, "stream-state").text == "live", "live")
        )
        link.send(0x03, example(0x03, PILE), seq=77)
        row = yield self.b(lambda br: br.find('tr.frame[data-code="03"][data-seq="77"]'))
        self.assertIn("heartbeat", row.text)
        yield self.b(lambda br: br.find('tr.frame[data-code="04"][data-dir="down"]'))
        bad = bytearray(link.frame(0x03, example(0x03, PILE), seq=78))
        bad[-1] ^= 0xFF
        link.write(bytes(bad))

        def marked(br: Browser) -> None:
            row = br.find("tr.frame.bad")
            assert "crc" in row.text, row.text
            row.click()
            br.find("#frame-detail .error-mark")
            assert br.find("#frame-hex").text.replace(" ", "").replace("\n", "") == bytes(bad).hex().upper()

        yield self.b(marked)

        def hover(br: Browser) -> None:
            br.find('tr.frame[data-code="03"][data-seq="77"]').click()
            field = br.find('#frame-detail tr.field[data-field="id"]')
            ActionChains(br.driver).move_to_element(field).perform()
            lit = br.wait(
                lambda d: d.find_elements(By.CSS_SELECTOR, "#frame-hex .byte.hl"), "bytes highlighted"
            )
            assert [int(b.get_attribute("data-i")) for b in lit] == list(range(6, 13)), lit
            assert "".join(b.text for b in lit) == PILE
            # And the other way round: a byte of gunStatus lights its field.
            byte = br.find('#frame-hex .byte[data-field="gunStatus"]')
            ActionChains(br.driver).move_to_element(byte).perform()
            br.wait(
                lambda d: "hl" in br.find('tr.field[data-field="gunStatus"]').get_attribute("class"),
                "the field highlighted",
            )
            assert not br.all('tr.field.hl[data-field="id"]')
            br.shot("frames")

        yield self.b(hover)

        def copy(br: Browser) -> None:
            br.find("#detail-copy").click()
            br.wait(lambda d: br.find("#detail-copy").text == "copied", "the hex copied")

        yield self.b(copy)


def _start(br: Browser, cards: str = "1234", wait: str = "10") -> str:
    """Fill the 0x34 form and send it; returns the tradeSeq it carries."""
    form = br.find("#cmd-34")
    for name, value in (("logicCard", cards), ("physicalCard", cards), ("balance", "10000")):
        box = form.find_element(By.NAME, name)
        box.clear()
        box.send_keys(value)
    waits = form.find_element(By.NAME, "wait")
    waits.clear()
    waits.send_keys(wait)
    trade = str(form.find_element(By.NAME, "tradeSeq").get_attribute("value"))
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    return trade


class Commands(ConsoleTest):
    @inlineCallbacks
    def test_start_from_the_form_reaches_the_pile_and_its_reply_shows(self) -> Any:
        proxy = start_proxy(self, auto_verification=True)
        link: PileLink = yield login(self, proxy, PILE)
        yield self.open(proxy, f"#/pile/{PILE}")
        sent = link.expect(0x34)
        trade = yield self.b(_start)
        got = yield sent
        self.assertEqual(got.fields["tradeSeq"], trade)
        self.assertEqual(got.fields["id"], PILE)
        self.assertEqual(got.fields["logicCard"].lstrip("0"), "1234")
        link.send(0x33, {**example(0x33, PILE), "tradeSeq": trade, "result": True, "reason": 0}, seq=got.seq)

        def reply(br: Browser) -> None:
            result = br.find("#cmd-34 .cmd-result.ok")
            assert result.find_element(By.CSS_SELECTOR, ".status").text == "200"
            row = result.find_element(By.CSS_SELECTOR, '.reply tr[data-field="tradeSeq"] td')
            assert row.text == trade, row.text
            br.shot("commands")

        yield self.b(reply)

    @inlineCallbacks
    def test_invalid_field_named_and_the_rate_editor(self) -> Any:
        proxy = start_proxy(self, auto_verification=True)
        link: PileLink = yield login(self, proxy, PILE)
        yield self.open(proxy, f"#/pile/{PILE}")

        def invalid(br: Browser) -> None:
            _start(br, cards="12x4")
            br.find("#cmd-34 .cmd-result.failed")
            br.wait(
                lambda d: br.find('#cmd-34 .field-error[data-field="logicCard"]').text, "the field's error"
            )

        yield self.b(invalid)

        sent = link.expect(0x58)
        before: list[int] = []

        def billing(br: Browser) -> None:
            form = br.find("#cmd-58")
            for box in form.find_elements(By.CSS_SELECTOR, "input[type=number]"):
                if box.get_attribute("name") != "wait" and not box.get_attribute("value"):
                    box.send_keys("100")
            code = form.find_element(By.NAME, "billingModelCode")
            code.clear()
            code.send_keys("0001")
            form.find_element(By.CSS_SELECTOR, '.brush[data-rate="1"]').click()
            slots = form.find_elements(By.CSS_SELECTOR, ".slot")
            assert len(slots) == 48
            before[:] = [int(s.get_attribute("data-rate")) for s in slots]
            ActionChains(br.driver).click_and_hold(slots[16]).move_to_element(slots[19]).release().perform()
            br.find('#cmd-58 .slot[data-slot="19"][data-rate="1"]')
            br.driver.execute_script("arguments[0].scrollIntoView()", form)
            waits = form.find_element(By.NAME, "wait")
            waits.clear()
            waits.send_keys("0.5")
            form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()

        yield self.b(billing)
        got = yield sent
        rates = got.fields["rateList"]
        self.assertEqual(rates[16:20], [1, 1, 1, 1])
        self.assertEqual(rates[:16] + rates[20:], before[:16] + before[20:])

        def timeout(br: Browser) -> None:
            result = br.find("#cmd-58 .cmd-result.timeout")
            assert result.find_element(By.CSS_SELECTOR, ".status").text == "504"
            br.driver.execute_script("arguments[0].scrollIntoView()", br.find("#cmd-58 h4"))
            br.shot("billing")

        yield self.b(timeout)


class Orders(ConsoleTest):
    @inlineCallbacks
    def test_a_misbehaving_piles_order_shows_its_anomaly(self) -> Any:
        proxy = start_proxy(self, auto_verification=True, session_start_timeout=1.0)
        link: PileLink = yield login(self, proxy, PILE)
        yield self.open(proxy, f"#/pile/{PILE}")
        sent = link.expect(0x34)
        trade = yield self.b(_start, "1234", "0.5")
        yield sent  # and never answered

        def gave_up(br: Browser) -> None:
            br.find("#cmd-34 .cmd-result.timeout")

        yield self.b(gave_up)
        yield until(lambda: proxy.sessions.get(trade) is not None and proxy.sessions.get(trade).anomalies, 10)
        yield self.watch("#/orders")

        def listed(br: Browser) -> None:
            br.find(f'tr.order[data-trade="{trade}"] .anomaly[data-kind="start-timeout"]')
            br.shot("orders")
            br.find(f'tr.order[data-trade="{trade}"] a').click()
            br.find('#order-anomalies .anomaly-item[data-kind="start-timeout"]')
            br.find("table.timeline tr.event.ev-anomaly")
            br.find("table.timeline tr.event.ev-frame")
            br.shot("order")

        yield self.b(listed)


class Access(ConsoleTest):
    @inlineCallbacks
    def test_with_a_token_nothing_loads_until_it_is_given(self) -> Any:
        proxy = start_proxy(self, auto_verification=True, api_token="s3cret")
        yield login(self, proxy, PILE)

        def refused(br: Browser) -> None:
            br.driver.get(f"http://127.0.0.1:{proxy.http_port}/")
            br.find("#token-dialog")
            assert not br.driver.find_element(By.ID, "main").is_displayed()
            assert not br.all("tr.pile")
            br.find("#token-input").send_keys("wrong")
            br.find("#token-submit").click()
            br.wait(lambda d: "refused" in br.find("#token-error").text, "the refusal shown")
            assert not br.all("tr.pile")
            br.shot("token")
            br.find("#token-input").send_keys("s3cret")
            br.find("#token-submit").click()
            br.find(f'tr.pile[data-pile="{PILE}"][data-state="online"]')
            assert not br.driver.find_element(By.ID, "token-dialog").is_displayed()
            # Kept for the tab: a reload does not ask again, and the stream carries the token.
            br.driver.refresh()
            br.find(f'tr.pile[data-pile="{PILE}"]')
            br.wait(lambda d: d.find_element(By.ID, "stream-state").text == "live", "the stream live")
            assert not br.driver.find_element(By.ID, "token-dialog").is_displayed()

        yield self.b(refused)

    @inlineCallbacks
    def test_the_read_token_sees_frames_but_no_forms(self) -> Any:
        proxy = start_proxy(self, auto_verification=True, api_token="s3cret", api_read_token="look")
        yield login(self, proxy, PILE)

        def read_only(br: Browser) -> None:
            br.driver.get(f"http://127.0.0.1:{proxy.http_port}/#/pile/{PILE}")
            br.find("#token-input").send_keys("look")
            br.find("#token-submit").click()
            br.find('tr.frame[data-code="01"]')
            br.wait(lambda d: d.find_element(By.ID, "stream-state").text == "live", "the stream live")
            br.wait(lambda d: d.find_element(By.ID, "access").text == "read-only", "read-only shown")
            assert not br.driver.find_element(By.ID, "commands").is_displayed()

        yield self.b(read_only)
        answer = yield call(
            proxy,
            "POST",
            "/proxy/92",
            {"id": PILE, "control": 1},
            headers={b"Authorization": [b"Bearer look"]},
        )
        self.assertEqual(answer.code, 403)
