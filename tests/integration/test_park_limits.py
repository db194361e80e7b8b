#!/usr/bin/python3
"""Bounds on the calls that wait for a fresher snapshot (issue 14 review, docs/freshness.md):

  CapTest            PARK_MAX_CALLS=2: a third waiting call is RESOURCE_EXHAUSTED at once,
                     naming the cap and how to retry; counted and logged; a place is free again
                     once a waiting call is answered; a call met at once is never refused
  CapZeroTest        PARK_MAX_CALLS=0: nothing waits, an unmet call fails at once; a bad value
                     exits 2 naming the variable
  VersionWaiterTest  calls waiting for x-catalog-min-version are not re-run by publishes of
                     other entities (catalogd_parked_call_reparks_total stays put); a publish
                     of the entity one names answers it at once, and only it
  CountOnceTest      a call that is checked again and parks again (a batch whose ids arrive one
                     publish at a time) counts once in catalogd_parked_calls_total
  HeaderNameTest     a misspelt or unknown x-catalog-* request header is INVALID_ARGUMENT naming
                     it (was: silently ignored, so no waiting); the names catalogd uses stay
                     accepted, the reply trailers' names too (a proxy may forward them)

Real binary, KafkaMock over TCP, Python grpcio clients sending metadata.
"""
import subprocess
import time
import unittest

import grpc

import harness
import kafka
import reliability_util as ru
from harness import pb

ORG = 'org_park'
PID = '11111111-0000-4000-8000-0000000a0001'
V1 = '22222222-0000-4000-8000-0000000a0001'
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED


def new_id(n):
    return '33333333-0000-4000-8000-0000000b%04x' % n


def metric(srv, name):
    return ru.metric(srv, name, 0)


def validate_future(srv, vid, md, timeout=10):
    return srv.catalog_stub().ValidateVariant.future(
        pb.ValidateVariantRequest(organization_id=ORG, variant_id=vid), timeout=timeout,
        metadata=tuple(md))


def failure(srv, vid, md, timeout=10):
    """(code, details, elapsed s) of a ValidateVariant expected to fail."""
    t0 = time.monotonic()
    e = harness.rpc_error(srv.catalog_stub().ValidateVariant,
                          pb.ValidateVariantRequest(organization_id=ORG, variant_id=vid),
                          timeout=timeout, metadata=tuple(md))
    return e.code(), e.details(), time.monotonic() - t0


class FeedServer(unittest.TestCase):
    """One mock (1 partition) and one replica for the class."""
    ENV = {}

    @classmethod
    def setUpClass(cls):
        cls.mock = kafka.KafkaMock(partitions=1)
        cls.mock.produce([kafka.product(ORG, PID, 1), kafka.variant(ORG, V1, PID, 1, sku='v1')])
        env = {'KAFKA_BOOTSTRAP_SERVERS': cls.mock.bootstrap, 'GRPC_MAX_WORKERS': '2',
               'MAX_WAIT_MS': '10000'}
        env.update(cls.ENV)
        cls.srv = harness.Catalogd(env)
        cls.srv.wait_serving(30)
        ru.eventually(lambda: metric(cls.srv, 'catalogd_snapshots_published_total') >= 1, 15,
                      'first snapshot')
        ru.eventually(lambda: ru.next_offset(cls.mock) == 2
                      and cls.srv.catalog_stub().ValidateVariant(
                          pb.ValidateVariantRequest(organization_id=ORG, variant_id=V1),
                          timeout=5, metadata=(('x-catalog-min-position', '0:1'),)).exists,
                      15, 'caught up')

    @classmethod
    def tearDownClass(cls):
        try:
            code = cls.srv.stop()
            assert code == 0, (code, cls.srv.tail())
        finally:
            cls.mock.stop()


