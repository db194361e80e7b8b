#!/usr/bin/python3
"""Lifecycle tests of catalogd: start before PostgreSQL, SIGTERM drain, calls in flight.

Run:  CATALOGD_BIN=build/catalogd /usr/bin/python3 tests/integration/test_lifecycle.py -v
"""

import json
import os
import re
import signal
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402

import harness  # noqa: E402
from harness import pb, health_pb2, RPC_TIMEOUT, SERVING, NOT_SERVING  # noqa: E402
import expected as E  # noqa: E402

StatusCode = grpc.StatusCode
GRACE = 2  # SHUTDOWN_GRACE_SECONDS used by these tests

_RETRY_RE = re.compile(r'retr(y|ying|ies)|backoff|reconnect', re.I)


def retry_log_lines(srv):
    """Log records announcing a retry (of reaching/loading PostgreSQL)."""
    return [rec for rec in srv.logs() if _RETRY_RE.search(json.dumps(rec, ensure_ascii=False))]


def setUpModule():
    harness.require_binary()


def catalog_calls(stub):
    """One small valid request per catalog method."""
    return [
        ('ValidateVariant', stub.ValidateVariant,
         pb.ValidateVariantRequest(organization_id=E.ORG_A, variant_id=E.V_A11)),
        ('GetProductDetails', stub.GetProductDetails,
         pb.GetProductDetailsRequest(organization_id=E.ORG_A, product_id=E.P_A1)),
        ('GetVariantsBatch', stub.GetVariantsBatch,
         pb.GetVariantsBatchRequest(organization_id=E.ORG_A, variant_ids=[E.V_A11])),
        ('ValidateVariantsBatch', stub.ValidateVariantsBatch,
         pb.ValidateVariantsBatchRequest(organization_id=E.ORG_A, variant_ids=[E.V_A11])),
    ]


# ---------------------------------------------------------------------------
class HeapHugePagesTest(unittest.TestCase):
    """catalogd re-executes itself once with glibc.malloc.hugetlb=1 (huge pages for the
    snapshot's heap), keeps the operator's other tunables, and leaves an explicit choice alone."""

    def started(self, env):
        """The server's initial environment as raw bytes. (glibc splits GLIBC_TUNABLES in
        place while parsing it, so its ':' separators read back as NULs.)"""
        srv = harness.Catalogd(dict(env, SYNC_MODE='demo'))
        self.addCleanup(srv.stop)
        srv.wait_serving()
        with open('/proc/%d/environ' % srv.pid, 'rb') as f:
            return srv, f.read().split(b'\0')

    def test_adds_the_tunable_and_serves_under_the_same_pid(self):
        srv, environ = self.started({})
        self.assertIn(b'GLIBC_TUNABLES=glibc.malloc.hugetlb=1', environ)
        self.assertEqual(srv.health_check(), SERVING)

    def test_keeps_other_tunables(self):
        _, environ = self.started({'GLIBC_TUNABLES': 'glibc.malloc.arena_max=4'})
        at = environ.index(b'GLIBC_TUNABLES=glibc.malloc.arena_max=4')
        self.assertEqual(environ[at + 1], b'glibc.malloc.hugetlb=1')

    def test_an_explicit_choice_is_left_alone(self):
        _, environ = self.started({'GLIBC_TUNABLES': 'glibc.malloc.hugetlb=0'})
        self.assertIn(b'GLIBC_TUNABLES=glibc.malloc.hugetlb=0', environ)
        self.assertNotIn(b'glibc.malloc.hugetlb=1', b'\0'.join(environ))


