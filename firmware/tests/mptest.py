# A test runner small enough for the reader's interpreter: pytest does not run on MicroPython.
# A test script defines test_* functions (plain or async) and ends with `mptest.main(globals())`.
# The closing line has the form "N passed, N failed", which CI and the CPython wrapper read.
import asyncio
import sys


def main(namespace):
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
