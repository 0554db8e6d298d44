"""A TCP proxy in front of the real PostgreSQL server that can lose a COMMIT's reply.

The one failure a retrying writer cannot see through: the server committed the transaction,
but the connection died before the client read the reply, so the client does not know
whether its batch landed. `CommitDroppingProxy` forwards every byte both ways until it is
armed; then, for the next COMMIT a client sends, it either forwards the COMMIT, swallows the
server's answer and closes both sockets (`after_commit=True`: the data IS committed), or
closes both sockets without forwarding it (`after_commit=False`: the data is NOT committed).

psycopg sends COMMIT as a simple-query message (`Q`, length, `COMMIT\\0`); the proxy looks
for that exact message in the client's stream, so statements that merely contain the word
never trigger it.

Typical use::

    with CommitDroppingProxy(("127.0.0.1", 5432)) as proxy:
        url = f"postgresql://postgres@127.0.0.1:{proxy.port}/test"
        ...
        proxy.arm(after_commit=True)      # the next COMMIT's reply is lost
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from types import TracebackType

#: The simple-query message libpq sends for `COMMIT`: type, int32 length, text, NUL.
COMMIT_MESSAGE = b"Q" + struct.pack("!i", 4 + len(b"COMMIT\x00")) + b"COMMIT\x00"


class _Link:
    """One client connection and its upstream connection."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self.swallow_reply = False
        self._closed = threading.Event()

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()


class CommitDroppingProxy:
    """Listens on 127.0.0.1 (free port) and relays to `upstream`; see the module docstring.

    Attributes:
        port: the port clients connect to.
        dropped: COMMITs whose connection was cut so far.
    """

    def __init__(self, upstream: tuple[str, int]) -> None:
        self._upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._armed = 0
        self._after_commit = True
        self._links: list[_Link] = []
        self.dropped = 0
        self.commits_seen = 0
        self._stopping = False
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def arm(self, *, after_commit: bool = True, count: int = 1) -> None:
        """Cut the connection at the next `count` COMMITs.

        Args:
            after_commit: True to forward the COMMIT and lose the server's reply (the
                transaction is committed); False to cut before forwarding it (rolled back).
            count: how many COMMITs to treat this way.
        """
        with self._lock:
            self._armed = count
            self._after_commit = after_commit

    def _accept(self) -> None:
        while not self._stopping:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._upstream, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            link = _Link(client, upstream)
            with self._lock:
                self._links.append(link)
            threading.Thread(target=self._client_to_server, args=(link,), daemon=True).start()
            threading.Thread(target=self._server_to_client, args=(link,), daemon=True).start()

    def _client_to_server(self, link: _Link) -> None:
        tail = b""
        try:
            while True:
                data = link.client.recv(65536)
                if not data:
                    break
                window = tail + data
                tail = window[-(len(COMMIT_MESSAGE) - 1) :]
                if COMMIT_MESSAGE in window:
                    with self._lock:
                        self.commits_seen += 1
                        cut = self._armed > 0
                        if cut:
                            self._armed -= 1
                            self.dropped += 1
                        after = self._after_commit
                    if cut and not after:
                        break  # the server never sees the COMMIT: rolled back
                    if cut:
                        link.swallow_reply = True  # set before the reply can arrive
                link.upstream.sendall(data)
        except OSError:
            pass
        if not link.swallow_reply:
            link.close()

    def _server_to_client(self, link: _Link) -> None:
        try:
            while True:
                data = link.upstream.recv(65536)
                if not data:
                    break
                if link.swallow_reply:
                    break  # the server answered the COMMIT: lose the answer
                link.client.sendall(data)
        except OSError:
            pass
        link.close()

    def close(self) -> None:
        """Stop accepting and cut every open connection."""
        self._stopping = True
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            links = list(self._links)
        for link in links:
            link.close()

    def __enter__(self) -> CommitDroppingProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
