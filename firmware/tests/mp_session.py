# firmware/session.py on the real MicroPython: the session counter (bdSeq) on flash survives a
# power cut during its write. Run by test_unix_port.py.

import flash
import mptest
import session
from session import Session


def put(path, data):
    with open(path, "wb") as f:
        f.write(data)


class PowerCut(Exception):
    pass


class TornFile:
    """A file whose write stops half-way, as when the power goes during it."""

    def __init__(self, f):
        self._f = f

    def write(self, data):
        self._f.write(data[: len(data) // 2])
        self._f.close()
        raise PowerCut()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def torn_open(path, mode="r"):
    return TornFile(open(path, mode)) if "w" in mode else open(path, mode)


def cut_during_write(fn):
    """Run fn with every file write of session.py and flash.py torn, as by a power cut."""
    session.open = flash.open = torn_open  # module globals come before the builtins
    try:
        fn()
        raise AssertionError("nothing was written")
    except PowerCut:
        pass
    finally:
        del session.open, flash.open


def test_the_counter_counts_on_over_reboots():
    path = mptest.scratch("session")
    assert Session("r", 0, path).bdseq == 0  # first boot
    s = Session("r", 0, path)
    assert s.bdseq == 1
    s.next()
    assert s.bdseq == 2
    assert Session("r", 0, path).bdseq == 3


def test_a_power_cut_while_the_counter_is_written_does_not_reset_it():
    path = mptest.scratch("session")
    for _ in range(42):
        s = Session("r", 0, path)
    assert s.bdseq == 41  # 41 is in use now
    cut_during_write(s.next)  # the next connection's number, 42, never reached the flash
    after = Session("r", 0, path).bdseq  # the reboot after the cut
    assert after == 42, after  # above every number used; 42 was never used on the wire


def test_a_power_cut_at_boot_does_not_reset_the_counter():
    path = mptest.scratch("session")
    for _ in range(10):
        Session("r", 0, path)
    cut_during_write(lambda: Session("r", 0, path))
    assert Session("r", 0, path).bdseq == 10


def test_a_leftover_temporary_file_is_not_read_over_the_counter():
    path = mptest.scratch("session")
    put(path, b"41\n")
    put(path + ".tmp", b"4")  # torn: the write of 42 was cut
    assert Session("r", 0, path).bdseq == 42


def test_a_torn_temporary_file_alone_is_not_taken_for_a_number():
    path = mptest.scratch("session")
    put(path + ".tmp", b"1")  # the very first write ("1234\n"?) was cut: there is no number
    assert Session("r", 0, path).bdseq == 0
    path = mptest.scratch("session")
    put(path + ".tmp", b"1234\n")  # a FAT rename cut after removing the old file: complete
    assert Session("r", 0, path).bdseq == 1235


def test_a_counter_written_by_older_firmware_is_kept():
    path = mptest.scratch("session")
    put(path, b"77")  # no newline: the format before the counter was written by rename
    assert Session("r", 0, path).bdseq == 78


mptest.main(globals())
