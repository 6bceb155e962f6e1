# The reader's MQTT sessions, Sparkplug B style: every connection is a numbered session (bdSeq).
# The birth announces the session; the death, left with the broker as the MQTT will, carries the
# same number, so the gateway can tell a late death of an old session (ignored) from the end of
# the current one. The number lives on flash, so a reboot never reuses one.
from protocol import Birth, Death, encode, topics

FIRMWARE = "bandlink-0.1.0"
_BDSEQ_LIMIT = 1 << 63


class Session:
    def __init__(self, reader_id, role, state_path):
        self._reader_id = reader_id
        self._role = role
        self._path = state_path
        self.bdseq = (_load(state_path) + 1) % _BDSEQ_LIMIT
        _store(state_path, self.bdseq)
        self.birth_topic = topics.reader_topic(reader_id, topics.BIRTH).encode()
        self.death_topic = topics.reader_topic(reader_id, topics.DEATH).encode()

    def birth(self, now_ms):
        return encode(
            Birth(
                reader=self._reader_id,
                ts=now_ms,
                bdseq=self.bdseq,
                firmware=FIRMWARE,
                role=self._role,
            )
        )

    def will(self, now_ms):
        """The MQTT will for the next connection: this session's death."""
        death = Death(reader=self._reader_id, ts=now_ms, bdseq=self.bdseq)
        return (self.death_topic, encode(death), 1, False)

    def next(self):
        """The link dropped: the next connection is a new session."""
        self.bdseq = (self.bdseq + 1) % _BDSEQ_LIMIT
        _store(self._path, self.bdseq)


def _load(path):
    try:
        with open(path) as f:
            return int(f.read())
    except (OSError, ValueError):
        return -1  # first boot, or a torn write: start again from 0


def _store(path, value):
    with open(path, "w") as f:
        f.write(str(value))