class CapTest(FeedServer):
    ENV = {'PARK_MAX_CALLS': '2'}

    def test_a_beyond_the_cap_is_refused_at_once_then_a_place_frees(self):
        hi = ru.next_offset(self.mock)
        md = [('x-catalog-min-position', '0:%d' % hi)]  # the next event: not produced yet
        rej0 = metric(self.srv, 'catalogd_parked_calls_rejected_total')
        futs = [validate_future(self.srv, V1, md) for _ in range(2)]
        ru.wait_parked(self.srv, 2)
        code, details, took = failure(self.srv, V1, md)
        self.assertEqual(code, EXHAUSTED, details)
        self.assertIn('PARK_MAX_CALLS=2', details)
        self.assertIn('retry after a backoff', details)
        self.assertIn('x-catalog-min-position not reached', details)
        self.assertLess(took, 1.0, 'refused at once, not after MAX_WAIT_MS')
        vid = new_id(1)
        code, details, _ = failure(self.srv, vid, [('x-catalog-min-version', '1')])
        self.assertEqual(code, EXHAUSTED, details)
        self.assertIn('x-catalog-min-version 1 not reached', details)
        self.assertEqual(metric(self.srv, 'catalogd_parked_calls_rejected_total'), rej0 + 2)
        self.assertGreaterEqual(len(ru.logs_with(self.srv, 'parked-call limit reached; call '
                                                 'refused', PARK_MAX_CALLS=2)), 1)
        # a requirement met at once needs no place
        r = self.srv.catalog_stub().ValidateVariant(
            pb.ValidateVariantRequest(organization_id=ORG, variant_id=V1), timeout=5,
            metadata=(('x-catalog-min-position', '0:%d' % (hi - 1)),))
        self.assertTrue(r.exists)
        self.assertEqual(metric(self.srv, 'catalogd_parked_calls'), 2)
        # the two waiting ones are answered on the publish, and free their places
        self.mock.produce([kafka.variant(ORG, vid, PID, 1, sku='new')])
        for f in futs:
            self.assertTrue(f.result(timeout=5).exists)
        ru.wait_parked(self.srv, 0)
        ru.eventually(lambda: all(f.done() for f in futs), 5, 'answered')
        hi = ru.next_offset(self.mock)
        futs = [validate_future(self.srv, V1, [('x-catalog-min-position', '0:%d' % hi)])
                for _ in range(2)]
        ru.wait_parked(self.srv, 2)  # both places are free again (not leaked by the answered calls)
        for f in futs:
            f.cancel()
        ru.wait_parked(self.srv, 0)
        self.assertEqual(metric(self.srv, 'catalogd_parked_calls_rejected_total'), rej0 + 2)


class CapZeroTest(FeedServer):
    ENV = {'PARK_MAX_CALLS': '0'}

    def test_a_nothing_waits(self):
        hi = ru.next_offset(self.mock)
        code, details, took = failure(self.srv, V1, [('x-catalog-min-position', '0:%d' % hi)])
        self.assertEqual(code, EXHAUSTED, details)
        self.assertIn('PARK_MAX_CALLS=0', details)
        self.assertLess(took, 1.0)
        self.assertEqual(metric(self.srv, 'catalogd_parked_calls_total{result="all"}'), 0)
        self.assertEqual(metric(self.srv, 'catalogd_parked_calls_rejected_total'), 1)
        r = self.srv.catalog_stub().ValidateVariant(
            pb.ValidateVariantRequest(organization_id=ORG, variant_id=V1), timeout=5,
            metadata=(('x-catalog-min-version', '1'),))
        self.assertTrue(r.exists, 'a requirement met at once is answered')

    def test_b_a_bad_value_exits_2(self):
        for bad in ('-1', 'many', '1000001'):
            env = ru.clean_server_env({'SYNC_MODE': 'demo', 'PARK_MAX_CALLS': bad})
            r = subprocess.run([harness.CATALOGD_BIN], env=env, capture_output=True, text=True,
                               timeout=30, stdin=subprocess.DEVNULL)
            self.assertEqual(r.returncode, 2, (bad, r.stderr[-500:]))
            self.assertIn('PARK_MAX_CALLS', r.stdout + r.stderr, bad)


class VersionWaiterTest(FeedServer):
    N = 200          # version waiters parked at once
    PUBLISHES = 15   # unrelated publishes while they wait

    def test_a_unrelated_publishes_do_not_rerun_version_waiters(self):
        ids = [new_id(0x100 + i) for i in range(self.N)]
        futs = [validate_future(self.srv, vid, [('x-catalog-min-version', '1')], timeout=60)
                for vid in ids]
        ru.wait_parked(self.srv, self.N, timeout=30)
        rep0 = metric(self.srv, 'catalogd_parked_call_reparks_total')
        pub0 = metric(self.srv, 'catalogd_snapshots_published_total')
        for v in range(self.PUBLISHES):  # V1 only: no waiter names it
            self.mock.produce([kafka.variant(ORG, V1, PID, 100 + v, sku='v1-%d' % v)])
            n = pub0 + v + 1
            ru.eventually(lambda: metric(self.srv, 'catalogd_snapshots_published_total') >= n,
                          10, 'publish %d' % v)
        reparks = metric(self.srv, 'catalogd_parked_call_reparks_total') - rep0
        print('%d version waiters, %d unrelated publishes: %d re-runs' %
              (self.N, self.PUBLISHES, reparks))
        self.assertEqual(reparks, 0, 'version waiters were re-run by publishes of other entities')
        self.assertEqual(metric(self.srv, 'catalogd_parked_calls'), self.N)
        self.assertFalse(any(f.done() for f in futs))
        # the entity one of them names: that one is answered at once, the others wait on
        t0 = time.monotonic()
        self.mock.produce([kafka.variant(ORG, ids[7], PID, 1, sku='seven')])
        r = futs[7].result(timeout=5)
        took = time.monotonic() - t0
        self.assertTrue(r.exists)
        self.assertLess(took, 1.5, 'answered on the publish, not at MAX_WAIT_MS')
        ru.wait_parked(self.srv, self.N - 1)
        self.assertEqual(metric(self.srv, 'catalogd_parked_call_reparks_total'), rep0)
        # the rest in one publish: all answered, none re-run for nothing
        self.mock.produce([kafka.variant(ORG, vid, PID, 2) for i, vid in enumerate(ids)
                           if i != 7])
        for f in futs:
            self.assertTrue(f.result(timeout=10).exists)
        ru.wait_parked(self.srv, 0)
        self.assertEqual(metric(self.srv, 'catalogd_parked_call_reparks_total'), rep0)


