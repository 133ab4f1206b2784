"""The pile-side policy: logins, auto answers, forwarding, sessions.

:class:`PileServerFactory` is the Factory of :class:`PileProtocol`; every
whole frame a connection reads comes here.  This module is the one place
that decides what the proxy does with a frame.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from ykcproxy.config import CrcMode, ProxyConfig
from ykcproxy.forward.base import Message
from ykcproxy.forward.delivery import Delivery
from ykcproxy.jsonenc import dumps
from ykcproxy.metrics import Metrics
from ykcproxy.pile.protocol import PileProtocol
from ykcproxy.pile.registry import Registry
from ykcproxy.pile.session import PileSession
from ykcproxy.pile.waiters import ReplyWaiters
from ykcproxy.wire.codec import Codec, DecodeError
from ykcproxy.wire.crc import CrcOrder
from ykcproxy.wire.framer import FramingError, RawFrame
from ykcproxy.wire.frames import Direction

LOGIN, LOGIN_REPLY = 0x01, 0x02
HEARTBEAT, HEARTBEAT_REPLY = 0x03, 0x04
BILLING_VERIFY, BILLING_VERIFY_REPLY = 0x05, 0x06
REALTIME = 0x13
TRANSACTION, TRANSACTION_CONFIRM = 0x3B, 0x40
TIME_SYNC = 0x56
DAY = 86400.0

_FT = [f"{code:02x}" for code in range(256)]


class PileServerFactory(Factory):
    """Builds :class:`PileProtocol` connections and decides what frames do."""

    protocol = PileProtocol  # type: ignore[assignment]
    log = Logger()
    noisy = False

    def __init__(
        self,
        config: ProxyConfig,
        clock: IReactorTime,
        forward: Delivery | None,
        metrics: Metrics | None = None,
        codec: Codec | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.forward = forward
        self.metrics = metrics or Metrics()
        self.codec = codec or Codec()
        self.registry = Registry()
        self.waiters = ReplyWaiters()
        self._waiting = self.waiters.by_pile  # tested per frame: a dict, not a method call
        self.connections: set[PileProtocol] = set()
        self.boot_id = os.urandom(6).hex()
        self.paused = False
        self._counter = 0
        self.initial_crc_order = (
            CrcOrder.HIGH_FIRST if config.crc_mode is CrcMode.HIGH_FIRST else CrcOrder.LOW_FIRST
        )
        self.follow_crc_order = config.crc_mode is CrcMode.AUTO
        catalogue = self.codec.catalogue
        #: Uplink frame types the platform answers (01, 03, 05, 09, 31, 3b, a1).
        self.requests = {f.answers for f in catalogue.values() if f.direction is Direction.DOWN and f.answers}
        #: Uplink frame types that answer a platform command (REST calls may wait for them).
        self.replies = {code for code, f in catalogue.items() if f.direction is Direction.UP and f.answers}
        #: The decoder of each pile→platform frame type: the per-frame dispatch is one lookup.
        self._uplink_decoders = {
            code: self.codec.decoder(code) for code, f in catalogue.items() if f.direction is Direction.UP
        }
        self._frames_in = self.metrics.frames_in
        self.auto_confirm = config.auto_transaction_record_confirm and forward is not None
        self.metrics.gauge_function(self.metrics.connections, lambda: len(self.connections))
        self.metrics.gauge_function(self.metrics.piles, lambda: len(self.registry))

    # -- connections -------------------------------------------------------------
    def pause_reading(self, paused: bool) -> None:
        """Stop (or resume) reading from every pile: backpressure from the outbox."""
        self.paused = paused
        for proto in self.connections:
            proto.pause(paused)

    def connection_made(self, proto: PileProtocol) -> None:
        """A pile connected (nothing is known of it until it logs in)."""
        self.connections.add(proto)
        if self.paused:
            proto.pause(True)
        self.log.debug("pile connection from {remote}", remote=proto.remote)

    def connection_lost(self, proto: PileProtocol, reason: str) -> None:
        """A connection closed: its piles go offline with ``reason``."""
        self.connections.discard(proto)
        for session in list(proto.sessions.values()):
            self._drop_session(session, reason)
        self.log.info("pile connection {remote} closed ({reason})", remote=proto.remote, reason=reason)

    def expire_silent_piles(self, proto: PileProtocol, now: float, floor: float) -> float:
        """Take offline the piles of a shared link that fell silent while others talk.

        A pile counts as heard at ``floor`` at the latest (when reading resumed
        after a pause).  Returns the seconds until the next of them could time out.
        """
        timeout = self.config.silence_timeout
        next_check = timeout
        for session in list(proto.sessions.values()):
            idle = now - max(session.last_seen, floor)
            if idle < timeout:
                next_check = min(next_check, timeout - idle)
                continue
            self.log.info(
                "pile {pile_id} silent for {idle:.0f}s on {remote}, which other piles still use; "
                "taking it offline",
                pile_id=session.pile_id,
                idle=idle,
                remote=proto.remote,
            )
            self._drop_session(session, "timeout")
        return next_check

    def close_all(self, reason: str = "shutdown") -> None:
        """Take every pile offline with ``reason`` and close the connections."""
        for proto in list(self.connections):
            for session in list(proto.sessions.values()):
                self._drop_session(session, reason)
            proto.close(reason)

    # -- input ----------------------------------------------------------------------
    def framing_error(self, proto: PileProtocol, err: FramingError) -> None:
        """Bytes that are no frame: logged with their hex, counted, dropped."""
        self.metrics.frame_error(err.kind)
        self.log.warn(
            "dropped {kind} from {remote}: {detail}: {hex}",
            kind=err.kind,
            remote=proto.remote,
            detail=err.detail,
            hex=err.data[:300].hex(),
        )

    def _bad_frame(self, proto: PileProtocol, frame: RawFrame, kind: str, detail: str) -> None:
        self.metrics.frame_error(kind)
        self.log.warn(
            "dropped frame 0x{ft} from {remote}: {detail}: {hex}",
            ft=_FT[frame.code],
            remote=proto.remote,
            kind=kind,
            detail=detail,
            hex=frame.raw.hex(),
        )

    def frame_received(self, proto: PileProtocol, frame: RawFrame) -> None:
        """One whole frame with a good CRC from ``proto``."""
        code = frame.code
        self._frames_in[_FT[code]] += 1
        decode = self._uplink_decoders.get(code)
        if decode is None or frame.encrypted:
            self._not_plain_uplink(proto, frame)
            return
        try:
            fields = decode(frame.body)
        except DecodeError as e:
            self._bad_frame(proto, frame, "decode", str(e))
            return
        pile_id = fields["id"]
        session = proto.sessions.get(pile_id)
        if code == LOGIN:
            self._login(proto, session, frame, fields)
            return
        if session is None or not session.logged_in:
            self._bad_frame(proto, frame, "not_logged_in", f"pile {pile_id} has no accepted login here")
            return
        session.last_seen = proto.last_seen
        if code in self.requests:
            session.last_request_seq[code] = frame.seq
        if code == HEARTBEAT:
            session.guns.setdefault(fields["gun"], {})["gunStatus"] = fields["gunStatus"]
            if self.config.auto_heartbeat_response:
                self.send(
                    session, HEARTBEAT_REPLY, {"id": pile_id, "gun": fields["gun"], "response": 0}, frame.seq
                )
        elif code == REALTIME:
            gun = session.guns.setdefault(fields["gunId"], {})
            gun["status"] = fields["status"]
            gun["plugged"] = fields["plugged"]
            gun["tradeSeq"] = fields["tradeSeq"]
        elif code == BILLING_VERIFY and self.config.auto_billing_model_verify:
            answer = {"id": pile_id, "billingModelCode": fields["billingModelCode"], "result": True}
            self.send(session, BILLING_VERIFY_REPLY, answer, frame.seq)
        elif code == TRANSACTION:
            session.remember_trade(fields["tradeSeq"], frame.seq)
            if self.forward is not None:
                message_id = f"{pile_id}-3b-{fields['tradeSeq']}"
                message = self._message(frame, pile_id, fields, message_id=message_id)
                self._forward_transaction(pile_id, fields["tradeSeq"], frame.seq, message)
            return
        if self._waiting and code in self.replies:
            self.waiters.deliver(pile_id, code, fields)
        if self.forward is not None:
            self.forward.submit(self._message(frame, pile_id, fields))

    def _not_plain_uplink(self, proto: PileProtocol, frame: RawFrame) -> None:
        """Frames that are not plain pile→platform frames of V1.6 (the rare path)."""
        if frame.encrypted:
            self._encrypted(proto, frame)
        elif frame.code not in self.codec.catalogue:
            self._bad_frame(proto, frame, "unknown_type", "not a V1.6 frame type")
        else:
            self._bad_frame(proto, frame, "direction", "a platform→pile frame type sent by a pile")

    def _encrypted(self, proto: PileProtocol, frame: RawFrame) -> None:
        """Encrypted bodies are forwarded undecoded (no keys can be configured yet)."""
        piles = [s.pile_id for s in proto.sessions.values() if s.logged_in]
        if len(piles) != 1:
            self._bad_frame(proto, frame, "encrypted", "encrypted frame on a link without one logged-in pile")
            return
        if self.forward is not None:
            fields = {"id": piles[0], "body": frame.body.hex()}
            self.forward.submit(self._message(frame, piles[0], fields))

    # -- login ------------------------------------------------------------------------
    def _login(
        self, proto: PileProtocol, session: PileSession | None, frame: RawFrame, fields: dict[str, Any]
    ) -> None:
        pile_id = fields["id"]
        if session is None:
            now = proto.last_seen
            session = PileSession(pile_id, proto, connected_at=now, last_seen=now)
            proto.sessions[pile_id] = session
        session.login = {k: v for k, v in fields.items() if k != "id"}
        session.last_seen = proto.last_seen
        session.last_request_seq[LOGIN] = frame.seq
        self.log.info(
            "login of pile {pile_id} from {remote}", pile_id=pile_id, remote=proto.remote, login=session.login
        )
        if self.forward is not None:
            self.forward.submit(self._message(frame, pile_id, fields))
        if self.config.auto_verification:
            self.answer_login(session, True, frame.seq)
        else:
            self.registry.add_pending(session)

    def answer_login(self, session: PileSession, accepted: bool, seq: int | None = None) -> bytes:
        """Send 0x02; accept the login into the registry, or close the link if refused."""
        if not accepted and not self.registry.is_pending(session):
            raise LookupError(f"pile {session.pile_id} has no pending login to refuse")
        if seq is None:
            seq = session.reply_seq(LOGIN)
        frame = self.send(session, LOGIN_REPLY, {"id": session.pile_id, "result": accepted}, seq)
        if accepted:
            self._accept(session)
        else:
            self.log.info("login of pile {pile_id} refused; closing", pile_id=session.pile_id)
            self._drop_session(session, "closed")
            if not session.connection.sessions:
                session.connection.close("closed")
        return frame

    def _accept(self, session: PileSession) -> None:
        if session.logged_in and self.registry.get(session.pile_id) is session:
            return
        old = self.registry.accept(session)
        if old is not None:
            self.log.info(
                "pile {pile_id} logged in again from {remote}; replacing {old}",
                pile_id=session.pile_id,
                remote=session.connection.remote,
                old=old.connection.remote,
            )
            self._drop_session(old, "replaced", was_registered=True)
        self._event("online", session.pile_id, {"remote": session.connection.remote})
        if self.config.auto_time_sync:
            self._time_sync(session)

    def _drop_session(self, session: PileSession, reason: str, was_registered: bool = False) -> None:
        proto = session.connection
        if proto.sessions.get(session.pile_id) is session:
            del proto.sessions[session.pile_id]
        if session.time_sync is not None and session.time_sync.active():
            session.time_sync.cancel()
        session.time_sync = None
        if self.registry.discard(session) or was_registered:
            session.logged_in = False
            self._event("offline", session.pile_id, {"remote": proto.remote, "reason": reason})
            self.waiters.fail_pile(session.pile_id, f"pile {session.pile_id} went offline ({reason})")
        if reason == "replaced" and not proto.sessions:
            proto.close("replaced")

    def _time_sync(self, session: PileSession) -> None:
        if self.registry.get(session.pile_id) is not session:
            return
        now_ms = int(self.clock.seconds() * 1000)
        self.send(session, TIME_SYNC, {"id": session.pile_id, "time": now_ms})
        session.time_sync = self.clock.callLater(DAY, self._time_sync, session)

    # -- transactions ---------------------------------------------------------------
    def _forward_transaction(self, pile_id: str, trade_seq: str, seq: int, message: Message) -> None:
        assert self.forward is not None
        if not self.auto_confirm:
            self.forward.submit(message)
            return
        safe = self.forward.submit(message, confirm=True)
        assert safe is not None

        def confirm(_: object) -> None:
            session = self.registry.get(pile_id)
            reply_seq = session.trade_seqs.get(trade_seq) if session is not None else None
            if session is None or reply_seq is None:
                # Gone, or logged in again on a link that has not sent this record: a
                # 0x40 there would carry a seq of the old link. The pile sends it again.
                self.log.info(
                    "record {trade_seq} of pile {pile_id} is stored, but not on its current link; "
                    "it will send it again",
                    trade_seq=trade_seq,
                    pile_id=pile_id,
                )
                return
            self.send(session, TRANSACTION_CONFIRM, {"tradeSeq": trade_seq, "result": 0}, reply_seq)

        safe.addCallback(confirm)
        safe.addErrback(lambda f: self.log.failure("storing record {t}", f, t=trade_seq))

    # -- output ----------------------------------------------------------------------
    def send(
        self, session: PileSession, code: int, fields: Mapping[str, Any], seq: int | None = None
    ) -> bytes:
        """Encode and write a platform→pile frame; ``seq`` defaults to the session's next."""
        if seq is None:
            seq = session.next_seq()
        body = self.codec.encode_body(code, fields)
        frame = session.connection.send(code, seq, body)
        self.metrics.frame_out(_FT[code])
        return frame

    def command(self, session: PileSession, code: int, fields: Mapping[str, Any]) -> tuple[int, bytes]:
        """Send a checked REST command; returns (seq, frame bytes).

        Replies reuse the seq of the pile's latest matching request; commands
        (or replies with nothing to answer) take the session's next seq.
        """
        header = fields.get("header") if isinstance(fields.get("header"), dict) else None
        seq = header.get("seq") if header else None
        if seq is None:
            ftype = self.codec.frame_type(code)
            if ftype.answers is not None:
                trade = fields.get("tradeSeq") if code == TRANSACTION_CONFIRM else None
                seq = session.reply_seq(ftype.answers, trade)
        if seq is None:
            seq = session.next_seq()
        if code == LOGIN_REPLY:
            return seq, self.answer_login(session, bool(fields["result"]), seq)
        return seq, self.send(session, code, fields, seq)

    # -- messages for consumers ---------------------------------------------------
    def next_message_id(self) -> str:
        """A message id unique across this process and its restarts."""
        self._counter += 1
        return f"{self.boot_id}-{self._counter:x}"

    def _message(
        self, frame: RawFrame, pile_id: str, fields: dict[str, Any], message_id: str | None = None
    ) -> Message:
        ft = _FT[frame.code]
        mid = message_id or self.next_message_id()
        header = {
            "length": frame.raw[1],
            "seq": frame.seq,
            "encrypted": frame.encrypted,
            "frameId": ft,
            "messageId": mid,
            "receivedAt": int(self.clock.seconds() * 1000),
            "raw": frame.raw.hex(),
        }
        payload = dumps({"header": header, **fields})
        return Message(ft, pile_id, mid, payload)

    def _event(self, kind: str, pile_id: str, extra: dict[str, Any]) -> None:
        self.log.info("pile {pile_id} {kind}", pile_id=pile_id, kind=kind, **extra)
        if self.forward is None:
            return
        mid = self.next_message_id()
        header = {"frameId": kind, "messageId": mid, "receivedAt": int(self.clock.seconds() * 1000)}
        payload = dumps({"header": header, "id": pile_id, **extra})
        self.forward.submit(Message(kind, pile_id, mid, payload))
