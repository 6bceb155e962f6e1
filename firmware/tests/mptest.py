# A test runner small enough for the reader's interpreter: pytest does not run on MicroPython.
# A test script defines test_* functions (plain or async) and ends with `mptest.main(globals())`.
# The closing line has the form "N passed, N failed", which CI and the CPython wrapper read.
import asyncio
import os
import random
import sys

_SCRATCH = []  # files scratch() named, removed (with their ".tmp" siblings) when main() ends


def scratch(kind, suffix=""):
    """A fresh file name under /tmp (the unix port has no tempfile module), with no file yet."""
    path = "/tmp/bl-%s-%08x%s" % (kind, random.getrandbits(32), suffix)
    _SCRATCH.append(path)
    remove(path)
    return path


def remove(path):
    """Remove a file written and renamed into place, and the temporary one beside it."""
    for p in (path, path + ".tmp"):
        try:
            os.remove(p)
        except OSError:
            pass


def main(namespace):
    try:
        _run(namespace)
    finally:
        for path in _SCRATCH:
            remove(path)


def _run(namespace):
    names = sorted(n for n in namespace if n.startswith("test_"))
    only = sys.argv[1] if len(sys.argv) > 1 else None
    passed = failed = 0
    for name in names:
        if only and name != only:
            continue
        try:
            result = namespace[name]()
            if hasattr(result, "send"):  # a coroutine: async test
                asyncio.run(result)
            passed += 1
        except Exception as exc:  # noqa: BLE001 - report every failure, keep going
            failed += 1
            print("FAIL", name)
            sys.print_exception(exc)
    print("%d passed, %d failed" % (passed, failed))
    if failed or not passed:
        sys.exit(1)


def raises(exc_type, fn, *args):
    """Assert fn(*args) raises exc_type; return the exception for further checks."""
    try:
        fn(*args)
    except exc_type as exc:
        return exc
    raise AssertionError("%s not raised by %r" % (exc_type.__name__, fn))
