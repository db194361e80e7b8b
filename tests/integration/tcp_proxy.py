#!/usr/bin/python3
"""A TCP proxy on 127.0.0.1 that a test controls, to put a network fault between
catalogd and PostgreSQL (or any server) without touching either.

    proxy = TcpProxy(pg.port)          # listens on proxy.port, forwards to 127.0.0.1:pg.port
    proxy.freeze_after(2_000_000)      # freeze once 2 MB went server -> client
    proxy.freeze()                     # now: stop reading and forwarding, keep sockets open
    proxy.forward()                    # resume (data held while frozen is delivered)
    proxy.cut()                        # close both sides of every connection (peers see EOF)
    proxy.close()                      # stop listening, close everything

Frozen is what a hung server or a stuck middlebox looks like from the client: the
connection stays ESTABLISHED, the kernels keep acknowledging, and no byte arrives
(no TCP option detects it: only an application timeout does). New connections made
while frozen are accepted (the kernel would do it anyway) and go nowhere until
forward().

Each connection is two pump threads (one per direction) doing blocking recv/sendall;
a pump checks the frozen state before each recv and again before forwarding what it
read, so once frozen at most one chunk already read is held back. Every wait is
bounded (the pumps wake up every 0.1 s), and close() (also registered with the test
harness's cleanup) stops every thread and socket.
"""

import socket
import threading

import harness

CHUNK = 65536


class TcpProxy:
    def __init__(self, target_port, target_host='127.0.0.1'):
        self.target = (target_host, target_port)
        self._lock = threading.Lock()
        self._flowing = threading.Event()  # set: forwarding; clear: frozen
        self._flowing.set()
        self._closed = False
        self._conns = []                   # [client_sock, server_sock]
        self._threads = []
        self._down_bytes = 0               # server -> client, since the last freeze_after
        self._freeze_at = None
        self.accepted = 0
        self._lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._lsock.bind(('127.0.0.1', 0))
        self._lsock.listen(64)
        self._lsock.settimeout(0.1)
        self.port = self._lsock.getsockname()[1]
        harness._register(self)
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True,
                                          name='tcp-proxy-accept')
        self._acceptor.start()

    def __repr__(self):
        return '<TcpProxy :%d -> %s:%d>' % ((self.port,) + self.target)

    # -- control --
    def freeze(self):
        """Stop reading and forwarding in both directions; keep every socket open."""
        self._flowing.clear()

    def forward(self):
        """Resume forwarding (and cancel a pending freeze_after)."""
        with self._lock:
            self._freeze_at = None
        self._flowing.set()

    @property
    def frozen(self):
        return not self._flowing.is_set()

    def freeze_after(self, nbytes):
        """Freeze once nbytes more have gone from the server to the client."""
        with self._lock:
            self._down_bytes = 0
            self._freeze_at = nbytes

    def down_bytes(self):
        with self._lock:
            return self._down_bytes

    def cut(self):
        """Close both sides of every connection now (the listening socket stays)."""
        with self._lock:
            conns, self._conns = self._conns, []
        for pair in conns:
            for s in pair:
                _close(s)

    def close(self):
        self._closed = True
        self._flowing.set()
        self.cut()
        _close(self._lsock)
        for t in [self._acceptor] + self._threads:
            t.join(2)
        harness._unregister(self)

    _cleanup = close

    # -- internals --
    def _pick_target(self):
        """Where a new connection goes: self.target (a subclass may balance)."""
        return self.target

    def _accept_loop(self):
        while not self._closed:
            try:
                client, _ = self._lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                server = socket.create_connection(self._pick_target(), timeout=5)
            except OSError:
                _close(client)
                continue
            for s in (client, server):
                s.settimeout(0.1)
            with self._lock:
                self.accepted += 1
                self._conns.append([client, server])
            for src, dst, down in ((client, server, False), (server, client, True)):
                t = threading.Thread(target=self._pump, args=(src, dst, down), daemon=True,
                                     name='tcp-proxy-pump')
                t.start()
                self._threads.append(t)

    def _wait_flowing(self):
        """True once forwarding (False when closing)."""
        while not self._closed and not self._flowing.wait(0.1):
            pass
        return not self._closed

    def _pump(self, src, dst, down):
        try:
            while self._wait_flowing():
                try:
                    data = src.recv(CHUNK)
                except socket.timeout:
                    continue
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                if down:
                    self._count_down(len(data))
                if not self._wait_flowing():
                    return
                self._sendall(dst, data)
        except OSError:
            pass
        finally:
            _close(src)

    def _sendall(self, dst, data):
        view = memoryview(data)
        while view:
            try:
                n = dst.send(view)
            except socket.timeout:
                if self._closed:
                    raise OSError('closing')
                continue
            view = view[n:]

    def _count_down(self, n):
        with self._lock:
            self._down_bytes += n
            if self._freeze_at is not None and self._down_bytes >= self._freeze_at:
                self._freeze_at = None
                self._flowing.clear()


def _close(s):
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass
