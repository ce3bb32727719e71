"""A small TCP proxy for fault tests: put it between a client and a real server, then cut the
link (``reset()``: both ends get a TCP RST), cut it after exactly N more bytes from the server
(``cut_after(n)``: in the middle of a reply), or freeze it while it stays open (``silence()``,
also ``freeze()``: bytes stop flowing both ways, no socket is closed).
"""

from __future__ import annotations

import select
import socket
import struct
import threading


class TcpProxy:
    """Forwards every connection made to ``(host, port)`` to ``target``, on one thread."""

    def __init__(self, target_host: str, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server((host, 0))
        self.host, self.port = self._listener.getsockname()[:2]
        self._wake_r, self._wake_w = socket.socketpair()
        self._lock = threading.Lock()
        self._peer: dict[socket.socket, socket.socket] = {}
        self._upstreams: set[socket.socket] = set()
        self._silent = False
        # Set by the proxy thread once it forwards nothing any more (silence() waits for it).
        self._silenced = threading.Event()
        self._stopping = False
        # Server-side socket -> bytes it may still forward before both ends are reset.
        self._budget: dict[socket.socket, int] = {}
        #: Bytes forwarded from servers to clients, in all.
        self.downstream_bytes = 0
        #: Connections accepted so far, and connections ``reset()`` cut.
        self.accepted = 0
        self.resets = 0
        self._thread = threading.Thread(target=self._run, name="test-tcp-proxy", daemon=True)

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self) -> TcpProxy:
        self._thread.start()
        return self

    @property
    def connections(self) -> int:
        """Proxied connections open right now."""
        with self._lock:
            return len(self._peer) // 2

    def silence(self) -> None:
        """Stop forwarding in both directions; every socket stays open (a half-dead link).
        Returns once the proxy thread has stopped forwarding."""
        self._silenced.clear()
        self._silent = True
        self._wake()
        if not self._silenced.wait(5):
            raise RuntimeError("the proxy thread did not go silent")

    freeze = silence

    def cut_after(self, nbytes: int) -> None:
        """Forward exactly ``nbytes`` more bytes from the server on every open connection,
        then reset both ends (a link that ends in the middle of a reply)."""
        with self._lock:
            for sock in self._peer:
                if sock in self._upstreams:
                    self._budget[sock] = nbytes
        self._wake()

    def resume(self) -> None:
        """Forward again (bytes held while silent flow on)."""
        self._silent = False
        self._wake()

    def reset(self) -> int:
        """Abort every proxied connection with a TCP RST on both sides; return how many."""
        with self._lock:
            socks = list(self._peer)
            self._peer.clear()
            self._upstreams.clear()
            self._budget.clear()
        for sock in socks:
            _abort(sock)
        self.resets += len(socks) // 2
        self._wake()
        return len(socks) // 2

    def close(self) -> None:
        self._stopping = True
        self._wake()
        self._thread.join(5)
        self.reset()
        self._listener.close()
        self._wake_r.close()
        self._wake_w.close()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def _run(self) -> None:
        while not self._stopping:
            with self._lock:
                # While silent, leave the bytes in the kernel: nobody reads, nothing flows.
                conns = [] if self._silent else list(self._peer)
            if self._silent:
                self._silenced.set()
            try:
                readable, _, _ = select.select([self._listener, self._wake_r, *conns], [], [], 1)
            except (OSError, ValueError):
                continue  # a socket was reset under select: look again
            for sock in readable:
                if sock is self._wake_r:
                    self._wake_r.recv(4096)
                elif sock is self._listener:
                    self._accept()
                else:
                    self._forward(sock)

    def _accept(self) -> None:
        client, _ = self._listener.accept()
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            _abort(client)
            return
        with self._lock:
            self._peer[client] = upstream
            self._peer[upstream] = client
            self._upstreams.add(upstream)
            self.accepted += 1

    def _forward(self, sock: socket.socket) -> None:
        with self._lock:
            peer = self._peer.get(sock)
        if peer is None:
            return
        budget = self._budget.get(sock)
        try:
            data = sock.recv(65536 if budget is None else max(1, min(65536, budget)))
            if data:
                if budget is not None:
                    data = data[:budget]
                    self._budget[sock] = budget - len(data)
                peer.sendall(data)
                if sock in self._upstreams:
                    self.downstream_bytes += len(data)
                if budget is None or budget - len(data) > 0:
                    return
                # The budget is spent: cut both ends now, mid-stream.
                with self._lock:
                    self._peer.pop(sock, None)
                    self._peer.pop(peer, None)
                    self._budget.pop(sock, None)
                    self._upstreams.discard(sock)
                self.resets += 1
                _abort(sock)
                _abort(peer)
                return
        except OSError:
            pass
        # One side closed: close the other too, as a real link would.
        with self._lock:
            self._peer.pop(sock, None)
            self._peer.pop(peer, None)
            self._budget.pop(sock, None)
            self._upstreams.discard(sock)
            self._upstreams.discard(peer)
        sock.close()
        peer.close()


def _abort(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the kernel sends RST instead of FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()
