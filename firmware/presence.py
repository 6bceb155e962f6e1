"""Report each band once per visit to the field, whatever the front end (PN532, RC522, sim).

A guest holds the band against the reader for a second or more, so one visit spans many polls.
Radios also miss a poll now and then (a tag at the edge of the field, a poll racing the tag's
reset after RF-off), so one empty poll is not proof the band left. The rule:

- a poll that sees a UID different from the band in the field (or an empty field) is an arrival:
  report it (a quick swap of two bands reports the second at once);
- the same UID again while its visit lasts is not reported;
- a visit ends after ``absent_polls`` consecutive empty polls; then the same band is new again.

Board-independent and allocation-free per poll: the UID is copied into a preallocated buffer.
"""

from micropython import const

_UID_MAX = const(10)  # ISO 14443-A: 4, 7 or 10 bytes
# Empty polls that end a visit; at the ESP32 board's poll cadence, a few tens of ms of absence.
ABSENT_POLLS = const(5)


class TagPresence:
    def __init__(self, absent_polls: int = ABSENT_POLLS) -> None:
        self.absent_polls = absent_polls
        self._uid = bytearray(_UID_MAX)
        self._len = 0  # length of the UID in the field; 0 when the field is empty
        self._misses = 0

    def update(self, uid: bytearray, n: int) -> bool:
        """Feed one poll (``n`` = UID length, 0 for an empty field); True on a new arrival."""
        if n == 0:
            if self._len:
                self._misses += 1
                if self._misses >= self.absent_polls:
                    self._len = 0
            return False
        self._misses = 0
        if n == self._len and self._same(uid, n):
            return False
        for i in range(n):
            self._uid[i] = uid[i]
        self._len = n
        return True

    def present(self) -> bool:
        """True while a band's visit lasts (reported, and not yet absent for long enough)."""
        return self._len != 0

    def forget(self) -> None:
        """End the visit now: the band in the field is reported again on its next poll."""
        self._len = 0
        self._misses = 0

    def _same(self, uid: bytearray, n: int) -> bool:
        mine = self._uid
        for i in range(n):  # noqa: SIM110 - all(<generator>) allocates on every poll
            if mine[i] != uid[i]:
                return False
        return True
