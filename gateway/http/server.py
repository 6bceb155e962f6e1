"""The HTTP API served by uvicorn on a thread of the gateway process, beside the MQTT side."""

from __future__ import annotations

import threading

import uvicorn
from fastapi import FastAPI


class HttpServer:
    def __init__(self, app: FastAPI, host: str, port: int) -> None:
        # No lifespan (the gateway owns start and stop); uvicorn leaves signals to the main
        # thread when it runs on another.
        config = uvicorn.Config(app, host=host, port=port, lifespan="off", log_level="warning")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="http", daemon=True)

    def start(self, timeout: float = 10) -> None:
        self._thread.start()
        ready = threading.Event()
        # uvicorn sets ``started`` once it listens; wait for it so callers can connect.
        for _ in range(int(timeout / 0.02)):
            if self._server.started or not self._thread.is_alive():
                break
            ready.wait(0.02)
        if not self._server.started:
            raise RuntimeError("the HTTP server did not start (is the port free?)")

    def stop(self, timeout: float = 10) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)
