# Entry point. On a board, MicroPython runs main.py at boot with config.json beside it; on the
# unix port, `micropython firmware/main.py path/to/config.json` runs a simulated reader.
import gc
import sys


def run():
    path = sys.argv[1] if len(sys.argv) > 1 else "config.json"
    import config

    try:
        settings = config.load(path)
    except config.ConfigError as exc:
        # Before the board, the network or the broker: nothing has started, nothing to undo.
        print("bandlink: not starting:", exc.args[0])
        sys.exit(2)
    # The checks are needed once, at boot: their code leaves the heap before the reader's
    # buffers are allocated (a few KiB that the role's loop can use).
    del config
    del sys.modules["config"]
    gc.collect()
    import app

    app.run(settings)


run()
