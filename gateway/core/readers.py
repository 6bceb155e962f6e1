"""Readers' sessions (Sparkplug B): a birth opens one, a death whose bdSeq matches closes it.
A birth with a lower bdSeq than the open session's is stale and ignored; once a session is
closed, any birth opens the next (a reader whose flash was wiped counts from 0 again).

The sessions live in the store (every gateway process sees the same ones, and a restart forgets
nothing); this module only says what a birth or death means."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bandlink.protocol import Birth, Death


class SessionStore(Protocol):
    def birth(
        self,
        reader: str,
        bdseq: int,
        firmware: str | None,
        now_ms: int,
        *,
        list_version: int | None = None,
    ) -> bool: ...
    def death(self, reader: str, bdseq: int, now_ms: int) -> bool: ...


@dataclass(frozen=True, slots=True)
class SessionChange:
    reader: str
    bdseq: int
    online: bool
    firmware: str | None = None
    # A death of an older session (or a copy), or a birth older than the open session: ignored
    stale: bool = False


def on_birth(store: SessionStore, birth: Birth, now_ms: int) -> SessionChange:
    assert birth.reader is not None and birth.bdseq is not None  # Birth requires both
    # A birth older than the open session (a late copy) must not replace the newer one, whose
    # death would then be ignored and leave the reader looking online.
    opened = store.birth(
        birth.reader, birth.bdseq, birth.firmware, now_ms, list_version=birth.list_version
    )
    return SessionChange(
        birth.reader, birth.bdseq, online=True, firmware=birth.firmware, stale=not opened
    )


def on_death(store: SessionStore, death: Death, now_ms: int) -> SessionChange:
    # A late will of an earlier session must not mark a reader that is back online as gone.
    assert death.reader is not None and death.bdseq is not None  # Death requires both
    closed = store.death(death.reader, death.bdseq, now_ms)
    return SessionChange(death.reader, death.bdseq, online=False, stale=not closed)