# ---------------------------------------------------------------------------
class StartBeforePostgresTest(unittest.TestCase):
    """(a) catalogd starts while PostgreSQL is down, retries, and serves once it is up."""

    def test_waits_for_postgres_then_serves(self):
        pg = harness.PgCluster(start=False)   # its port: nobody listens there yet
        self.addCleanup(pg.close)
        pg.init()                              # initdb does not listen; start() comes later
        self.assertFalse(harness.port_is_listening(pg.port))

        srv = harness.Catalogd({'DATABASE_URL': pg.url(), 'PG_RETRY_MAX_SECONDS': '1'})
        self.addCleanup(srv.close)
        srv.wait_listening(10)
        srv.wait_health(NOT_SERVING, timeout=10)
        self.assertEqual(srv.health_check('catalog.CatalogService'), NOT_SERVING)

        # Catalog RPCs before the first snapshot: UNAVAILABLE.
        for name, method, req in catalog_calls(srv.catalog_stub()):
            with self.subTest(method=name):
                err = harness.rpc_error(method, req)
                self.assertEqual(err.code(), StatusCode.UNAVAILABLE, 'details: %r' % err.details())

        # It keeps trying: at least three retry records in the logs, and PostgreSQL stays
        # down for 2.5 s so that the backoff reaches its cap (PG_RETRY_MAX_SECONDS=1).
        down_since = time.monotonic()
        try:
            harness.wait_until(lambda: len(retry_log_lines(srv)) >= 3, 10,
                               what='three retry records in the logs')
        except TimeoutError:
            self.fail('no retry attempts in the logs\n' + srv.tail())
        time.sleep(max(0.0, 2.5 - (time.monotonic() - down_since)))
        self.assertTrue(srv.alive(), srv.tail())
        self.assertEqual(srv.health_check(''), NOT_SERVING)
        err = harness.rpc_error(srv.catalog_stub().ValidateVariant,
                                pb.ValidateVariantRequest(organization_id=E.ORG_A,
                                                          variant_id=E.V_A11))
        self.assertEqual(err.code(), StatusCode.UNAVAILABLE)
        n_retries = len(retry_log_lines(srv))

        # Now PostgreSQL comes up on that port, with the data (schema+seed in one transaction).
        pg.start()
        pg.load_fixtures()
        t0 = time.monotonic()
        srv.wait_serving(30)
        sys.stderr.write('[%d retries logged while PostgreSQL was down; serving %.1fs after '
                         'it was loaded] ' % (n_retries, time.monotonic() - t0))

        resp = srv.catalog_stub().ValidateVariant(
            pb.ValidateVariantRequest(organization_id=E.ORG_A, variant_id=E.V_A11),
            timeout=RPC_TIMEOUT)
        self.assertTrue(resp.exists)
        self.assertTrue(resp.is_active)
        self.assertEqual(resp.price, 29.99)
        self.assertEqual(srv.stop(timeout=GRACE + 10), 0)


