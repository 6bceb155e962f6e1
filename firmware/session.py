# The reader's MQTT sessions, Sparkplug B style: every connection is a numbered session (bdSeq).
# The birth announces the session; the death, left with the broker as the MQTT will, carries the
# same number, so the gateway can tell a late death of an old session (ignored) from the end of
# the current one. The number lives on flash, so a reboot never reuses one: it is stored (a
# temporary file renamed over the old one, flash.py) before the connection that uses it, so a
# power cut during the write leaves the last number used, and the next boot takes the next.
from flash import Stored

from protocol import Birth, Death, encode, topics

FIRMWARE = "bandlink-0.1.0"
_BDSEQ_LIMIT = 1 << 63


class Session:
    def __init__(self, reader_id, role, state_path):
        self._reader_id = reader_id
        self._role = role
        self._file = Stored(state_path)
        self.bdseq = (_load(self._file) + 1) % _BDSEQ_LIMIT
        _store(self._file, self.bdseq)
        self.birth_topic = topics.reader_topic(reader_id, topics.BIRTH).encode()
        self.death_topic = topics.reader_topic(reader_id, topics.DEATH).encode()

    def birth(self, now_ms, config_version=None, list_version=None):
        return encode(
            Birth(
                reader=self._reader_id,
                ts=now_ms,
                bdseq=self.bdseq,
                firmware=FIRMWARE,
                role=self._role,
                config_version=config_version,
                list_version=list_version,
            )
        )

    def will(self, now_ms):
        """The MQTT will for the next connection: this session's death."""
        death = Death(reader=self._reader_id, ts=now_ms, bdseq=self.bdseq)
        return (self.death_topic, encode(death), 1, False)

    def next(self):
        """The link dropped: the next connection is a new session."""
        self.bdseq = (self.bdseq + 1) % _BDSEQ_LIMIT
        _store(self._file, self.bdseq)


def _load(stored):
    """The last number stored, or -1 (first boot: start from 0)."""
    data = stored.read()
    # A number ends with a newline, so a temporary file cut short is not taken for a smaller
    # number. (A file without one comes from firmware before this format, whole: kept.)
    if data is None or (stored.from_tmp and not data.endswith(b"\n")):
        return -1
    try:
        return int(data)
    except ValueError:
        return -1  # not a number: a file damaged some other way


def _store(stored, value):
    stored.write(b"%d\n" % value)
