"""The allow-list of pile ids (``--allowList FILE``), reloadable while running.

The file holds one pile id a line (14 digits, as in the 0x01); ``#`` starts
a comment, blank lines are ignored.  :meth:`AllowList.reload` reads it
again (the service calls it on SIGHUP): a file that cannot be read, or a
line that is no pile id, leaves the list as it was, so nobody allowed is
dropped by a bad edit.  Reloading does not disconnect anyone: a pile taken
off the list is refused at its next login.
"""

from __future__ import annotations

import re

import attrs
from twisted.logger import Logger

_PILE_ID = re.compile(r"[0-9A-Fa-f]{14}")


class AllowListError(ValueError):
    """The allow-list file is not a list of pile ids."""


def parse_allow_list(text: str, source: str = "allow-list") -> frozenset[str]:
    """The pile ids of an allow-list file's ``text``; raises :class:`AllowListError`."""
    ids = set()
    for number, line in enumerate(text.splitlines(), 1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        if not _PILE_ID.fullmatch(entry):
            raise AllowListError(f"{source}, line {number}: {entry!r} is not a 14-digit pile id")
        ids.add(entry.upper())
    return frozenset(ids)


@attrs.define
class AllowList:
    """The pile ids allowed to log in, read from ``path``."""

    path: str
    ids: frozenset[str] = frozenset()
    log = Logger()

    @classmethod
    def load(cls, path: str) -> AllowList:
        """Read ``path``; an unreadable or malformed file raises (a start-up error)."""
        allow = cls(path)
        allow.ids = allow._read()
        allow.log.info("allow-list {path}: {count} pile ids", path=path, count=len(allow.ids))
        return allow

    def __contains__(self, pile_id: object) -> bool:
        return pile_id in self.ids

    def __len__(self) -> int:
        return len(self.ids)

    def _read(self) -> frozenset[str]:
        try:
            with open(self.path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise AllowListError(f"cannot read the allow-list {self.path}: {e}") from e
        return parse_allow_list(text, self.path)

    def reload(self) -> bool:
        """Read the file again; on any error keep the current list. True if it was replaced."""
        try:
            ids = self._read()
        except AllowListError as e:
            self.log.error(
                "allow-list not reloaded, keeping its {count} ids: {error}", count=len(self.ids), error=e
            )
            return False
        added, removed = len(ids - self.ids), len(self.ids - ids)
        self.ids = ids
        self.log.info(
            "allow-list {path} reloaded: {count} pile ids ({added} added, {removed} removed)",
            path=self.path,
            count=len(ids),
            added=added,
            removed=removed,
        )
        return True
