# Runs on MicroPython for `bandlink bench heap`: where the reader's heap goes. Each line is
# "<bytes> <what>": the live heap it added, read after a collection. argv[1]: a config.json.
import gc
import sys

STEPS = (
    ("asyncio", ("asyncio",)),
    ("mqtt.py (client code)", ("mqtt",)),
    ("protocol/ (codec, messages, validators, registry)", ("protocol",)),
    ("board/sim.py, feedback.py", ("feedback", "board.sim")),
    ("flash.py, journal.py", ("flash", "journal")),
    ("operation.py", ("operation",)),
    ("outbox.py", ("outbox",)),
    ("bandlist.py", ("bandlist",)),
    (
        "app.py, gate.py, sun.py, config.py, session.py, running.py",
        ("app", "gate", "sun", "config", "session", "running"),
    ),
)


def live():
    gc.collect()
    return gc.mem_alloc()


def main():
    last = live()
    print(last, "interpreter at start")
    for what, modules in STEPS:
        for name in modules:
            __import__(name)
        now = live()
        print(now - last, what)
        last = now
    import asyncio

    import app
    import config
    import gate
    from board import sim

    asyncio.StreamReader  # noqa: B018 - the stream module loads on first use
    now = live()
    print(now - last, "asyncio streams")
    last = now
    settings = config.load(sys.argv[1])
    reader = app.Reader(settings, sim.Board(settings), 0)
    role = gate.Gate(reader)
    now = live()
    print(now - last, "Reader (MQTT buffers, transmit buffer, events), board and gate objects")
    print(now, "live before the first tap")
    return role  # kept alive until measured


main()
