"""What the proxy does with each frame type of a logged-in pile: one table.

:data:`HANDLERS` maps a pile→platform frame type to its handler.  A handler
is called with the policy (:class:`~ykcproxy.pile.server.PileServerFactory`),
the pile's accepted session, the frame and its decoded fields, after the
common steps (the pile was heard; the seq of a request noted).  It returns
True when the frame then takes the common path (waiting REST calls, then
the consumer), False when it forwarded the frame itself.

A frame type without an entry just takes the common path.  A new per-frame
behaviour is one function and one entry here.  The login (0x01) is not in
the table: it comes before there is an accepted session (see
:meth:`~ykcproxy.pile.server.PileServerFactory.login_received`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger

from ykcproxy.forward.base import Message
from ykcproxy.pile.session import PileSession
from ykcproxy.wire.codec import FixedFrame
from ykcproxy.wire.framer import RawFrame

if TYPE_CHECKING:
    from ykcproxy.pile.server import PileServerFactory

LOGIN, LOGIN_REPLY = 0x01, 0x02
HEARTBEAT, HEARTBEAT_REPLY = 0x03, 0x04
BILLING_VERIFY, BILLING_VERIFY_REPLY = 0x05, 0x06
REALTIME = 0x13
TRANSACTION, TRANSACTION_CONFIRM = 0x3B, 0x40
TIME_SYNC = 0x56

Handler = Callable[["PileServerFactory", PileSession, RawFrame, dict[str, Any]], bool]

log = Logger(namespace="ykcproxy.pile.dispatch")


def heartbeat(
    policy: PileServerFactory, session: PileSession, frame: RawFrame, fields: dict[str, Any]
) -> bool:
    """0x03: note the gun's status; answer 0x04 with ``--autoHeartbeatResponse``."""
    gun_id = fields["gun"]
    gun = session.guns.get(gun_id)
    if gun is None:
        gun = session.guns[gun_id] = {}
    status = fields["gunStatus"]
    if gun.get("gunStatus") != status:
        gun["gunStatus"] = status
        gun_changed(policy, session, gun_id, gun)
    if policy.config.auto_heartbeat_response:
        reply = session.heartbeat_replies.get(gun_id)
        if reply is None:
            reply = session.heartbeat_replies[gun_id] = _heartbeat_reply(policy, session.pile_id, gun_id)
        policy.send_fixed(session, reply[1], reply[0], frame.seq)
    return True


def _heartbeat_reply(
    policy: PileServerFactory, pile_id: str, gun_id: str
) -> tuple[dict[str, Any], FixedFrame]:
    """The 0x04 answer to a gun's heartbeats: its fields and its frame (all but seq and CRC).

    It depends only on the pile and the gun, so a session builds it once per
    gun; observers of written frames must not change the fields they are given,
    so the one dict serves every answer.
    """
    answer = {"id": pile_id, "gun": gun_id, "response": 0}
    return answer, FixedFrame(HEARTBEAT_REPLY, policy.codec.encode_body(HEARTBEAT_REPLY, answer))


def realtime(
    policy: PileServerFactory, session: PileSession, frame: RawFrame, fields: dict[str, Any]
) -> bool:
    """0x13: note the gun's state for ``GET /piles``."""
    gun = session.guns.setdefault(fields["gunId"], {})
    status, plugged, trade_seq = fields["status"], fields["plugged"], fields["tradeSeq"]
    if gun.get("status") != status or gun.get("plugged") != plugged or gun.get("tradeSeq") != trade_seq:
        gun["status"], gun["plugged"], gun["tradeSeq"] = status, plugged, trade_seq
        gun_changed(policy, session, fields["gunId"], gun)
    return True


def gun_changed(
    policy: PileServerFactory, session: PileSession, gun: str, state: dict[str, Any]
) -> None:
    """A gun's state changed: the console's stream is told (a ``gun`` event)."""
    if policy.on_event is not None:
        policy.on_event("gun", {"id": session.pile_id, "gun": gun, **state})


def billing_verify(
    policy: PileServerFactory, session: PileSession, frame: RawFrame, fields: dict[str, Any]
) -> bool:
    """0x05: answer 0x06 "consistent" with ``--autoBillingModelVerify``."""
    if policy.config.auto_billing_model_verify:
        answer = {"id": session.pile_id, "billingModelCode": fields["billingModelCode"], "result": True}
        policy.send(session, BILLING_VERIFY_REPLY, answer, frame.seq)
    return True


def transaction(
    policy: PileServerFactory, session: PileSession, frame: RawFrame, fields: dict[str, Any]
) -> bool:
    """0x3B: remember its seq for the 0x40; forward it under its stable id.

    With ``--autoTransactionRecordConfirm`` the 0x40 goes out only once the
    record is durably stored, on the link the pile uses then.
    """
    trade_seq = fields["tradeSeq"]
    session.remember_trade(trade_seq, frame.seq)
    store = policy.forward if policy.forward is not None else policy.records
    if store is None:
        return False
    message = policy.envelope.record(frame, session.pile_id, fields)
    if not policy.auto_confirm:
        store.submit(message)
        return False
    _confirm_when_stored(policy, store, session.pile_id, trade_seq, message)
    return False


def _confirm_when_stored(
    policy: PileServerFactory, store: Any, pile_id: str, trade_seq: str, message: Message
) -> None:
    safe = store.submit(message, confirm=True)
    assert safe is not None

    def confirm(_: object) -> None:
        session = policy.registry.get(pile_id)
        reply_seq = session.trade_seqs.get(trade_seq) if session is not None else None
        if session is None or reply_seq is None:
            # Gone, or logged in again on a link that has not sent this record: a
            # 0x40 there would carry a seq of the old link. The pile sends it again.
            log.info(
                "record {trade_seq} of pile {pile_id} is stored, but not on its current link; "
                "it will send it again",
                trade_seq=trade_seq,
                **(session.log_fields() if session is not None else {"pile_id": pile_id}),
            )
            return
        policy.send(session, TRANSACTION_CONFIRM, {"tradeSeq": trade_seq, "result": 0}, reply_seq)

    safe.addCallback(confirm)
    safe.addErrback(
        lambda f: log.failure(
            "storing record {trade_seq} of pile {pile_id}", f, trade_seq=trade_seq, pile_id=pile_id
        )
    )


#: Frame type → what it does beyond the common path.
HANDLERS: dict[int, Handler] = {
    HEARTBEAT: heartbeat,
    BILLING_VERIFY: billing_verify,
    REALTIME: realtime,
    TRANSACTION: transaction,
}
