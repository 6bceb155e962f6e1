# What the reader runs by: the gateway's Config over config.json's values (SPEC, Configuration).
#
# The reader's role, gate and direction are the gateway's configuration: config.json holds only
# the defaults a reader uses until a first Config arrives. A Config replaces the previous one
# whole: a field it leaves out falls back to config.json, not to what an older Config said, so
# what the reader runs depends only on config.json and the last Config it applied. app.py
# receives Configs, stores the applied one on flash and reloads it at boot. A till's offline
# floor and cap come only from a Config (config.json has none): until one sets them it decides
# no sale alone.
from protocol import IN, OUT


class Running:
    def __init__(self, config, role):
        self._config = config
        self.role = role  # the role this firmware runs (a Config cannot change it yet)
        self.version: int | None = None  # the applied Config's version; None: config.json alone
        self.offline_floor: int | None = None  # a till's, from the Config (apply)
        self.offline_cap: int | None = None
        self._defaults()

    def refuses(self, config, reader_id):
        """Why this reader will not apply a Config (text), or None if it may."""
        if config.reader != reader_id:
            return "addressed to %s" % config.reader
        if config.role != self.role:
            # Changing role means running another role's loop; this firmware runs one only.
            return "for role %d, and this reader runs role %d" % (config.role, self.role)
        if config.deadline_ms == 0 or config.hold_ms == 0:
            return "deadline_ms and hold_ms must be above 0"
        return None

    def newer(self, config):
        """A Config is applied only if its version is above the one running."""
        return self.version is None or config.version > self.version

    def apply(self, config):
        """Run by this Config (checked with refuses() first)."""
        self._defaults()
        self.version = config.version
        if config.gate is not None:
            self.gate = config.gate or None  # "" on the wire: no gate name
        if config.direction is not None:
            self.direction = config.direction
        if config.deadline_ms is not None:
            self.deadline_ms = config.deadline_ms
        if config.hold_ms is not None:
            self.hold_ms = config.hold_ms
        # A till's offline limits exist only in a Config: absent, it takes no sale alone.
        self.offline_floor = config.offline_floor
        self.offline_cap = config.offline_cap

    def describe(self):
        return "version %s: gate %s, direction %s, deadline %d ms, hold %d ms" % (
            self.version,
            self.gate,
            "out" if self.direction == OUT else "in",
            self.deadline_ms,
            self.hold_ms,
        )

    def _defaults(self):
        local = self._config
        self.gate = local["gate"]["gate"] or None
        self.direction = OUT if local["gate"]["direction"] == "out" else IN
        self.deadline_ms = local["deadline_ms"]
        self.hold_ms = local["hold_ms"]
        self.offline_floor = None
        self.offline_cap = None
