"""The pile-side policy: what comes in, what is served, what goes out.

:class:`PileServerFactory` is the Factory of :class:`PileProtocol`; every
whole frame a connection reads comes here.  The decisions live apart:

- session lifecycle (pending, accepted, replaced, silent, shutdown):
  :class:`~ykcproxy.pile.registry.Registry`;
- what each frame type does (auto answers, state kept):
  :data:`ykcproxy.pile.dispatch.HANDLERS`;
- the message a consumer gets (header, message ids, online/offline):
  :class:`~ykcproxy.forward.envelope.Envelope`;
- the limits of the pile port: the measures in :mod:`ykcproxy.pile.limits`,
  the allow-list in :mod:`ykcproxy.pile.allowlist`; this class acts on them
  (refuse, drop, close), counts it (``ykc_pile_limit_actions``) and logs it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from ykcproxy.config import CrcMode, ProxyConfig
from ykcproxy.forward.delivery import Delivery
from ykcproxy.forward.envelope import Envelope
from ykcproxy.forward.records import RecordStore
from ykcproxy.metrics import Metrics
from ykcproxy.pile.allowlist import AllowList
from ykcproxy.pile.dispatch import HANDLERS, LOGIN, LOGIN_REPLY, TIME_SYNC, TRANSACTION_CONFIRM, Handler
from ykcproxy.pile.limits import ThrottledLog
from ykcproxy.pile.observers import FrameObserver, FrameRecorder
from ykcproxy.pile.protocol import PileProtocol
from ykcproxy.pile.registry import MOVED, Registry
from ykcproxy.pile.session import PileSession
from ykcproxy.pile.trace import FrameTracer
from ykcproxy.pile.waiters import ReplyWaiters
from ykcproxy.wire.codec import Codec, DecodeError, FixedFrame
from ykcproxy.wire.crc import CrcOrder
from ykcproxy.wire.framer import FramingError, RawFrame
from ykcproxy.wire.frames import Direction

DAY = 86400.0

_FT = [f"{code:02x}" for code in range(256)]

T = TypeVar("T")


def _by_code(table: Mapping[int, T]) -> list[T | None]:
    """``table`` as a list indexed by frame type code (None where it has none).

    Looked up for every frame: indexing a list by the type byte is cheaper
    than a dict's ``get``.
    """
    return [table.get(code) for code in range(256)]


def _by_type(observers: Sequence[FrameObserver], attribute: str) -> list[tuple[FrameObserver, ...] | None]:
    table: dict[int, list[FrameObserver]] = {}
    for observer in observers:
        for code in getattr(observer, attribute):
            table.setdefault(code, []).append(observer)
    return _by_code({code: tuple(group) for code, group in table.items()})


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
        allow_list: AllowList | None = None,
        observers: Sequence[FrameObserver] = (),
        envelope: Envelope | None = None,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
        records: RecordStore | None = None,
        recorder: FrameRecorder | None = None,
    ) -> None:
        """``allow_list`` defaults to the file ``config.allow_list`` names (none if empty).

        ``observers`` see the decoded frames of the types they name, both ways,
        and each pile going offline (the charging-session tracker is one).
        ``recorder`` keeps every frame of each pile, both ways (the console's
        frame history): sessions append to the rings it gives them.
        """
        self.config = config
        self.clock = clock
        self.forward = forward
        self.metrics = metrics or Metrics()
        self.codec = codec or Codec()
        self.envelope = envelope if envelope is not None else Envelope(clock)
        #: Told of each pile event (``online``, ``offline``, ``pending``): the console's stream.
        self.on_event = on_event
        self.recorder = recorder
        self.registry = Registry(on_online=self._online, on_offline=self._offline)
        self.waiters = ReplyWaiters()
        self._waiting = self.waiters.by_pile  # tested per frame: a dict, not a method call
        self.connections = self.registry.connections
        self.paused = False
        #: Frame type code → its handler beyond the common path (see :mod:`ykcproxy.pile.dispatch`), or None.
        self._handlers: list[Handler | None] = _by_code(HANDLERS)
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
        self._uplink_decoders = _by_code(
            {code: self.codec.decoder(code) for code, f in catalogue.items() if f.direction is Direction.UP}
        )
        #: The per-pile frame trace (``POST /piles/<id>/trace``): observes only while it traces a pile.
        self.tracer = FrameTracer(on_change=self._arrange_observers, fields_of=self._log_fields_of)
        self._given_observers = tuple(observers)
        self._arrange_observers()
        #: The per-frame counters, bumped inline (a method call each would cost more than the count).
        self._frames_in = self.metrics.frames_in
        self._frames_out = self.metrics.frames_out
        #: Where 0x3B records go when nothing is forwarded (standalone mode).
        self.records = records
        store = forward if forward is not None else records
        self.auto_confirm = config.auto_transaction_record_confirm and store is not None
        self.metrics.gauge_function(self.metrics.connections, lambda: len(self.connections))
        self.metrics.gauge_function(self.metrics.piles, lambda: len(self.registry))
        self.metrics.gauge_function(self.metrics.pending_logins, lambda: self.registry.pending_count)
        if allow_list is None and config.allow_list:
            allow_list = AllowList.load(config.allow_list)
        #: The pile ids allowed to log in (None: any); ``allow_list.reload()`` on SIGHUP.
        self.allow_list = allow_list
        #: Piles refused by the allow-list and logged already (each is logged once).
        self._refused_logged: set[str] = set()
        #: Connections refused by the connection limits (logged rate-limited).
        self._refusals = ThrottledLog(clock, self.log, "the pile port")

    def _arrange_observers(self) -> None:
        """Frame type → the observers of it, per direction (only types someone reads)."""
        tracing = (self.tracer,) if self.tracer.traced else ()
        self.observers = (*self._given_observers, *tracing)
        self._observe_up = _by_type(self.observers, "up_types")
        self._observe_down = _by_type(self.observers, "down_types")

    # -- connections -------------------------------------------------------------
    def pause_reading(self, paused: bool) -> None:
        """Stop (or resume) reading from every pile: backpressure from the outbox."""
        self.paused = paused
        for proto in self.connections:
            proto.pause(paused)

    def buildProtocol(self, addr: IAddress) -> PileProtocol | None:  # type: ignore[override]
        """A new connection, unless it is over ``--maxConnections`` (per address)."""
        host = str(getattr(addr, "host", "?"))
        config = self.config
        limit = None
        if config.max_connections > 0 and len(self.registry.connections) >= config.max_connections:
            limit, count = "max-connections", config.max_connections
        elif (
            config.max_connections_per_address > 0
            and self.registry.per_host.get(host, 0) >= config.max_connections_per_address
        ):
            limit, count = "max-connections-per-address", config.max_connections_per_address
        if limit is None:
            return super().buildProtocol(addr)  # type: ignore[return-value]
        self.metrics.limit_acted(limit)
        self._refusals.warn(
            limit,
            "refused a pile connection from {host}: {count} connections already ({kind})",
            host=host,
            count=count,
        )
        return None

    def connection_made(self, proto: PileProtocol) -> None:
        """A pile connected (nothing is known of it until it logs in)."""
        self.registry.connection_made(proto)
        if self.paused:
            proto.pause(True)
        self.log.debug("pile connection from {remote}", **proto.log_fields())

    def connection_lost(self, proto: PileProtocol, reason: str) -> None:
        """A connection closed: its piles go offline with ``reason``."""
        self.registry.connection_lost(proto, reason)
        self.metrics.connections_closed[reason] += 1
        self.log.info("pile connection {remote} closed ({reason})", reason=reason, **proto.log_fields())

    def expire_silent_piles(self, proto: PileProtocol, now: float, floor: float) -> float:
        """Take offline the piles of a shared link that fell silent while others talk.

        Returns the seconds until the next of them could time out.
        """
        return self.registry.expire_silent(proto.sessions.values(), now, floor, self.config.silence_timeout)

    def close_all(self, reason: str = "shutdown") -> None:
        """Take every pile offline with ``reason`` and close the connections."""
        self.registry.close_all(reason)

    # -- input ----------------------------------------------------------------------
    def framing_error(self, proto: PileProtocol, err: FramingError) -> None:
        """Bytes that are no frame: counted, logged (rate-limited) with their hex, dropped."""
        self.metrics.frame_error(err.kind)
        assert proto.bad_log is not None
        proto.bad_log.warn(
            err.kind,
            "dropped {kind} from {remote}: {detail}: {hex}",
            detail=err.detail,
            **proto.log_fields(),
            hex=err.data[:300].hex(),
        )
        self._tell_bad_input(proto, err.kind, err.data, err.detail)
        self._spend_budget(proto)

    def _tell_bad_input(self, proto: PileProtocol, kind: str, data: bytes, detail: str) -> None:
        if self.observers and proto.sessions:
            piles = list(proto.sessions)
            for observer in self.observers:
                observer.bad_input(piles, kind, data, detail)

    def _bad_frame(self, proto: PileProtocol, frame: RawFrame, kind: str, detail: str) -> None:
        self.metrics.frame_error(kind)
        assert proto.bad_log is not None
        proto.bad_log.warn(
            kind,
            "dropped frame 0x{ft} from {remote}: {detail}: {hex}",
            ft=_FT[frame.code],
            detail=detail,
            hex=frame.raw.hex(),
            **proto.log_fields(frame.seq),
        )
        self._tell_bad_input(proto, kind, frame.raw, detail)
        if kind != "not_logged_in":  # policy, not bad input: the login timeout deals with it
            self._spend_budget(proto)

    def _spend_budget(self, proto: PileProtocol) -> None:
        budget = proto.budget
        if budget is None or not budget.spend(self.clock.seconds()) or proto.close_reason is not None:
            return
        self.metrics.limit_acted("error-budget")
        self.log.warn(
            "pile connection {remote} sent more than {budget} bad frames in a minute; closing",
            budget=budget.budget,
            **proto.log_fields(),
        )
        proto.close("abuse", abort=True)

    def over_rate(self, proto: PileProtocol, frame: RawFrame) -> None:
        """A frame over the link's ``--maxFrameRate``: counted and dropped."""
        self.metrics.frame_error("rate")
        self.metrics.limit_acted("frame-rate")
        assert proto.bad_log is not None and proto.rate is not None
        proto.bad_log.warn(
            "rate",
            "dropped frame 0x{ft} from {remote}: over {rate:g} frames/s per pile: {hex}",
            ft=_FT[frame.code],
            rate=proto.rate.rate,
            hex=frame.raw.hex(),
            **proto.log_fields(frame.seq),
        )

    def login_timed_out(self, proto: PileProtocol) -> None:
        """No accepted login within ``--loginTimeout``: the link is closed."""
        self.metrics.limit_acted("login-timeout")
        self.log.info(
            "pile connection {remote} has no accepted login after {timeout:g}s; closing",
            timeout=self.config.login_timeout,
            pending=list(proto.sessions),
            **proto.log_fields(),
        )
        proto.close("login-timeout", abort=True)

    def slow_reader(self, proto: PileProtocol, queued: int) -> None:
        """The pile stopped reading: over ``--maxOutputBuffer`` bytes wait for it."""
        self.metrics.limit_acted("output-buffer")
        self.log.warn(
            "pile connection {remote} does not read: about {queued} bytes queued, over {limit}; closing",
            queued=queued,
            limit=self.config.max_output_buffer,
            **proto.log_fields(),
        )
        proto.close("slow-reader", abort=True)

    def frame_received(self, proto: PileProtocol, frame: RawFrame) -> None:
        """One whole frame with a good CRC from ``proto``: decoded, then dispatched."""
        code = frame.code
        self._frames_in[code] += 1
        if not proto.accepted and code != LOGIN:
            # Only a login is served before one is accepted on the link: not even decoded.
            self._bad_frame(proto, frame, "not_logged_in", "no accepted login on this link")
            return
        decode = self._uplink_decoders[code]
        if decode is None or frame.encrypted:
            self._not_plain_uplink(proto, frame)
            return
        try:
            fields = decode(frame.body)
        except DecodeError as e:
            self._bad_frame(proto, frame, "decode", str(e))
            return
        pile_id = fields["id"]
        if code == LOGIN:
            observers = self._observe_up[code]
            if observers is not None:
                for observer in observers:
                    observer.observe(pile_id, "up", code, fields, frame.raw)
            self.login_received(proto, frame, fields)
            return
        session = proto.sessions.get(pile_id)
        if session is None or not session.logged_in:
            self._bad_frame(proto, frame, "not_logged_in", f"pile {pile_id} has no accepted login here")
            return
        session.last_seen = now = proto.last_seen
        ring = session.frames
        if ring is not None:
            ring.append((now, frame.raw))
        if code in self.requests:
            session.last_request_seq[code] = frame.seq
        observers = self._observe_up[code]
        if observers is not None:
            for observer in observers:
                observer.observe(pile_id, "up", code, fields, frame.raw)
        handler = self._handlers[code]
        if handler is not None and not handler(self, session, frame, fields):
            return
        if self._waiting and code in self.replies:
            self.waiters.deliver(pile_id, code, fields)
        if self.forward is not None:
            self.forward.submit(self.envelope.frame(frame, pile_id, fields))

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
            self.forward.submit(self.envelope.frame(frame, piles[0], fields))

    # -- login ------------------------------------------------------------------------
    def login_received(self, proto: PileProtocol, frame: RawFrame, fields: dict[str, Any]) -> None:
        """A decoded 0x01: forwarded, then answered by itself or left pending."""
        pile_id = fields["id"]
        if self.allow_list is not None and pile_id not in self.allow_list:
            self._not_allowed(proto, frame, pile_id)
            return
        session = self.registry.login(proto, pile_id, proto.last_seen)
        self._record_login(session, frame)
        session.login = {k: v for k, v in fields.items() if k != "id"}
        session.last_request_seq[LOGIN] = frame.seq
        self.log.info("login of pile {pile_id} from {remote}", login=session.login, **session.log_fields())
        if self.forward is not None:
            self.forward.submit(self.envelope.frame(frame, pile_id, fields))
        if self.config.auto_verification:
            self.answer_login(session, True, frame.seq)
        else:
            self.registry.add_pending(session)
            if self.on_event is not None:
                since = int(proto.last_seen * 1000)
                self.on_event("pending", {"id": pile_id, "remote": proto.remote, "since": since})

    def _not_allowed(self, proto: PileProtocol, frame: RawFrame, pile_id: str) -> None:
        """A login from an id not on the allow-list: 0x02 "failed", then the link closes."""
        self.metrics.limit_acted("allow-list")
        if pile_id not in self._refused_logged:
            if len(self._refused_logged) < 100_000:
                self._refused_logged.add(pile_id)
            self.log.warn(
                "login of pile {pile_id} from {remote} refused: not on the allow-list {path}",
                **{**proto.log_fields(frame.seq), "pile_id": pile_id},
                path=self.allow_list.path if self.allow_list is not None else "",
            )
        session = self.registry.login(proto, pile_id, proto.last_seen)
        self._record_login(session, frame)
        self.send(session, LOGIN_REPLY, {"id": pile_id, "result": False}, frame.seq)
        self.registry.refuse(session)

    def _record_login(self, session: PileSession, frame: RawFrame) -> None:
        """Give a new session its pile's frame ring (if frames are kept), and keep the login in it."""
        if self.recorder is None:
            return
        ring = session.frames
        if ring is None:
            ring = session.frames = self.recorder.ring_of(session.pile_id)
        ring.append((session.last_seen, frame.raw))

    def reload_allow_list(self) -> bool:
        """Read the allow-list file again (call on SIGHUP); False if none or it failed.

        Nobody is disconnected: a pile taken off the list is refused at its next login.
        """
        if self.allow_list is None or not self.allow_list.reload():
            return False
        self._refused_logged.clear()
        return True

    def answer_login(self, session: PileSession, accepted: bool, seq: int | None = None) -> bytes:
        """Send 0x02; accept the login into the registry, or close the link if refused."""
        if not accepted and not self.registry.is_pending(session):
            raise LookupError(f"pile {session.pile_id} has no pending login to refuse")
        if seq is None:
            seq = session.reply_seq(LOGIN)
        frame = self.send(session, LOGIN_REPLY, {"id": session.pile_id, "result": accepted}, seq)
        if accepted:
            if self.registry.accept(session) and self.config.auto_time_sync:
                self._time_sync(session)
        else:
            self.log.info("login of pile {pile_id} refused; closing", **session.log_fields())
            self.registry.refuse(session)
        return frame

    def _log_fields_of(self, pile_id: str) -> dict[str, Any]:
        session = self.registry.find(pile_id)
        if session is None:
            return {"pile_id": pile_id, "remote": "", "seq": None}
        return session.log_fields()

    def _online(self, session: PileSession) -> None:
        if self.recorder is not None:
            session.frames = self.recorder.pile_online(session.pile_id, session.frames)
        self._event("online", session, {"remote": session.connection.remote})

    def _offline(self, session: PileSession, reason: str) -> None:
        if reason == MOVED:
            # The instance the pile moved to forwards its ``online``; consumers see no ``offline``.
            self.log.info("pile {pile_id} moved to another instance", **session.log_fields())
        else:
            self._event("offline", session, {"remote": session.connection.remote, "reason": reason})
        self.waiters.fail_pile(session.pile_id, f"pile {session.pile_id} went offline ({reason})")
        for observer in self.observers:
            observer.pile_offline(session.pile_id)

    def _time_sync(self, session: PileSession) -> None:
        if self.registry.get(session.pile_id) is not session:
            return
        now_ms = int(self.clock.seconds() * 1000)
        self.send(session, TIME_SYNC, {"id": session.pile_id, "time": now_ms})
        session.time_sync = self.clock.callLater(DAY, self._time_sync, session)

    # -- output ----------------------------------------------------------------------
    def send(
        self, session: PileSession, code: int, fields: Mapping[str, Any], seq: int | None = None
    ) -> bytes:
        """Encode and write a platform→pile frame; ``seq`` defaults to the session's next."""
        return self.send_body(session, code, fields, self.codec.encode_body(code, fields), seq)

    def send_body(
        self, session: PileSession, code: int, fields: Mapping[str, Any], body: bytes, seq: int | None = None
    ) -> bytes:
        """Write a platform→pile frame whose ``body`` is ``fields`` already encoded."""
        if seq is None:
            seq = session.next_seq()
        frame = session.connection.send(code, seq, body)
        self._frames_out[code] += 1
        ring = session.frames
        if ring is not None:
            ring.append((self.clock.seconds(), frame))
        observers = self._observe_down[code]
        if observers is not None:
            as_dict = fields if type(fields) is dict else dict(fields)
            for observer in observers:
                observer.observe(session.pile_id, "down", code, as_dict, frame)
        return frame

    def send_fixed(self, session: PileSession, fixed: FixedFrame, fields: dict[str, Any], seq: int) -> bytes:
        """Write a frame whose body never changes (a cached answer), ``fields`` its decoded form.

        As :meth:`send_body` does, for the answer written most often (0x04): no
        encoding, and the CRC from two table lookups (:class:`~ykcproxy.wire.codec.FixedFrame`).
        The bookkeeping after the write (count, frame ring, observers) is the same
        as :meth:`send_body`'s, written out here rather than shared through a
        call: this runs once per heartbeat.
        """
        proto = session.connection
        frame = fixed.encode(seq, proto.crc_order)
        proto.write_frame(frame)
        code = fixed.code
        self._frames_out[code] += 1
        ring = session.frames
        if ring is not None:
            ring.append((self.clock.seconds(), frame))
        observers = self._observe_down[code]
        if observers is not None:
            for observer in observers:
                observer.observe(session.pile_id, "down", code, fields, frame)
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
    def _event(self, kind: str, session: PileSession, extra: dict[str, Any]) -> None:
        pile_id = session.pile_id
        self.log.info("pile {pile_id} {kind}", kind=kind, **{**extra, **session.log_fields()})
        if self.on_event is not None:
            self.on_event(kind, {"id": pile_id, **extra})
        if self.forward is not None:
            self.forward.submit(self.envelope.event(kind, pile_id, extra))
