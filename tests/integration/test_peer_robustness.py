#!/usr/bin/python3
"""Peer transfers under hostile or busy peers (issue 13 follow-up: robustness).

  TricklingPeerTest  (a fake HTTP peer in this file sends a real snapshot's first KiB, then
                      one byte every 0.5 s: a hostile peer, not a mock of catalogd)
    test_a  with the default minimum rate, the replica gives up on it within one 10 s rate
            window (`peer bootstrap failed`, "too slow", naming it), /readyz showed the
            transfer running (peer, bytes) meanwhile, and the next peer of the list is used.
            The list names both peers as `localhost:port`: names resolved by getaddrinfo
            (no name here resolves to several 127.0.0.x addresses, so the several-address
            case is covered by the list, not by one name).
    test_b  the overall bound: rate check off, BOOTSTRAP_PEER_TRANSFER_TIMEOUT_MS=3000: cut
            at about 3 s, then the warm load.
    test_c  SIGTERM during the transfer: exit code 0 within 2 s, no warm load after it.
  BusyPeerTest  (a peer with a ~10 MB catalog)
    test_a  one peer, both its transfer slots held by readers, three replicas started at
            once: they are told "busy", wait, and all three start from the peer; PostgreSQL
            (running, log_statement=all) sees no COPY from them.
    test_b  serving side: a reader that takes 16 KiB and stops is cut after
            ADMIN_REQUEST_TIMEOUT_SECONDS (`snapshot transfer cut`), counted in
            catalogd_snapshot_transfers_total{result="cut"}; while it was pinned, updates left
            replaced records waiting (catalogd_snapshot_deferred_frees > 0); after the cut
            both catalogd_snapshot_pins and that are 0 (the pin is gone, the memory freed).
    test_c  serving side, overall bound: a steady reader (~300 KiB/s, never stalls) with
            SNAPSHOT_TRANSFER_TIMEOUT_SECONDS=3 is cut at about 3 s.
    test_d  serving side, minimum rate: the same reader below SNAPSHOT_MIN_BYTES_PER_SECOND
            (raised to 4 MiB/s) is cut at the end of a 10 s window.
            (With the defaults, a reader slower than about 200 KB/s here stalls long enough
            for the request timeout, since the kernel wakes a writer only once a good part of
            the send buffer is free; the rate check catches what keeps that timeout happy.)

Real parts: the binary, PostgreSQL (PgCluster), the mock broker over TCP.
Run: /usr/bin/python3 tests/integration/test_peer_robustness.py -v   (about 2 min)
"""
import os
import re
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import kafka  # noqa: E402
import reliability_util as ru  # noqa: E402

ORG = 'org_peerx'
P1 = '44444444-0000-4000-8000-00000000d001'
V = ['55555555-0000-4000-8000-00000000d%03d' % i for i in range(1, 7)]
BIG_ORG = 'org_peerx_big'
BIG_ROWS = 10000  # ~10 MB of snapshot: more than the ring and the sockets' buffers hold
eventually, logs_with = ru.eventually, ru.logs_with


def setUpModule():
    harness.require_binary()


def events(version, variants, sku='S'):
    return ru.product_events(ORG, P1, version, variants, sku)


def transfer_shown(srv):
    """/readyz's "startup" object once it shows bytes received, else None (also while the
    admin port is not listening yet)."""
    try:
        st = ru.readyz(srv)[1].get('startup')
    except OSError:
        return None
    return st if st and st.get('bytes', 0) > 0 else None


