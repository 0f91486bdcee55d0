"""A TCP proxy between the code under test and a real server, which a test can cut and heal.

The machine's PostgreSQL and Redis are shared by every engineer's test runs,
so no test may stop them. A test that needs "PostgreSQL is down" points the
service at a ``TcpProxy`` in front of the real server instead and cuts it:

- ``cut()`` (``mode="refuse"``): every open connection is reset and the
  listening socket closed, so new connections are refused — what clients see
  when the server process stops;
- ``cut(mode="blackhole")``: connections are kept open but nothing is
  forwarded either way, and new ones are accepted and then hang — what
  clients see behind a network partition;
- ``heal()``: listening (on the same port) and forwarding again.
"""
from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from sqlalchemy import make_url

_BUFFER = 1 << 16


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target`` on daemon threads until ``close()``."""

    def __init__(self, target_host: str, target_port: int, *, listen_host: str = "127.0.0.1", port: int = 0) -> None:
        self.target = (target_host, target_port)
        self.listen_host = listen_host
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._forwarding = threading.Event()
        self._forwarding.set()
        self._closed = False
        self._listener: socket.socket | None = None
        self.port = port
        self._listen()

    # ----------------------------------------------------------------------- control

    def cut(self, mode: Literal["refuse", "blackhole"] = "refuse") -> None:
        if mode == "refuse":
            self._stop_listening()
            with self._lock:
                pairs, self._pairs = self._pairs, []
            for pair in pairs:
                for sock in pair:
                    _reset(sock)
        else:
            self._forwarding.clear()

    def heal(self) -> None:
        self._forwarding.set()
        if self._listener is None:
            self._listen()

    def close(self) -> None:
        self._closed = True
        self.cut("refuse")

    def url_for(self, url: str) -> str:
        """``url`` (a SQLAlchemy or Redis URL pointing at the target) rewritten to go through this proxy."""
        if url.startswith("redis://"):
            rest = url.split("://", 1)[1]
            path = rest.split("/", 1)[1] if "/" in rest else ""
            return f"redis://{self.listen_host}:{self.port}/{path}"
        return make_url(url).set(host=self.listen_host, port=self.port).render_as_string(hide_password=False)

    # ----------------------------------------------------------------------- plumbing

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.listen_host, self.port))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), name="tcp-proxy-accept", daemon=True).start()

    def _stop_listening(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by cut() or close()
            try:
                upstream = socket.create_connection(self.target, timeout=10)
                upstream.settimeout(None)
            except OSError:
                _reset(client)
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), name="tcp-proxy-pump", daemon=True).start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        peers = {client: upstream, upstream: client}
        try:
            while True:
                readable, _, _ = select.select(list(peers), [], [], 0.2)
                if not self._forwarding.is_set():
                    continue  # blackhole: bytes wait in the kernel buffers, undelivered
                for sock in readable:
                    data = sock.recv(_BUFFER)
                    if not data:
                        return
                    peers[sock].sendall(data)
        except (OSError, ValueError):
            return
        finally:
            with self._lock:
                if (client, upstream) in self._pairs:
                    self._pairs.remove((client, upstream))
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.close()


def _reset(sock: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), as a peer whose process died would."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    with contextlib.suppress(OSError):
        sock.close()


@contextmanager
def proxied(host: str, port: int) -> Iterator[TcpProxy]:
    proxy = TcpProxy(host, port)
    try:
        yield proxy
    finally:
        proxy.close()
