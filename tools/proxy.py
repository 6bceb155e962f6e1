"""A TCP forwarder to put between a reader and its broker, and cut: a network partition on
loopback. ``cut()`` makes the path a black hole: bytes either way are dropped and new connections
refused, while the sockets stay open, so the reader learns of it only as a real reader would
behind a dead access point (replies that never come, then its keepalive). ``heal()`` drops the
connections (their streams lost bytes) and lets the reader connect again."""

from __future__ import annotations

import contextlib
import socket
import threading


class Partition:
    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self.cut_off = False
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name="partition").start()

    def cut(self) -> None:
        self.cut_off = True

    def heal(self) -> None:
        with self._lock:
            self._drop_all()
            self.cut_off = False

    def close(self) -> None:
        self._closed = True
        with self._lock:
            self._drop_all()
        self._server.close()

    def _drop_all(self) -> None:
        for sock in self._open:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._open.clear()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            with self._lock:
                try:
                    if self.cut_off:
                        raise OSError("cut off")
                    upstream = socket.create_connection(self._target, timeout=5)
                except OSError:
                    client.close()
                    continue
                for sock in (client, upstream):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._open += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                if not self.cut_off:
                    sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