def raw_get(port, rcvbuf=65536):
    """A socket with GET /snapshot sent and the response head read: (socket, status)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect: the window
    s.settimeout(10)
    s.connect(('127.0.0.1', port))
    s.sendall(b'GET /snapshot HTTP/1.0\r\nHost: x\r\n\r\n')
    head = b''
    deadline = time.monotonic() + 10
    while b'\r\n\r\n' not in head and time.monotonic() < deadline:
        chunk = s.recv(1)  # the head only: the body stays in the socket
        if not chunk:
            break
        head += chunk
    status = int(head.split(b' ', 2)[1]) if head.startswith(b'HTTP/') else 0
    return s, status


class TricklingPeer(ru.RawPeer):
    """A hostile peer on 127.0.0.1: answers GET with 200, sends body[:fast] at once, then one
    byte every interval seconds until told to stop (or the client goes away)."""

    def __init__(self, body, fast=1024, interval=0.5):
        self.body, self.fast, self.interval = body, fast, interval
        self.sent = 0
        super().__init__()

    def send_body(self, c):
        c.sendall(self.body[:self.fast])
        self.sent += self.fast
        for i in range(self.fast, len(self.body)):
            if self.stop_ev.wait(self.interval):
                break
            c.sendall(self.body[i:i + 1])
            self.sent += 1


class PeerTestBase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = harness.PgCluster()
        cls.pg.load_fixtures()

    @classmethod
    def tearDownClass(cls):
        cls.pg.stop()

    def setUp(self):
        self.km = kafka.KafkaMock(partitions=2)
        self.addCleanup(self.km.stop)

    def server(self, **extra):
        env = {'DATABASE_URL': self.pg.url(), 'KAFKA_BOOTSTRAP_SERVERS': self.km.bootstrap,
               'SYNC_MAX_BATCH_MS': '5', 'PG_RETRY_MAX_SECONDS': '1',
               'BOOTSTRAP_PEER_TIMEOUT_MS': '3000', 'AUDIT_ROWS_PER_SECOND': '0'}
        env.update(extra)
        srv = harness.Catalogd(env)
        self.addCleanup(srv.close)
        return srv

    def peer(self, **extra):
        """A serving replica that serves /snapshot, with ORG's events applied."""
        a = self.server(SNAPSHOT_SERVE='true', **extra)
        a.wait_serving(60)
        ru.produce(self.km, events(1, V))
        ru.wait_caught_up(a, self.km)
        return a


class TricklingPeerTest(PeerTestBase):

    def trickler(self, real_peer):
        t = TricklingPeer(ru.snapshot_bytes(real_peer))
        self.addCleanup(t.close)
        return t

    def test_a_min_rate_gives_up_and_next_peer_is_used(self):
        a = self.peer()
        t = self.trickler(a)
        t0 = time.monotonic()
        b = self.server(BOOTSTRAP_PEERS='localhost:%d,localhost:%d' % (t.port, a.admin_port))
        # While it trickles, /readyz says a peer transfer runs, from which peer, how far.
        seen = eventually(lambda: transfer_shown(b), 8, 'a peer transfer in /readyz')
        self.assertEqual(seen['phase'], 'peer transfer')
        self.assertIn('localhost:%d' % t.port, seen['peer'])
        self.assertEqual(ru.readyz(b)[0], 503)
        self.assertTrue(logs_with(b, 'peer transfer started'), b.tail())
        b.wait_serving(30)
        took = time.monotonic() - t0
        failed = logs_with(b, 'peer bootstrap failed')
        self.assertTrue(failed, b.tail())
        self.assertEqual(failed[0]['level'], 'warn')
        self.assertIn('localhost:%d' % t.port, failed[0]['peer'])
        self.assertIn('too slow', failed[0]['why'])
        self.assertIn('BOOTSTRAP_PEER_MIN_BYTES_PER_SECOND', failed[0]['why'])
        src = ru.startup_source(b)
        self.assertEqual(src['source'], 'peer', b.tail())
        self.assertIn('localhost:%d' % a.admin_port, src['peer'])
        self.assertLess(took, 25, 'one 10 s rate window, then the next peer')
        self.assertIsNone(ru.readyz(b)[1].get('startup'), 'no transfer runs any more')
        self.assertEqual(ru.digest(b)['digest'], ru.digest(a)['digest'])
        self.assertEqual(b.stop(), 0)

    def test_b_overall_deadline_then_warm_load(self):
        a = self.peer()
        t = self.trickler(a)
        t0 = time.monotonic()
        b = self.server(BOOTSTRAP_PEERS='127.0.0.1:%d' % t.port,
                        BOOTSTRAP_PEER_MIN_BYTES_PER_SECOND='0',
                        BOOTSTRAP_PEER_TRANSFER_TIMEOUT_MS='3000')
        eventually(lambda: logs_with(b, 'peer bootstrap failed'), 15, 'the transfer given up')
        took = time.monotonic() - t0
        failed = logs_with(b, 'peer bootstrap failed')
        self.assertIn('BOOTSTRAP_PEER_TRANSFER_TIMEOUT_MS (3000 ms)', failed[0]['why'])
        self.assertLess(took, 8, 'the 3 s bound, not the trickle, ends it')
        b.wait_serving(30)
        self.assertEqual(ru.startup_source(b)['source'], 'postgres')
        self.assertEqual(b.stop(), 0)

    def test_c_sigterm_during_a_transfer(self):
        a = self.peer()
        t = self.trickler(a)
        b = self.server(BOOTSTRAP_PEERS='127.0.0.1:%d' % t.port,
                        BOOTSTRAP_PEER_MIN_BYTES_PER_SECOND='0', SHUTDOWN_DRAIN_MS='0',
                        SHUTDOWN_GRACE_SECONDS='2')
        eventually(lambda: transfer_shown(b), 10, 'the transfer running')
        t0 = time.monotonic()
        b.send_signal(15)
        code = b.wait_exit(10)
        took = time.monotonic() - t0
        ru.note('exit %d %.2f s after SIGTERM mid-transfer' % (code, took))
        self.assertEqual(code, 0, b.tail())
        self.assertLess(took, 2.0)
        self.assertFalse(logs_with(b, 'warm load starting'), 'no fallback on the way out')
        self.assertFalse(logs_with(b, 'startup source'), b.tail())


