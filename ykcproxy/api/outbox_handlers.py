"""Handlers of the records and outbox routes: transaction lookup, queue state, dead-letter replay."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.web.iweb import IRequest

from ykcproxy.api.validation import ApiError, query_text, read_json_body
from ykcproxy.forward.delivery import Delivery
from ykcproxy.forward.outbox import SqliteOutbox


def _no_outbox() -> ApiError:
    return ApiError(404, "the durable outbox is off (--dataDir '')")


class OutboxHandlers:
    """``GET /transactions/<tradeSeq>``, ``GET /outbox`` and ``POST /outbox/replay``.

    :param max_body_bytes: the largest request body accepted (``--maxBodyBytes``).
    """

    def __init__(self, delivery: Delivery | None, outbox: SqliteOutbox | None, max_body_bytes: int) -> None:
        self.delivery = delivery
        self.outbox = outbox
        self.max_body_bytes = max_body_bytes

    @inlineCallbacks
    def transaction(self, request: IRequest, trade_seq: str) -> Any:
        """The stored 0x3B records of one tradeSeq."""
        if len(trade_seq) != 32 or not trade_seq.isdigit():
            raise ApiError(400, f"tradeSeq: must be 32 decimal digits, got {trade_seq!r}")
        if self.outbox is None:
            raise _no_outbox()
        records = yield self.outbox.record(trade_seq)
        if not records:
            raise ApiError(404, f"no transaction record {trade_seq} is stored")
        return {"tradeSeq": trade_seq, "records": records}

    @inlineCallbacks
    def outbox_state(self, request: IRequest) -> Any:
        """Queue depth, retries and dead letters."""
        raw = query_text(request, "limit") or "100"
        if not raw.isdigit() or int(raw) < 1:
            raise ApiError(400, f"limit: must be a positive integer, got {raw!r}")
        out: dict[str, Any] = {"durable": self.outbox is not None}
        if self.delivery is not None:
            out.update(self.delivery.health())
            out["retries"] = self.delivery.retries
            out["paused"] = self.delivery.pressure
        if self.outbox is not None:
            out["deadLetterCount"] = self.outbox.dead_count
            out["deadLetters"] = yield self.outbox.dead_letters(int(raw))
        return out

    @inlineCallbacks
    def outbox_replay(self, request: IRequest) -> Any:
        """Queue dead letters again (all, or the listed keys)."""
        body = read_json_body(request, self.max_body_bytes, empty={})
        outbox, delivery = self.outbox, self.delivery
        if outbox is None or delivery is None:
            raise _no_outbox()
        if not isinstance(body, dict):
            raise ApiError(400, "body: must be a JSON object")
        keys = body.get("keys")
        if keys is not None and (
            not isinstance(keys, list)
            or not all(isinstance(k, int) and not isinstance(k, bool) for k in keys)
        ):
            raise ApiError(400, "keys: must be an array of integers (the dead letters' keys)")
        messages = yield outbox.take_dead(keys, lambda m: delivery.submit(m, replay=True))
        return {"message": "done", "replayed": len(messages)}