class CountOnceTest(FeedServer):
    def test_a_a_call_that_reparks_counts_once(self):
        a, b, c = new_id(0x900), new_id(0x901), new_id(0x902)
        all0 = metric(self.srv, 'catalogd_parked_calls_total{result="all"}')
        rep0 = metric(self.srv, 'catalogd_parked_call_reparks_total')
        fut = self.srv.catalog_stub().ValidateVariantsBatch.future(
            pb.ValidateVariantsBatchRequest(organization_id=ORG, variant_ids=[a, b, c]),
            timeout=30, metadata=(('x-catalog-min-version', '1'),))
        ru.wait_parked(self.srv, 1)
        for i, vid in enumerate((a, b)):  # one id a publish: checked again, waits on
            self.mock.produce([kafka.variant(ORG, vid, PID, 1)])
            ru.eventually(lambda: metric(self.srv, 'catalogd_parked_call_reparks_total') ==
                          rep0 + i + 1, 10, 're-park %d' % (i + 1))
            self.assertFalse(fut.done())
        self.mock.produce([kafka.variant(ORG, c, PID, 1)])
        r = fut.result(timeout=5)
        self.assertEqual([v.exists for v in r.validations], [True, True, True])
        self.assertEqual(metric(self.srv, 'catalogd_parked_calls_total{result="all"}'), all0 + 1,
                         'one call that waited, counted once however often it parked')


class HeaderNameTest(FeedServer):
    def test_a_unknown_names_are_refused_naming_them(self):
        bad0 = metric(self.srv, 'catalogd_bad_requests_total')
        names = ['x-catalog-min-postion', 'x-catalog-min-versions', 'x-catalog-max-staleness',
                 'x-catalog-', 'x-catalog-foo-bin', 'x-catalog-min-positions']
        for name in names:
            value = b'\x01' if name.endswith('-bin') else '0:1'
            code, details, _ = failure(self.srv, V1, [(name, value)])
            self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT, name)
            self.assertIn('unknown request header %s' % name, details)
            self.assertIn('x-catalog-min-position', details, 'the known names are listed')
        e = harness.rpc_error(
            self.srv.catalog_stub().GetVariantsBatch,
            pb.GetVariantsBatchRequest(organization_id=ORG, variant_ids=[V1]),
            metadata=(('x-catalog-min-postion', '0:1'),))
        self.assertEqual(e.code(), grpc.StatusCode.INVALID_ARGUMENT)
        ru.eventually(lambda: metric(self.srv, 'catalogd_bad_requests_total') >=
                      bad0 + len(names) + 1, 5, 'rejections counted')

    def test_b_known_names_are_accepted(self):
        md = [('x-catalog-min-position', '0:0'), ('x-catalog-min-version', '1'),
              ('x-catalog-max-staleness-ms', '60000'),
              ('x-catalog-snapshot-version', '3'), ('x-catalog-staleness-ms', '0'),
              ('x-request-id', 'abc'), ('x-catalogue-whatever', '1')]
        r = self.srv.catalog_stub().ValidateVariant(
            pb.ValidateVariantRequest(organization_id=ORG, variant_id=V1), timeout=5,
            metadata=tuple(md))
        self.assertTrue(r.exists)
        # not a catalog method: freshness headers do not apply, nothing is refused
        self.assertEqual(self.srv.health_stub().Check(
            harness.health_pb2.HealthCheckRequest(service=''), timeout=5,
            metadata=(('x-catalog-min-postion', '0:1'),)).status, harness.SERVING)


if __name__ == '__main__':
    unittest.main()
