# Entry point. On a board, MicroPython runs main.py at boot with config.json beside it; on the
# unix port, `micropython firmware/main.py path/to/config.json` runs a simulated reader.
import sys

import app
import config


def run():
    path = sys.argv[1] if len(sys.argv) > 1 else "config.json"
    app.run(config.load(path))


run()