# ---------------------------------------------------------------------------
class ShutdownTest(unittest.TestCase):
    """(b), (c): SIGTERM drains and exits 0."""

    pg = None

    @classmethod
    def setUpClass(cls):
        cls.pg = harness.PgCluster()
        cls.pg.load_fixtures()

    @classmethod
    def tearDownClass(cls):
        if cls.pg is not None:
            cls.pg.close()

    def start_server(self):
        srv = harness.Catalogd({'DATABASE_URL': self.pg.url(),
                                'SHUTDOWN_GRACE_SECONDS': str(GRACE)})
        self.addCleanup(srv.close)
        srv.wait_serving(30)
        return srv

    def test_sigterm_ends_health_watch_and_exits_0(self):
        srv = self.start_server()
        channel = srv.new_channel()
        self.addCleanup(channel.close)
        stream = srv.health_stub(channel).Watch(health_pb2.HealthCheckRequest(service=''),
                                                timeout=GRACE + 20)
        statuses, end = [], []

        def watch():
            try:
                for msg in stream:
                    statuses.append(msg.status)
                end.append(StatusCode.OK)
            except grpc.RpcError as e:
                end.append(e.code())
            end.append(time.monotonic())

        th = threading.Thread(target=watch, daemon=True)
        th.start()
        harness.wait_until(lambda: statuses, 5, what='first Watch message')
        self.assertEqual(statuses[0], SERVING)

        t0 = time.monotonic()
        srv.send_signal(signal.SIGTERM)
        try:
            rc = srv.wait_exit(GRACE + 5)
        except TimeoutError:
            self.fail('catalogd did not exit within SHUTDOWN_GRACE_SECONDS + 5 s\n' + srv.tail())
        elapsed = time.monotonic() - t0
        th.join(10)
        self.assertFalse(th.is_alive(), 'Watch stream still open after the server exited')
        self.assertEqual(rc, 0, srv.tail())
        self.assertTrue(NOT_SERVING in statuses[1:] or end[:1] == [StatusCode.OK],
                        'Watch saw %r then ended with %r (want NOT_SERVING, or an OK end)'
                        % ([health_pb2.HealthCheckResponse.ServingStatus.Name(s)
                            for s in statuses], end))
        sys.stderr.write('[Watch saw %s, ended with %s %.2fs after SIGTERM; exit after %.2fs] '
                         % ('>'.join(health_pb2.HealthCheckResponse.ServingStatus.Name(s)
                                     for s in statuses),
                            end[0].name, end[1] - t0, elapsed))

    def test_sigterm_with_an_idle_connection_warns_of_nothing(self):
        """A client holding an idle connection keeps the gRPC core's shutdown waiting until the
        grace ends; no call is running, so the 'cancelling remaining calls' warning (which tells
        the operator to raise the grace) must not be logged."""
        srv = self.start_server()
        channel = srv.new_channel()
        self.addCleanup(channel.close)
        srv.health_stub(channel).Check(health_pb2.HealthCheckRequest(service=''), timeout=5)
        srv.send_signal(signal.SIGTERM)
        try:
            rc = srv.wait_exit(GRACE + 10)
        except TimeoutError:
            self.fail('catalogd did not exit within SHUTDOWN_GRACE_SECONDS + 10 s\n' + srv.tail())
        self.assertEqual(rc, 0, srv.tail())
        warned = [l for l in srv.logs() if l.get('level') == 'error'
                  or l.get('msg') == 'grace period over; cancelling remaining calls']
        self.assertEqual(warned, [], 'a warning at a shutdown with no call running')

    def test_sigterm_with_calls_in_flight(self):
        srv = self.start_server()
        stop = threading.Event()
        records = []          # (t_start, t_end, code, details, response_ok)
        lock = threading.Lock()

        def client(n):
            channel = srv.new_channel()
            stub = srv.catalog_stub(channel)
            calls = catalog_calls(stub)
            i = n
            try:
                while not stop.is_set():
                    name, method, req = calls[i % len(calls)]
                    i += 1
                    t_start = time.monotonic()
                    try:
                        resp = method(req, timeout=RPC_TIMEOUT)
                        ok = _response_ok(name, resp)
                        code, details = StatusCode.OK, None
                    except grpc.RpcError as e:
                        ok, code, details = None, e.code(), e.details()
                    with lock:
                        records.append((t_start, time.monotonic(), code, details, ok, name))
                    if code != StatusCode.OK:
                        time.sleep(0.02)   # the server is going away: do not spin
            finally:
                channel.close()

        threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(4)]
        for th in threads:
            th.start()
        try:
            harness.wait_until(lambda: len(records) >= 200, 10, interval=0.05,
                               what='200 calls before the signal')
            t_sig = time.monotonic()
            srv.send_signal(signal.SIGTERM)
            try:
                rc = srv.wait_exit(GRACE + 5)
            except TimeoutError:
                self.fail('catalogd did not exit within SHUTDOWN_GRACE_SECONDS + 5 s\n'
                          + srv.tail())
            time.sleep(0.3)   # a few calls against the stopped server too
        finally:
            stop.set()
            for th in threads:
                th.join(RPC_TIMEOUT + 5)

        self.assertEqual(rc, 0, srv.tail())
        before = [r for r in records if r[1] < t_sig]
        after = [r for r in records if r[1] >= t_sig]
        self.assertGreater(len(before), 0)
        bad_before = [r for r in before if r[2] != StatusCode.OK]
        self.assertEqual(bad_before, [], 'calls failed before the signal')
        allowed = (StatusCode.OK, StatusCode.UNAVAILABLE, StatusCode.CANCELLED)
        bad_after = [r for r in after if r[2] not in allowed]
        self.assertEqual(bad_after[:5], [], 'calls failed with an unexpected code after SIGTERM')
        wrong = [r for r in records if r[2] == StatusCode.OK and not r[4]]
        self.assertEqual(wrong[:5], [], 'OK calls with a wrong answer')
        sys.stderr.write('[%d calls before, %d after SIGTERM: %d ok, %d unavailable, '
                         '%d cancelled] ' % (
                             len(before), len(after),
                             sum(r[2] == StatusCode.OK for r in after),
                             sum(r[2] == StatusCode.UNAVAILABLE for r in after),
                             sum(r[2] == StatusCode.CANCELLED for r in after)))


def _response_ok(name, resp):
    if name == 'ValidateVariant':
        return resp.exists and resp.is_active and resp.price == 29.99
    if name == 'GetProductDetails':
        return resp.success and resp.product.product_id == E.P_A1
    if name == 'GetVariantsBatch':
        return resp.success and [v.variant_id for v in resp.variants] == [E.V_A11]
    if name == 'ValidateVariantsBatch':
        return resp.success and len(resp.validations) == 1 and resp.validations[0].is_active
    return False


if __name__ == '__main__':
    unittest.main()
