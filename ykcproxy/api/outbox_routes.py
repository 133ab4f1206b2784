"""REST routes of the durable outbox: transaction lookup, queue state, dead-letter replay."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import inlineCallbacks
from twisted.web.iweb import IRequest

from ykcproxy.forward.delivery import Delivery
from ykcproxy.forward.outbox import SqliteOutbox

if TYPE_CHECKING:
    from ykcproxy.api.app import ControlApi

_OBJECT = {"type": "object"}


def _json_answer(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": dict(_OBJECT)}}}


#: OpenAPI path items of these routes.
OPENAPI_PATHS: dict[str, Any] = {
    "/transactions/{trade_seq}": {
        "get": {
            "operationId": "transaction",
            "summary": "stored 0x3B records with this tradeSeq (kept for the retention time)",
            "parameters": [
                {"name": "trade_seq", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "responses": {
                "200": _json_answer("the records"),
                "400": _json_answer("not a 32-digit tradeSeq"),
                "404": _json_answer("no such record, or no durable outbox"),
            },
        }
    },
    "/outbox": {
        "get": {
            "operationId": "outbox",
            "summary": "queue depth, oldest undelivered age, retries and dead letters",
            "parameters": [
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 1},
                }
            ],
            "responses": {"200": _json_answer("the outbox state"), "400": _json_answer("bad limit")},
        }
    },
    "/outbox/replay": {
        "post": {
            "operationId": "outbox_replay",
            "summary": "deliver dead letters again (all, or those listed in 'keys')",
            "requestBody": {
                "required": False,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {"keys": {"type": "array", "items": {"type": "integer"}}},
                        }
                    }
                },
            },
            "responses": {
                "200": _json_answer("how many were queued again"),
                "400": _json_answer("malformed body"),
                "404": _json_answer("no durable outbox"),
            },
        }
    },
}


def install(api: ControlApi, delivery: Delivery | None, outbox: SqliteOutbox | None) -> None:
    """Add /transactions/<tradeSeq>, /outbox and /outbox/replay to ``api``."""
    from ykcproxy.api.app import ApiError

    def no_outbox() -> ApiError:
        return ApiError(404, "the durable outbox is off (no consumer configured, or --dataDir '')")

    @inlineCallbacks
    def transaction(request: IRequest, trade_seq: str) -> Any:
        if len(trade_seq) != 32 or not trade_seq.isdigit():
            raise ApiError(400, f"tradeSeq: must be 32 decimal digits, got {trade_seq!r}")
        if outbox is None:
            raise no_outbox()
        records = yield outbox.record(trade_seq)
        if not records:
            raise ApiError(404, f"no transaction record {trade_seq} is stored")
        return {"tradeSeq": trade_seq, "records": records}

    @inlineCallbacks
    def state(request: IRequest) -> Any:
        raw = request.args.get(b"limit", [b"100"])[0]  # type: ignore[attr-defined]
        if not raw.isdigit() or int(raw) < 1:
            raise ApiError(400, f"limit: must be a positive integer, got {raw.decode('latin-1')!r}")
        out: dict[str, Any] = {"durable": outbox is not None}
        if delivery is not None:
            out.update(delivery.health())
            out["retries"] = delivery.retries
            out["paused"] = delivery.pressure
        if outbox is not None:
            out["deadLetterCount"] = outbox.dead_count
            out["deadLetters"] = yield outbox.dead_letters(int(raw))
        return out

    @inlineCallbacks
    def replay(request: IRequest) -> Any:
        if outbox is None or delivery is None:
            raise no_outbox()
        content = request.content.read()  # type: ignore[attr-defined]
        try:
            body = json.loads(content) if content.strip() else {}
        except ValueError as e:
            raise ApiError(400, f"body is not valid JSON: {e}") from None
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

    api.route("/transactions/<trade_seq>", ["GET"], "transaction")(transaction)
    api.route("/outbox", ["GET"], "outbox")(state)
    api.route("/outbox/replay", ["POST"], "outbox_replay")(replay)
    api.extra_openapi_paths.update(OPENAPI_PATHS)
