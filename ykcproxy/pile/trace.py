"""A per-pile frame trace, switched on and off at run time (``POST /piles/<id>/trace``).

For integrating a new pile model: every frame of a traced pile, both ways, is
logged with its hex and its decoded fields, and so is every input dropped on
its link.  Untraced piles cost one set lookup per frame.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.logger import Logger

from ykcproxy.pile.observers import Direction

_ALL = frozenset(range(256))


class FrameTracer:
    """A frame observer that logs the frames of the piles in :attr:`traced`."""

    log = Logger()
    up_types = _ALL
    down_types = _ALL

    def __init__(
        self,
        on_change: Callable[[], None] | None = None,
        fields_of: Callable[[str], dict[str, Any]] | None = None,
    ) -> None:
        #: The pile ids being traced.
        self.traced: set[str] = set()
        #: Called when the set of traced piles changes (the factory re-arranges its observers).
        self.on_change = on_change
        #: A pile's log fields (``pile_id``, ``remote``, ``seq``: see ``PileSession.log_fields``).
        self.fields_of = fields_of or (lambda pile_id: {"pile_id": pile_id, "remote": "", "seq": None})

    def switch(self, pile_id: str, enabled: bool) -> None:
        """Start or stop tracing ``pile_id`` (logged)."""
        if enabled:
            self.traced.add(pile_id)
        else:
            self.traced.discard(pile_id)
        if self.on_change is not None:
            self.on_change()
        self.log.info(
            "frame trace of pile {pile_id} {state}",
            state="on" if enabled else "off",
            **self.fields_of(pile_id),
        )

    def observe(
        self, pile_id: str, direction: Direction, ft: int, fields: dict[str, Any], raw: bytes
    ) -> None:
        """Log the frame when its pile is traced."""
        if pile_id not in self.traced:
            return
        self.log.info(
            "trace {pile_id} {direction} 0x{ft} seq {seq}: {hex} {fields}",
            direction=direction,
            ft=f"{ft:02x}",
            hex=raw.hex(),
            fields=fields,
            **{**self.fields_of(pile_id), "seq": raw[2] | raw[3] << 8 if len(raw) >= 4 else None},
        )

    def bad_input(self, pile_ids: list[str], kind: str, data: bytes, detail: str) -> None:
        """Log dropped input on a traced pile's link."""
        for pile_id in pile_ids:
            if pile_id in self.traced:
                self.log.info(
                    "trace {pile_id} up dropped {kind}: {detail}: {hex}",
                    **self.fields_of(pile_id),
                    kind=kind,
                    detail=detail,
                    hex=data[:512].hex(),
                )

    def pile_offline(self, pile_id: str) -> None:
        """A trace outlives a reconnection: nothing to do."""
