#!/usr/bin/python3
"""Peer bootstrap (issue 13, part 3): a new replica starts from a ready peer's snapshot,
streamed from the peer's admin port (GET /snapshot, SNAPSHOT_SERVE=true).

  test_a  with PostgreSQL stopped, a replica with BOOTSTRAP_PEERS serves from the peer
          (log "startup source" source=peer, no warm load), with the peer's state digest;
          then both tail the same events and their digests stay equal.
  test_b  SNAPSHOT_SERVE off: /snapshot is 404; a peer that is not serving answers 503.
  test_c  the first peer dies mid-transfer (a TCP proxy that cuts after a few KiB): the
          replica says why and uses the next peer (PostgreSQL stopped: no other way).
  test_d  a transfer with one byte flipped is refused (checksum) and the warm load is used.
  test_e  a larger catalog (~20 MB): two slow transfers at once, a third is 503; the
          serving replica's RSS does not grow by anything near the catalog's size.

Real parts: the binary, PostgreSQL (PgCluster), the mock broker over TCP.
Run: /usr/bin/python3 tests/integration/test_peer_bootstrap.py -v   (about 1-2 min)
"""
import http.server
import os
import socket
import sys
import threading
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import kafka  # noqa: E402
import reliability_util as ru  # noqa: E402
import tcp_proxy  # noqa: E402

ORG = 'org_peer'
P1 = '44444444-0000-4000-8000-00000000c001'
V = ['55555555-0000-4000-8000-00000000c%03d' % i for i in range(1, 9)]
eventually, logs_with = ru.eventually, ru.logs_with


def setUpModule():
    harness.require_binary()


def sku_of(srv, vid, org=ORG):
    return ru.sku_of(srv, vid, org)


def events(version, variants, sku='S'):
    return ru.product_events(ORG, P1, version, variants, sku)


class FakePeer:
    """An HTTP server on 127.0.0.1 that answers every GET with body (HTTP/1.0)."""

    def __init__(self, body):
        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header('Content-Type', 'application/octet-stream')
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass
        self.httpd = http.server.HTTPServer(('127.0.0.1', 0), H)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.1,), daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def raw_get(port, path='/snapshot'):
    """A socket with GET path sent and the response head read: (socket, status, body start)."""
    s = socket.create_connection(('127.0.0.1', port), timeout=10)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.sendall(b'GET %s HTTP/1.0\r\nHost: x\r\n\r\n' % path.encode())
    head = b''
    deadline = time.monotonic() + 10
    while b'\r\n\r\n' not in head and time.monotonic() < deadline:
        chunk = s.recv(4096)
        if not chunk:
            break
        head += chunk
    status = int(head.split(b' ', 2)[1]) if head.startswith(b'HTTP/') else 0
    return s, status, head.split(b'\r\n\r\n', 1)[-1]


class PeerBootstrapTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.pg = harness.PgCluster()
        cls.pg.load_fixtures()

    @classmethod
    def tearDownClass(cls):
        cls.pg.stop()

    def setUp(self):
        if not self.pg._postmaster_pid():
            self.pg.start()
        self.km = kafka.KafkaMock(partitions=2)
        self.addCleanup(self.km.stop)

    def server(self, **extra):
        env = {'DATABASE_URL': self.pg.url(), 'KAFKA_BOOTSTRAP_SERVERS': self.km.bootstrap,
               'SYNC_MAX_BATCH_MS': '5', 'PG_RETRY_MAX_SECONDS': '1',
               'BOOTSTRAP_PEER_TIMEOUT_MS': '3000'}
        env.update(extra)
        srv = harness.Catalogd(env)
        self.addCleanup(srv.close)
        return srv

    def peer(self):
        """A serving replica that serves /snapshot, with ORG's events applied."""
        a = self.server(SNAPSHOT_SERVE='true')
        a.wait_serving(30)
        ru.produce(self.km, events(1, V[:6]))
        ru.wait_caught_up(a, self.km)
        return a

    def same_state(self, a, b, timeout=30):
        ru.wait_caught_up(a, self.km), ru.wait_caught_up(b, self.km)
        want = ru.digest(b)['digest']
        got = ru.wait_digest(a, want, timeout)
        self.assertEqual(got['digest'], want, a.tail())

    def test_a_bootstrap_from_peer_with_postgres_stopped(self):
        a = self.peer()
        self.pg.stop()
        b = self.server(BOOTSTRAP_PEERS='127.0.0.1:%d' % a.admin_port)
        b.wait_serving(30)
        src = ru.startup_source(b)
        self.assertEqual(src['source'], 'peer', b.tail())
        self.assertIn(':%d' % a.admin_port, src['peer'])
        self.assertGreater(src['bytes'], 0)
        self.assertFalse(logs_with(b, 'warm load starting'), 'PostgreSQL was asked')
        self.assertEqual(ru.digest(b)['digest'], ru.digest(a)['digest'])
        self.assertEqual(sku_of(b, V[5]), 'S5-1')
        # Both tail the same events from there.
        ru.produce(self.km, events(2, V[:2] + V[6:], sku='T') +
                   [(1,) + kafka.deleted(ORG, 'variant', V[3], 2)])
        self.same_state(b, a)
        self.assertEqual(sku_of(b, V[7]), 'T3-2')
        self.assertIsNone(sku_of(b, V[3]))
        self.assertTrue(logs_with(a, 'snapshot transfer ended', outcome='sent'), a.tail())
        self.assertEqual(b.stop(), 0)
        self.assertEqual(a.stop(), 0)

    def test_b_not_served_when_off_or_not_ready(self):
        off = self.server()
        off.wait_serving(30)
        self.assertEqual(ru.admin_status(off, '/snapshot')[0], 404)
        # Serving, but with no change feed: no positions a peer could tail from. 503
        # before any 200 is promised (was: 200 and a cut, empty body).
        nofeed = harness.Catalogd({'DATABASE_URL': self.pg.url(), 'SNAPSHOT_SERVE': 'true'})
        self.addCleanup(nofeed.close)
        nofeed.wait_serving(30)
        self.assertEqual(ru.admin_status(nofeed, '/snapshot')[0], 503)
        # HEAD cannot be answered without encoding the whole snapshot: 405, GET only (was 404).
        req = urllib.request.Request('http://127.0.0.1:%d/snapshot' % nofeed.admin_port,
                                     method='HEAD')
        with self.assertRaises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=10)
        self.assertEqual((e.exception.code, e.exception.headers.get('Allow')), (405, 'GET'))
        self.assertEqual(nofeed.stop(), 0)
        self.pg.stop()
        # Serving is on, but this one never gets a catalog (no source reachable).
        unready = self.server(SNAPSHOT_SERVE='true')
        unready.wait_listening(30)
        self.assertEqual(ru.admin_status(unready, '/snapshot')[0], 503)
        self.assertEqual(off.stop(), 0)

    def test_c_peer_dies_mid_transfer_next_peer_used(self):
        a = self.peer()
        proxy = tcp_proxy.TcpProxy(a.admin_port)
        self.addCleanup(proxy.close)
        proxy.freeze_after(3000)  # the head and a few KiB of the body, then it "dies"

        def cut_when_frozen():
            deadline = time.monotonic() + 60
            while not proxy.frozen and time.monotonic() < deadline:
                time.sleep(0.02)
            proxy.cut()
        killer = threading.Thread(target=cut_when_frozen, daemon=True)
        killer.start()
        self.pg.stop()
        b = self.server(BOOTSTRAP_PEERS='127.0.0.1:%d,127.0.0.1:%d' % (proxy.port, a.admin_port))
        b.wait_serving(30)
        killer.join(5)
        failed = logs_with(b, 'peer bootstrap failed')
        self.assertTrue(failed, b.tail())
        self.assertIn(':%d' % proxy.port, failed[0]['peer'])
        self.assertIn('truncated', failed[0]['why'])
        src = ru.startup_source(b)
        self.assertEqual(src['source'], 'peer')
        self.assertIn(':%d' % a.admin_port, src['peer'])
        self.assertEqual(ru.digest(b)['digest'], ru.digest(a)['digest'])
        self.assertEqual(b.stop(), 0)

    def test_d_corrupt_transfer_refused(self):
        a = self.peer()
        body = bytearray(ru.snapshot_bytes(a))
        self.assertEqual(bytes(body[:8]), b'CATDCKPT')
        body[len(body) // 2] ^= 0x04
        fake = FakePeer(bytes(body))
        self.addCleanup(fake.close)
        b = self.server(BOOTSTRAP_PEERS='127.0.0.1:%d' % fake.port)
        b.wait_serving(30)
        failed = logs_with(b, 'peer bootstrap failed')
        self.assertTrue(failed, b.tail())
        self.assertIn('checksum', failed[0]['why'])
        self.assertEqual(ru.startup_source(b)['source'], 'postgres')
        self.assertEqual(b.stop(), 0)

    def test_e_memory_bounded_and_transfers_capped(self):
        n = 20000
        self.pg.psql(ru.padded_catalog_sql('org_big', n, vendor_pad=1000))
        self.addCleanup(lambda: self.pg._postmaster_pid() or self.pg.start())
        self.addCleanup(lambda: self.pg.psql(
            "DELETE FROM variants WHERE organization_id = 'org_big';"
            "DELETE FROM products WHERE organization_id = 'org_big';"))
        a = self.peer()
        catalog = n * 1000
        rss0 = ru.proc_rss(a.pid)
        socks = []
        try:
            for _ in range(2):
                s, status, start = raw_get(a.admin_port)
                socks.append(s)
                self.assertEqual(status, 200)
            # Both are open and not read: the third is turned away.
            s3, status3, _ = raw_get(a.admin_port)
            s3.close()
            self.assertEqual(status3, 503)
            # Busy, not down: the 503 says when to ask again (replicas wait for busy peers).
            with self.assertRaises(urllib.error.HTTPError) as busy:
                urllib.request.urlopen('http://127.0.0.1:%d/snapshot' % a.admin_port, timeout=10)
            self.assertEqual((busy.exception.code, busy.exception.headers.get('Retry-After')),
                             (503, '1'))
            # Read one of them slowly to the end, watching the server's RSS.
            peak, got, s = rss0, len(start), socks[0]
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                chunk = s.recv(262144)
                if not chunk:
                    break
                got += len(chunk)
                time.sleep(0.002)
                peak = max(peak, ru.proc_rss(a.pid) or 0)
        finally:
            for s in socks:
                s.close()
        self.assertGreater(got, catalog, 'the whole snapshot came')
        growth = peak - rss0
        ru.note('rss before %.1f MiB, peak growth %.1f MiB, body %.1f MiB' %
                (rss0 / 2**20, growth / 2**20, got / 2**20))
        # PEER_RSS_GROWTH_SHARE: the bound as a share of the catalog; the ASan suite raises
        # it (its quarantine keeps freed memory resident: 64 MiB there).
        share = ru.env_float('PEER_RSS_GROWTH_SHARE', 0.25)
        self.assertLess(growth, catalog * share, 'RSS grew by %d bytes during transfers of %d'
                        % (growth, got))
        eventually(lambda: len(logs_with(a, 'snapshot transfer ended')) >= 2, 10, 'both ended')
        self.assertEqual(a.stop(), 0)


if __name__ == '__main__':
    unittest.main()
