#!/usr/bin/python3
"""Bounded under abuse. One catalogd (PostgreSQL fixtures plus one product with 3000
variants, whose GetProductDetails answer is ~0.85 MB) takes, in turn:

  1. 2,000 then 10,000 calls in flight over four channels, and 300 Health/Watch streams
     that are never read;
  2. 10 raw HTTP/2 connections pipelining 1,000 streams each (the per-connection limit);
  3. batch requests at the limit (1000 ids) and one over it;
  4. oversized messages (> GRPC_MAX_RECV_MESSAGE_BYTES: RESOURCE_EXHAUSTED);
  5. random bytes on the gRPC port (raw TCP, with and without the HTTP/2 preface);
  6. truncated and malformed HTTP/2 frames and gRPC messages;
  7. clients that never read: idle sockets, a preface then silence, and connections that
     open 1,000 GetProductDetails streams each on the big product, with a zero flow-control
     window and a tiny receive buffer, and never read a byte.

All along, a well-behaved client calls the four methods and checks every answer (its p99
is reported, not asserted), RSS is sampled (/metrics process_resident_memory_bytes and
/proc) and must stay under ABUSE_MAX_RSS_MB (default 1024), the server must not crash, and
SIGTERM afterwards must exit 0.

Run:  /usr/bin/python3 tests/integration/test_abuse.py -v
"""
import os
import random
import signal
import socket
import struct
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402

import harness  # noqa: E402
import reliability_util as ru  # noqa: E402
from reliability_util import (h2_frame, RawH2, H2_PREFACE, H2_DATA, H2_HEADERS,  # noqa: E402
                              H2_SETTINGS, H2_RST, H2_WINDOW, H2_PING)
from harness import pb, health_pb2  # noqa: E402
import expected as E  # noqa: E402

StatusCode = grpc.StatusCode
BULK_ORG = 'org_bulk'
BULK_PRODUCT = 'aaaaaaaa-0000-4000-8000-00000000bb01'
BULK_VARIANTS = 3000
MAX_RSS = ru.env_float('ABUSE_MAX_RSS_MB', 1024) * 1024 * 1024
# Sanitizer builds run several times slower and use more memory: `make test-asan` raises
# these two (the plain build in `make test` keeps the defaults).
PROGRESS_S = ru.env_float('ABUSE_PROGRESS_TIMEOUT_S', 10)
GRACE = 3
VV = '/catalog.CatalogService/ValidateVariant'
GPD = '/catalog.CatalogService/GetProductDetails'


def setUpModule():
    harness.require_binary()


class GoodClient:
    """A well-behaved client: the four methods in turn, every answer checked exactly."""

    def __init__(self, srv):
        self.srv = srv
        self.lat, self.bad = [], []
        self.calls = 0
        self._stop = threading.Event()
        self._th = threading.Thread(target=self._run, daemon=True)
        self._th.start()

    def _run(self):
        ch = self.srv.new_channel()
        stub = self.srv.catalog_stub(ch)
        checks = [
            (stub.ValidateVariant,
             pb.ValidateVariantRequest(organization_id=E.ORG_A, variant_id=E.V_A11),
             lambda r: r.exists and r.is_active and r.price == 29.99),
            (stub.GetProductDetails,
             pb.GetProductDetailsRequest(organization_id=E.ORG_A, product_id=E.P_A1,
                                         include_variants=True, include_images=True),
             lambda r: (r.success and len(r.product.variants) == 3
                        and r.product.brand.brand_id == E.BRAND_A1)),
            (stub.GetVariantsBatch,
             pb.GetVariantsBatchRequest(organization_id=E.ORG_A,
                                        variant_ids=E.ORG_A_VARIANTS + [E.V_B11]),
             lambda r: ([v.variant_id for v in r.variants] == E.ORG_A_VARIANTS
                        and list(r.not_found_ids) == [E.V_B11])),
            (stub.ValidateVariantsBatch,
             pb.ValidateVariantsBatchRequest(organization_id=E.ORG_A,
                                             variant_ids=E.ORG_A_VARIANTS),
             lambda r: [v.is_active for v in r.validations] == [E.ACTIVE[v] for v in
                                                                E.ORG_A_VARIANTS]),
        ]
        i = 0
        try:
            while not self._stop.is_set():
                method, req, ok = checks[i % 4]
                i += 1
                t0 = time.monotonic()
                try:
                    # A long deadline: what is asserted is the answer, not its timing.
                    r = method(req, timeout=60)
                    if not ok(r):
                        self.bad.append('wrong answer from %s' % type(req).__name__)
                except grpc.RpcError as e:
                    self.bad.append('%s: %s %s' % (type(req).__name__, e.code(), e.details()))
                self.lat.append(time.monotonic() - t0)
                self.calls += 1
                time.sleep(0.005)
        finally:
            ch.close()

    def max_ms(self):
        return 1000 * max(self.lat) if self.lat else float('nan')

    def pct_ms(self, q):
        s = sorted(self.lat)
        return 1000 * s[min(len(s) - 1, int(len(s) * q))] if s else float('nan')

    def stop(self):
        self._stop.set()
        self._th.join(20)


class AbuseTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.pg = harness.PgCluster()
        cls.pg.load_fixtures()
        cls.pg.psql(ru.bulk_catalog_sql(BULK_ORG, BULK_PRODUCT, BULK_VARIANTS))
        cls.srv = harness.Catalogd({'DATABASE_URL': cls.pg.url(),
                                    'SHUTDOWN_GRACE_SECONDS': str(GRACE)})
        cls.srv.wait_serving(30)
        cls.good = GoodClient(cls.srv)
        cls.rss = ru.RssWatcher(cls.srv, interval=0.1)
        cls.watches = []
        cls.t0 = time.monotonic()

    @classmethod
    def tearDownClass(cls):
        cls.good.stop()
        cls.rss.stop()
        for ch, _ in cls.watches:
            ch.close()
        cls.srv.close()
        cls.pg.close()

    def assert_healthy(self, what):
        """After each abuse: alive, the good client all right, RSS under the bound."""
        time.sleep(0.3)
        self.rss.sample()
        self.assertTrue(self.srv.alive(), 'catalogd died during %s\n%s'
                        % (what, self.srv.tail()))
        self.assertEqual(self.good.bad[:5], [], 'the well-behaved client failed during %s'
                         % what)
        n = self.good.calls
        harness.wait_until(lambda: self.good.calls > n, PROGRESS_S,
                           what='the well-behaved client making progress after ' + what)
        self.assertLess(self.rss.peak, MAX_RSS, 'RSS %.0f MB (bound %.0f MB) during %s'
                        % (self.rss.peak / 1e6, MAX_RSS / 1e6, what))
        ru.note('%s: ok; RSS peak so far %.0f MB, good client %d calls, p50 %.2f ms, '
                'p99 %.1f ms, max %.0f ms' % (what, self.rss.peak / 1e6, self.good.calls,
                                              self.good.pct_ms(0.5), self.good.pct_ms(0.99),
                                              self.good.max_ms()))

    # ------------------------------------------------------------------
    def test_1_many_calls_in_flight(self):
        channels = [self.srv.new_channel() for _ in range(4)]
        try:
            for n in (2000, 10000):
                futs = []
                for i in range(n):
                    stub = self.srv.catalog_stub(channels[i % 4])
                    if i % 3 == 0:
                        futs.append(('p', stub.GetProductDetails.future(
                            pb.GetProductDetailsRequest(organization_id=E.ORG_A,
                                                        product_id=E.P_A1), timeout=60)))
                    else:
                        futs.append(('v', stub.ValidateVariant.future(
                            pb.ValidateVariantRequest(organization_id=E.ORG_A,
                                                      variant_id=E.V_A11), timeout=60)))
                bad = []
                for kind, f in futs:
                    try:
                        r = f.result()
                        if not (r.success if kind == 'p' else r.exists):
                            bad.append('wrong')
                    except grpc.RpcError as e:
                        bad.append(e.code().name)
                self.assertEqual(bad[:5], [], '%d of %d calls failed' % (len(bad), n))
            # Health/Watch streams nobody reads.
            for _ in range(300):
                ch = self.srv.new_channel() if len(self.watches) % 50 == 0 else \
                    self.watches[-1][0]
                it = self.srv.health_stub(ch).Watch(health_pb2.HealthCheckRequest(service=''),
                                                    timeout=300)
                self.watches.append((ch, it))
        finally:
            for ch in channels:
                ch.close()
        self.assert_healthy('12,000 calls in flight + 300 unread Health/Watch streams')

    def test_2_raw_pipelined_streams(self):
        msg = pb.ValidateVariantRequest(organization_id=E.ORG_A,
                                        variant_id=E.V_A11).SerializeToString()
        conns = []
        try:
            for _ in range(10):
                h = RawH2(self.srv.port, settings={4: 1 << 20})
                h.send(h2_frame(H2_WINDOW, 0, 0, struct.pack('>I', (1 << 30))))
                h.settings_ack()
                block = b''.join(h2_frame(H2_HEADERS, 0x4, sid,
                                          ru.grpc_headers(self.srv.port, VV))
                                 + h2_frame(H2_DATA, 0x1, sid, ru.grpc_frame(msg))
                                 for sid in range(1, 2001, 2))
                h.next_stream = 2001
                h.send(block)
                conns.append(h)
            answered = refused = 0
            for h in conns:
                streams, goaway = ru.h2_read_responses(h, 1000, timeout=30)
                self.assertIsNone(goaway)
                for sid, st in streams.items():
                    msgs = ru.grpc_messages(st['data'])
                    if st['rst'] is not None:
                        refused += 1
                    elif msgs and pb.ValidateVariantResponse.FromString(msgs[0]).exists:
                        answered += 1
            self.assertEqual((answered, refused), (10000, 0))
        finally:
            for h in conns:
                h.close()
        self.assert_healthy('10 raw connections x 1,000 pipelined streams')

    def test_3_batches_at_the_limit(self):
        ids = ru.bulk_ids(1000)
        ch = self.srv.new_channel()
        try:
            stub = self.srv.catalog_stub(ch)
            futs = []
            for i in range(100):
                futs.append(stub.GetVariantsBatch.future(pb.GetVariantsBatchRequest(
                    organization_id=BULK_ORG, variant_ids=ids), timeout=60))
                futs.append(stub.ValidateVariantsBatch.future(pb.ValidateVariantsBatchRequest(
                    organization_id=BULK_ORG, variant_ids=ids), timeout=60))
            for i, f in enumerate(futs):
                r = f.result()
                n = len(r.variants) if i % 2 == 0 else len(r.validations)
                self.assertEqual(n, 1000)
            err = harness.rpc_error(stub.GetVariantsBatch, pb.GetVariantsBatchRequest(
                organization_id=BULK_ORG, variant_ids=ru.bulk_ids(1001)))
            self.assertEqual(err.code(), StatusCode.INVALID_ARGUMENT)
        finally:
            ch.close()
        self.assert_healthy('200 batch calls of 1000 ids, one of 1001')

    def test_4_oversized_messages(self):
        limit = 4 * 1024 * 1024
        ch = self.srv.new_channel(options=[('grpc.max_send_message_length', -1)])
        try:
            paths = ['/catalog.CatalogService/' + m for m in
                     ('ValidateVariant', 'GetProductDetails', 'GetVariantsBatch',
                      'ValidateVariantsBatch')]
            futs = []
            for k in range(40):
                big = pb.GetVariantsBatchRequest(organization_id='x' * (limit + k * 1000),
                                                 variant_ids=[E.V_A11]).SerializeToString()
                futs.append(ru.raw_unary_future(ch, paths[k % 4], big))
            codes = {}
            for f in futs:
                try:
                    f.result()
                    codes['OK'] = codes.get('OK', 0) + 1
                except grpc.RpcError as e:
                    codes[e.code().name] = codes.get(e.code().name, 0) + 1
            self.assertEqual(codes, {'RESOURCE_EXHAUSTED': 40})
            # Just under the limit: decoded, then refused for what it says.
            under = pb.GetVariantsBatchRequest(organization_id='x' * (limit - 100),
                                               variant_ids=[E.V_A11]).SerializeToString()
            err = harness.rpc_error(harness.raw_unary(ch, paths[2]), under, timeout=30)
            self.assertEqual(err.code(), StatusCode.INVALID_ARGUMENT)
        finally:
            ch.close()
        self.assert_healthy('40 messages over 4 MiB')

    def test_5_random_bytes(self):
        rng = random.Random(5)
        port = self.srv.port
        for i in range(300):
            try:
                with socket.create_connection(('127.0.0.1', port), timeout=2) as s:
                    junk = rng.randbytes(rng.randint(1, 65536))
                    kind = i % 3
                    if kind == 1:
                        junk = H2_PREFACE + junk
                    elif kind == 2:   # frame headers that parse, random payloads
                        junk = H2_PREFACE + h2_frame(H2_SETTINGS, 0, 0, b'') + b''.join(
                            h2_frame(rng.randrange(16), rng.randrange(256),
                                     rng.randrange(1 << 31), rng.randbytes(rng.randint(0, 64)))
                            for _ in range(20))
                    s.sendall(junk)
                    if i % 10 == 0:
                        s.settimeout(0.2)
                        try:
                            s.recv(4096)
                        except OSError:
                            pass
            except OSError:
                pass   # the server may close on us mid-send
        self.assert_healthy('300 connections of random bytes')

    def test_6_truncated_and_malformed_frames(self):
        port = self.srv.port
        msg = pb.ValidateVariantRequest(organization_id=E.ORG_A,
                                        variant_id=E.V_A11).SerializeToString()
        hdr = ru.grpc_headers(port, VV)
        settings = h2_frame(H2_SETTINGS, 0, 0, b'')
        cases = {
            'half a preface': H2_PREFACE[:10],
            'frame header only': H2_PREFACE + settings + b'\x00\x03\xe8\x01\x04',
            'HEADERS longer than sent': H2_PREFACE + settings
            + h2_frame(H2_HEADERS, 0x4, 1, hdr)[:20],
            'HEADERS without END_HEADERS, no CONTINUATION': H2_PREFACE + settings
            + h2_frame(H2_HEADERS, 0x0, 1, hdr),
            'garbage HPACK': H2_PREFACE + settings + h2_frame(H2_HEADERS, 0x5, 1, b'\xff' * 50),
            'gRPC prefix says 1 MB, stream ends after 20 bytes': H2_PREFACE + settings
            + h2_frame(H2_HEADERS, 0x4, 1, hdr)
            + h2_frame(H2_DATA, 0x1, 1, b'\x00' + struct.pack('>I', 1 << 20) + b'x' * 15),
            'gRPC prefix cut in half': H2_PREFACE + settings + h2_frame(H2_HEADERS, 0x4, 1, hdr)
            + h2_frame(H2_DATA, 0x1, 1, b'\x00\x00\x00'),
            'compressed flag, no encoding': H2_PREFACE + settings
            + h2_frame(H2_HEADERS, 0x4, 1, hdr)
            + h2_frame(H2_DATA, 0x1, 1, b'\x01' + ru.grpc_frame(msg)[1:]),
            'DATA on stream 0': H2_PREFACE + settings + h2_frame(H2_DATA, 0x1, 0, b'x' * 10),
            'DATA on an idle stream': H2_PREFACE + settings
            + h2_frame(H2_DATA, 0x1, 7, ru.grpc_frame(msg)),
            'RST right after HEADERS': H2_PREFACE + settings + h2_frame(H2_HEADERS, 0x4, 1, hdr)
            + h2_frame(H2_RST, 0, 1, struct.pack('>I', 8)),
            'request then half a DATA frame': H2_PREFACE + settings
            + h2_frame(H2_HEADERS, 0x4, 1, hdr) + h2_frame(H2_DATA, 0x1, 1,
                                                          ru.grpc_frame(msg))[:12],
            'PING flood': H2_PREFACE + settings + h2_frame(H2_PING, 0, 0, b'12345678') * 2000,
            'oversized frame': H2_PREFACE + settings
            + h2_frame(H2_DATA, 0, 1, b'x' * 70000),
        }
        for name, data in cases.items():
            for _ in range(30):
                try:
                    with socket.create_connection(('127.0.0.1', port), timeout=2) as s:
                        s.sendall(data)
                        s.settimeout(0.05)
                        try:
                            s.recv(65536)
                        except OSError:
                            pass
                except OSError:
                    pass
        self.assert_healthy('%d kinds of truncated or malformed frames x 30' % len(cases))

    def test_7_clients_that_never_read(self):
        port = self.srv.port
        idle, stalled, attackers = [], [], []
        msg = pb.GetProductDetailsRequest(organization_id=BULK_ORG, product_id=BULK_PRODUCT,
                                          include_variants=True,
                                          include_images=True).SerializeToString()
        answer = self.srv.catalog_stub().GetProductDetails(
            pb.GetProductDetailsRequest.FromString(msg), timeout=30).ByteSize()

        def handled():
            return ru.metrics(self.srv).get(
                'catalogd_rpc_requests_total{method="GetProductDetails",code="OK"}', 0)

        try:
            for _ in range(100):
                idle.append(socket.create_connection(('127.0.0.1', port), timeout=2))
            for _ in range(100):
                stalled.append(RawH2(port))
            before = handled()
            # Connections that ask for the big answer 1,000 times each and never read:
            # zero flow-control window, tiny receive buffer.
            n_conns, per_conn = 2, 1000
            for _ in range(n_conns):
                h = RawH2(port, settings={4: 0}, rcvbuf=4096)
                h.settings_ack()
                for _ in range(per_conn):
                    h.call(GPD, msg)
                attackers.append(h)
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline:
                self.rss.sample()
                if self.rss.peak > MAX_RSS * 1.5 or not self.srv.alive():
                    break   # enough: do not take the machine down
                if handled() - before >= n_conns * per_conn:
                    break
                time.sleep(0.2)
            done = handled() - before
            ru.note('never-reading clients: %d idle sockets, %d silent HTTP/2 connections, '
                    '%d connections x %d streams asking for a %.2f MB answer: %d answers '
                    'built, RSS peak %.0f MB' % (len(idle), len(stalled), n_conns, per_conn,
                                                 answer / 1e6, done, self.rss.peak / 1e6))
        finally:
            for s in idle:
                s.close()
            for h in stalled + attackers:
                h.close()
        self.assert_healthy('clients that never read')

    def test_9_sigterm_exits_0(self):
        self.good.stop()
        rss_peak = self.rss.stop()
        ru.note('well-behaved client: %d calls, %d bad, p50 %.2f ms, p99 %.1f ms, max %.0f ms; '
                'RSS peak %.0f MB (/metrics peak %.0f MB); %.0fs of abuse'
                % (self.good.calls, len(self.good.bad), self.good.pct_ms(0.5),
                   self.good.pct_ms(0.99), self.good.max_ms(),
                   rss_peak / 1e6, self.rss.peak_metrics / 1e6, time.monotonic() - self.t0))
        self.assertTrue(self.srv.alive(), self.srv.tail())
        for ch, _ in self.watches:
            ch.close()
        self.watches[:] = []
        t0 = time.monotonic()
        self.srv.send_signal(signal.SIGTERM)
        rc = self.srv.wait_exit(GRACE + 15)
        ru.note('exit %s %.1fs after SIGTERM' % (rc, time.monotonic() - t0))
        self.assertEqual(rc, 0, self.srv.tail())


if __name__ == '__main__':
    unittest.main()
