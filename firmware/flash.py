# Files on the reader's flash that must survive a power cut: the session counter and the
# gateway's last configuration. (The journal and the band list have formats of their own,
# journal.py and bandlist.py, on the same rule: a write is complete or it is not there.)
#
# A file is never written in place. Opening it for writing truncates it first, so power lost
# during the write leaves it empty or half-written, and the reader would boot with nothing (a
# session counter back at 0, a tap's mid forgotten). Instead the new contents go to `<path>.tmp`,
# and only a complete temporary file is renamed over the old one. On littlefs (the ESP32's
# default) the rename is atomic: the file is the old one or the new one, never a mix. On FAT,
# MicroPython's rename removes the old file and then renames, so a cut between the two leaves
# only the temporary file, complete: read() falls back to it when the file itself is missing.
# Callers still check what they read (a size, a terminator, a decodable message): a temporary
# file left by a cut *during* its write is torn, and is what read() returns if the real file
# never existed.
import os


class Stored:
    def __init__(self, path):
        self.path = path
        self._tmp = path + ".tmp"  # made once: a write per tap should not build it each time
        self.from_tmp = False  # the last read() found only the temporary file

    def write(self, data):
        """Replace the file's contents with data (bytes, bytearray or memoryview)."""
        if self.from_tmp:
            # What was read came from the temporary file alone (a FAT cut between remove and
            # rename): make it the file before the temporary one is truncated, or a second cut
            # during this write would lose both.
            os.rename(self._tmp, self.path)
            self.from_tmp = False
        with open(self._tmp, "wb") as f:
            f.write(data)
        os.rename(self._tmp, self.path)

    def read(self):
        """The file's bytes; the temporary file's when the file is missing; None if neither."""
        for path in (self.path, self._tmp):
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError:
                continue
            self.from_tmp = path is self._tmp
            return data
        self.from_tmp = False
        return None