class BusyPeerTest(PeerTestBase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.pg.psql(ru.padded_catalog_sql(BIG_ORG, BIG_ROWS, vendor_pad=1000))

    def pg_log_size(self):
        return os.path.getsize(os.path.join(self.pg.dir, 'postgres.log'))

    def copies_since(self, offset):
        with open(os.path.join(self.pg.dir, 'postgres.log'), 'rb') as f:
            f.seek(offset)
            text = f.read().decode('utf-8', 'replace')
        return re.findall(r'statement: COPY .*', text)

    def test_a_busy_peer_is_waited_for_not_postgres(self):
        self.pg.psql("ALTER SYSTEM SET log_statement = 'all'")
        self.pg.psql("SELECT pg_reload_conf()")
        self.addCleanup(self.pg.psql, "SELECT pg_reload_conf()")
        self.addCleanup(self.pg.psql, "ALTER SYSTEM RESET log_statement")
        a = self.peer()
        # Both transfer slots taken by readers that read nothing.
        held = []
        for _ in range(2):
            s, status = raw_get(a.admin_port)
            held.append(s)
            self.assertEqual(status, 200)
        try:
            mark = self.pg_log_size()
            peers = 'BOOTSTRAP_PEERS', '127.0.0.1:%d' % a.admin_port
            reps = [self.server(**dict([peers])) for _ in range(3)]
            for r in reps:  # told busy (or, were busy not told apart, given up on the peer)
                eventually(lambda: logs_with(r, 'peer busy; asking again shortly') or
                           logs_with(r, 'peer bootstrap failed'), 20, 'an answer from the peer')
        finally:
            for s in held:
                s.close()
        for r in reps:
            r.wait_serving(60)
        self.assertEqual(self.copies_since(mark), [], 'the replicas warm-loaded')
        for r in reps:
            self.assertTrue(logs_with(r, 'peer busy; asking again shortly'), r.tail())
            self.assertEqual(ru.startup_source(r)['source'], 'peer', r.tail())
            self.assertFalse(logs_with(r, 'peer bootstrap failed'), r.tail())
        self.assertGreater(ru.metric(a, 'catalogd_snapshot_transfers_total{result="busy"}'), 0)
        self.assertGreaterEqual(ru.metric(a, 'catalogd_snapshot_transfers_total{result="sent"}'),
                                3)
        want = ru.digest(a)['digest']
        for r in reps:
            self.assertEqual(ru.digest(r)['digest'], want)
            self.assertEqual(r.stop(), 0)

    def reader(self, port, chunk, interval, stop_after=None):
        """A thread reading /snapshot chunk bytes every interval s until EOF, an error, or
        stop_after bytes (then it holds the socket open, reading nothing). Returns (thread,
        stop event, [bytes read])."""
        stop_ev, got = threading.Event(), [0]
        self.addCleanup(stop_ev.set)
        s, status = raw_get(port, rcvbuf=16384)
        self.assertEqual(status, 200)

        def run():
            try:
                while not stop_ev.wait(interval):
                    if stop_after is not None and got[0] >= stop_after:
                        continue
                    data = s.recv(chunk)
                    if not data:
                        break
                    got[0] += len(data)
            except OSError:
                pass
            finally:
                s.close()
        t = threading.Thread(target=run, daemon=True)
        t.start()
        return t, stop_ev, got

    def cut_record(self, a, t0, timeout):
        try:
            rec = eventually(lambda: logs_with(a, 'snapshot transfer cut'), timeout,
                             'the reader cut')
        except AssertionError:
            ru.note([r for r in a.logs() if 'transfer' in r.get('msg', '')])
            raise
        took = time.monotonic() - t0
        ru.note('reader cut after %.1f s: %s' % (took, rec[0]))
        self.assertEqual(rec[0]['level'], 'warn')
        self.assertEqual(rec[0]['peer'], '127.0.0.1')
        eventually(lambda: ru.metric(a, 'catalogd_snapshot_transfers_total{result="cut"}') == 1,
                   5, 'counted')
        eventually(lambda: ru.metric(a, 'catalogd_snapshot_pins') == 0, 5, 'unpinned')
        self.assertTrue(logs_with(a, 'snapshot transfer ended', outcome='cut'), a.tail())
        return rec[0], took

    def test_b_stalled_reader_is_cut_and_the_pin_released(self):
        a = self.peer()
        t0 = time.monotonic()
        t, stop_ev, got = self.reader(a.admin_port, 4096, 0.05, stop_after=16384)
        eventually(lambda: ru.metric(a, 'catalogd_snapshot_pins') == 1, 10, 'pinned')
        # Updates flow while it is pinned: what they replace waits for the pin.
        ru.produce(self.km, events(2, V, sku='T'))
        ru.wait_caught_up(a, self.km)
        self.assertGreater(ru.metric(a, 'catalogd_snapshot_deferred_frees'), 0)
        rec, took = self.cut_record(a, t0, 30)
        self.assertIn('ADMIN_REQUEST_TIMEOUT_SECONDS', rec['why'])
        self.assertLess(took, 15, 'ADMIN_REQUEST_TIMEOUT_SECONDS (10) after it stopped')
        self.assertEqual(ru.metric(a, 'catalogd_snapshot_deferred_frees'), 0, 'freed')
        stop_ev.set()
        t.join(5)
        self.assertEqual(a.stop(), 0)

    def test_c_overall_deadline_cuts_a_steady_reader(self):
        """A reader that keeps taking bytes (never stalls) but would take minutes."""
        a = self.peer(SNAPSHOT_TRANSFER_TIMEOUT_SECONDS='3', SNAPSHOT_MIN_BYTES_PER_SECOND='0')
        t0 = time.monotonic()
        t, _, got = self.reader(a.admin_port, 16384, 0.05)
        rec, took = self.cut_record(a, t0, 15)
        self.assertIn('SNAPSHOT_TRANSFER_TIMEOUT_SECONDS', rec['why'])
        self.assertLess(took, 6)
        self.assertLess(got[0], BIG_ROWS * 1000, 'cut short')
        self.assertEqual(a.stop(), 0)

    def test_d_min_rate_cuts_a_steady_slow_reader(self):
        """The same reader (~300 KiB/s) below a minimum rate of 4 MiB/s: cut at the end of a
        10 s window, before the request timeout or the overall bound would."""
        a = self.peer(SNAPSHOT_MIN_BYTES_PER_SECOND=str(4 << 20))
        t0 = time.monotonic()
        t, _, got = self.reader(a.admin_port, 16384, 0.05)
        rec, took = self.cut_record(a, t0, 30)
        self.assertIn('SNAPSHOT_MIN_BYTES_PER_SECOND', rec['why'])
        self.assertLess(took, 22, 'within two 10 s windows')
        self.assertEqual(a.stop(), 0)


if __name__ == '__main__':
    unittest.main()
