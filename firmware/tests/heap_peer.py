# Runs on MicroPython for `bandlink bench heap`: where the reader's heap goes. Each line is
# "<bytes> <what>": the live heap it added, read after a collection. argv[1]: a config.json
# (its "role", gate or pos, is the role measured).
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
        "app.py, sun.py, config.py, session.py, running.py",
        ("app", "sun", "config", "session", "running"),
    ),
)
ROLE_MODULES = {"gate": ("gate",), "pos": ("pos", "pinblock")}


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
    import config

    settings = config.load(sys.argv[1])
    role_name = settings["role"]
    for name in ROLE_MODULES[role_name]:
        __import__(name)
    now = live()
    print(
        now - last,
        "the %s role: %s" % (role_name, ", ".join(m + ".py" for m in ROLE_MODULES[role_name])),
    )
    last = now
    import asyncio

    import app
    from board import sim

    asyncio.StreamReader  # noqa: B018 - the stream module loads on first use
    now = live()
    print(now - last, "asyncio streams")
    last = now
    reader = app.Reader(settings, sim.Board(settings), 0 if role_name == "gate" else 1)
    if role_name == "gate":
        import gate

        role = gate.Gate(reader)
    else:
        import pos

        role = pos.Pos(reader)
    now = live()
    print(
        now - last,
        "Reader (MQTT buffers, transmit buffer, events), board and %s objects" % role_name,
    )
    print(now, "live before the first tap")
    return role  # kept alive until measured


main()
