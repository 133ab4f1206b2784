"""Running one command, whatever carried it: REST, a NATS request, another instance.

:class:`CommandRunner` checks a command body, writes the frame to the pile and
optionally waits for its reply; the answers and status codes are the REST ones
(400 bad body, 404 pile not here, 504 no reply in time, 502 pile gone).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import CancelledError, Deferred, TimeoutError, inlineCallbacks

from ykcproxy.api.routes import MAX_WAIT
from ykcproxy.api.validation import ApiError, check_command
from ykcproxy.pile.server import PileServerFactory
from ykcproxy.pile.waiters import PileGone
from ykcproxy.wire.frames import Direction, FrameType

__all__ = ["CommandRunner", "check_wait"]


def check_wait(value: object, frame: FrameType) -> float | None:
    """The ``wait`` of a command in seconds (``None``: do not wait); :class:`ApiError` 400 if bad."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ApiError(400, f"wait: must be a number of seconds, got {value!r}")
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ApiError(400, f"wait: must be a number of seconds, got {value!r}") from None
    if not 0 < seconds <= MAX_WAIT:
        raise ApiError(400, f"wait: must be more than 0 and at most {MAX_WAIT:g} seconds, got {value}")
    if frame.reply is None:
        raise ApiError(
            400,
            f"wait: the pile answers no 0x{frame.ft} with a reply frame, so there is none to wait for",
        )
    return seconds


class CommandRunner:
    """Commands to the piles of one :class:`PileServerFactory`, independent of the transport."""

    def __init__(self, piles: PileServerFactory) -> None:
        self.piles = piles
        self.codec = piles.codec
        self.clock = piles.clock
        #: ``(ft, body, wait) -> Deferred[(status, answer)]`` for a pile held by another instance.
        self.elsewhere: Any = None
        #: The command frame types by their ``ft`` (as the REST routes name them).
        self.commands: dict[str, FrameType] = {
            f.ft: f for f in self.codec.catalogue.values() if f.direction is Direction.DOWN
        }

    def frame(self, ft: str) -> FrameType:
        """The command frame type ``ft``; :class:`ApiError` 404 if there is none."""
        frame = self.commands.get(ft)
        if frame is None:
            raise ApiError(404, f"no command 0x{ft}")
        return frame

    @inlineCallbacks
    def answer(self, ft: str, body: Any, wait: object = None) -> Any:
        """Run a command and give ``(status, answer)`` as REST would, never failing."""
        try:
            frame = self.frame(ft)
            seconds = check_wait(wait, frame)
            result = yield self.run(frame, body, seconds)
        except ApiError as e:
            return e.code, e.body
        return 200, result

    @inlineCallbacks
    def run(self, frame: FrameType, body: Any, wait: float | None) -> Any:
        """Check ``body``, write the frame, wait up to ``wait`` s for the reply; :class:`ApiError` else."""
        cmd = check_command(self.codec, frame, body)
        registry = self.piles.registry
        # A 0x02 answers a login that is still pending; everything else needs an accepted one.
        session = registry.find(cmd.pile_id) if frame.code == 0x02 else registry.get(cmd.pile_id)
        if session is None and self.elsewhere is not None:
            status, answer = yield self.elsewhere(cmd.pile_id, frame.ft, body, wait)
            if status != 200:
                message = answer.pop("message", "")
                raise ApiError(status, message, **answer)
            return answer
        if session is None or session.connection.close_reason is not None:
            raise ApiError(404, f"pile {cmd.pile_id} is not connected")
        waiting: Deferred[dict[str, Any]] | None = None
        if wait is not None and frame.reply is not None:
            match = {k: cmd.fields[k] for k in frame.match}
            waiting = self.piles.waiters.wait(cmd.pile_id, frame.reply, match)
        try:
            seq, raw = self.piles.command(session, frame.code, {**cmd.fields, "header": cmd.header})
        except LookupError as e:
            raise ApiError(404, str(e)) from None
        except BaseException:
            if waiting is not None:
                waiting.addErrback(lambda f: f.trap(CancelledError))
                waiting.cancel()
            raise
        result: dict[str, Any] = {"message": "done", "seq": seq, "frame": raw.hex()}
        if waiting is None or wait is None:
            return result
        waiting.addTimeout(wait, self.clock)
        try:
            reply = yield waiting
        except TimeoutError:
            raise ApiError(
                504,
                f"no 0x{frame.reply:02x} reply from pile {cmd.pile_id} within {wait:g} s; "
                f"the 0x{frame.ft} frame was sent (seq {seq})",
                seq=seq,
                frame=raw.hex(),
            ) from None
        except PileGone as e:
            raise ApiError(
                502,
                f"{e} while waiting for its 0x{frame.reply:02x} reply; "
                f"the 0x{frame.ft} frame was sent (seq {seq})",
                seq=seq,
                frame=raw.hex(),
            ) from None
        result["reply"] = reply
        return result
