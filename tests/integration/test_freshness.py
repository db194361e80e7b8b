#!/usr/bin/python3
"""The freshness contract (README "Freshness headers", docs/freshness.md), as a client sees it:
read-your-writes by position (x-catalog-min-position) and by version (x-catalog-min-version),
bounded staleness (x-catalog-max-staleness-ms), the x-catalog-staleness-ms trailer, the
catalogd_staleness_seconds metric and /readyz's staleness_seconds. Real binary, KafkaMock over
TCP, Python grpcio clients sending metadata.
"""
import signal
import time
import unittest

import grpc

import harness
import kafka
import reliability_util as ru
from harness import pb

ORG = 'org_fresh'
PID = '11111111-0000-4000-8000-0000000f0001'
V1 = '22222222-0000-4000-8000-0000000f0001'
V2 = '22222222-0000-4000-8000-0000000f0002'
BAD = grpc.StatusCode.INVALID_ARGUMENT
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


def new_id(n):
    return '33333333-0000-4000-8000-%012x' % n


def validate(srv, vid, md=(), timeout=10):
    """(response, trailers) of ValidateVariant with metadata md."""
    return harness.call_with_trailers(
        srv.catalog_stub().ValidateVariant,
        pb.ValidateVariantRequest(organization_id=ORG, variant_id=vid), timeout=timeout,
        metadata=tuple(md))


def validate_future(srv, vid, md, timeout=10):
    return srv.catalog_stub().ValidateVariant.future(
        pb.ValidateVariantRequest(organization_id=ORG, variant_id=vid), timeout=timeout,
        metadata=tuple(md))


def failure(srv, vid, md, timeout=10):
    """(code, details, elapsed s, trailers) of a ValidateVariant expected to fail."""
    t0 = time.monotonic()
    e = harness.rpc_error(srv.catalog_stub().ValidateVariant,
                          pb.ValidateVariantRequest(organization_id=ORG, variant_id=vid),
                          timeout=timeout, metadata=tuple(md))
    return e.code(), e.details(), time.monotonic() - t0, dict(e.trailing_metadata() or ())


def metric(srv, name):
    return ru.metric(srv, name, 0)


class FeedServer(unittest.TestCase):
    """One mock (2 partitions) and one replica for the class."""
    ENV = {}

    @classmethod
    def setUpClass(cls):
        cls.mock = kafka.KafkaMock(partitions=2)
        cls.mock.produce([kafka.product(ORG, PID, 1),
                          kafka.variant(ORG, V1, PID, 1, sku='v1-1'),
                          kafka.variant(ORG, V2, PID, 1, sku='v2-1')], partition=0)
        env = {'KAFKA_BOOTSTRAP_SERVERS': cls.mock.bootstrap, 'GRPC_MAX_WORKERS': '2'}
        env.update(cls.ENV)
        cls.srv = harness.Catalogd(env)
        cls.srv.wait_serving(30)
        ru.eventually(lambda: validate(cls.srv, V1)[1].get('x-catalog-staleness-ms') == '0',
                      15, 'caught up')

    @classmethod
    def tearDownClass(cls):
        try:
            code = cls.srv.stop()
            assert code == 0, (code, cls.srv.tail())
        finally:
            cls.mock.stop()


class PositionTest(FeedServer):
    ENV = {'MAX_WAIT_MS': '3000'}

    def test_a_satisfied_at_once(self):
        hi = ru.next_offset(self.mock)
        t0 = time.monotonic()
        r, tr = validate(self.srv, V1, [('x-catalog-min-position', '0:%d' % (hi - 1))])
        self.assertTrue(r.exists)
        self.assertLess(time.monotonic() - t0, 0.5)
        self.assertIn('x-catalog-snapshot-version', tr)

    def test_b_satisfied_after_a_wait_with_the_new_data(self):
        vid = new_id(1)
        hi = ru.next_offset(self.mock)
        before = metric(self.srv, 'catalogd_parked_calls_total{result="all"}')
        fut = validate_future(self.srv, vid, [('x-catalog-min-position', '0:%d' % hi)])
        ru.wait_parked(self.srv, 1)
        self.assertFalse(fut.done())
        t0 = time.monotonic()
        self.mock.produce([kafka.variant(ORG, vid, PID, 1, sku='new')], partition=0)
        r = fut.result(timeout=5)
        took = time.monotonic() - t0
        print('answered %.0f ms after the produce' % (took * 1e3))
        self.assertTrue(r.exists, 'answered from a snapshot without the event it waited for')
        self.assertLess(took, 1.5, 'answered when MAX_WAIT_MS ran out, not on the publish')
        self.assertEqual(r.sku, 'new')
        self.assertEqual(metric(self.srv, 'catalogd_parked_calls_total{result="all"}'),
                         before + 1)
        ru.wait_parked(self.srv, 0)

    def test_c_malformed_values_are_invalid_argument(self):
        bad0 = metric(self.srv, 'catalogd_bad_requests_total')
        values = ['', '0', '0:', ':5', '0:5,', 'a:1', '0:-1', '-1:3', '0:1;1:2', ' 0:1',
                  '0:99999999999999999999', '2147483648:0']
        for v in values:
            code, details, _, tr = failure(self.srv, V1, [('x-catalog-min-position', v)])
            self.assertEqual(code, BAD, v)
            self.assertIn('x-catalog-min-position', details, v)
            self.assertIn('x-catalog-snapshot-version', tr, 'an error reply has the trailer too')
            self.assertIn('x-catalog-staleness-ms', tr)
        ru.eventually(lambda: metric(self.srv, 'catalogd_bad_requests_total') >=
                      bad0 + len(values), 5, 'rejections counted')

    def test_d_max_wait_names_the_position_reached(self):
        hi = ru.next_offset(self.mock)
        exp0 = metric(self.srv, 'catalogd_parked_calls_total{result="expired"}')
        code, details, took, tr = failure(
            self.srv, V1, [('x-catalog-min-position', '0:%d' % (hi + 50))])
        self.assertEqual(code, UNAVAILABLE)
        self.assertIn('partition 0 is at offset %d' % hi, details)
        self.assertIn('MAX_WAIT_MS', details)
        self.assertGreaterEqual(took, 2.9)
        self.assertLess(took, 4.5)
        code, details, _, _ = failure(self.srv, V1, [('x-catalog-min-position', '7:0')])
        self.assertEqual(code, UNAVAILABLE)
        self.assertIn('partition 7 is not known', details)
        self.assertEqual(metric(self.srv, 'catalogd_parked_calls_total{result="expired"}'),
                         exp0 + 2)

    def test_e_deadline_while_parked(self):
        hi = ru.next_offset(self.mock)
        drop0 = metric(self.srv, 'catalogd_parked_calls_total{result="dropped"}')
        code, _, took, _ = failure(self.srv, V1, [('x-catalog-min-position', '1:%d' % (hi + 9))],
                                   timeout=0.4)
        self.assertEqual(code, grpc.StatusCode.DEADLINE_EXCEEDED)
        self.assertLess(took, 1.2)
        ru.eventually(lambda: metric(self.srv, 'catalogd_parked_calls_total{result="dropped"}')
                      == drop0 + 1, 5, 'dropped call counted')
        ru.wait_parked(self.srv, 0)
        # cancelled by the client
        fut = validate_future(self.srv, V1, [('x-catalog-min-position', '1:%d' % (hi + 9))])
        ru.wait_parked(self.srv, 1)
        fut.cancel()
        ru.wait_parked(self.srv, 0)
        ru.eventually(lambda: metric(self.srv, 'catalogd_parked_calls_total{result="dropped"}')
                      == drop0 + 2, 5, 'cancelled call counted')

    def test_f_rejected_events_still_move_the_position(self):
        """A position whose event was rejected (or stale) is covered: the caller is not kept
        waiting for an event that will never change anything."""
        hi = ru.next_offset(self.mock, 1)
        self.mock.produce([('garbage', '{not json')], partition=1)
        r, _ = validate(self.srv, V1, [('x-catalog-min-position', '1:%d' % hi)], timeout=5)
        self.assertTrue(r.exists)


class VersionTest(FeedServer):
    ENV = {'MAX_WAIT_MS': '3000'}

    def test_a_satisfied_at_once_and_batches(self):
        r, _ = validate(self.srv, V1, [('x-catalog-min-version', '1')])
        self.assertTrue(r.exists)
        r, _ = harness.call_with_trailers(
            self.srv.catalog_stub().GetVariantsBatch,
            pb.GetVariantsBatchRequest(organization_id=ORG, variant_ids=[V1, V2]),
            metadata=(('x-catalog-min-version', '1'),))
        self.assertEqual(len(r.variants), 2)

    def test_b_satisfied_after_a_wait(self):
        fut = validate_future(self.srv, V2, [('x-catalog-min-version', '5')])
        ru.wait_parked(self.srv, 1)
        t0 = time.monotonic()
        self.mock.produce([kafka.variant(ORG, V2, PID, 5, sku='v2-5')], partition=1)
        r = fut.result(timeout=5)
        self.assertEqual(r.sku, 'v2-5')
        self.assertLess(time.monotonic() - t0, 1.5, 'answered on the publish')

    def test_c_a_new_entity_and_a_batch_wait_for_every_id(self):
        vid = new_id(2)
        fut = self.srv.catalog_stub().ValidateVariantsBatch.future(
            pb.ValidateVariantsBatchRequest(organization_id=ORG, variant_ids=[V1, vid]),
            timeout=10, metadata=(('x-catalog-min-version', '1'),))
        ru.wait_parked(self.srv, 1)
        self.mock.produce([kafka.variant(ORG, vid, PID, 1)], partition=0)
        r = fut.result(timeout=5)
        self.assertEqual([v.exists for v in r.validations], [True, True])

    def test_d_deleted_at_or_after_the_version_is_an_answer(self):
        vid = new_id(3)
        self.mock.produce([kafka.variant(ORG, vid, PID, 1), kafka.deleted(ORG, 'variant', vid, 3)],
                          partition=0)
        r, _ = validate(self.srv, vid, [('x-catalog-min-version', '3')], timeout=5)
        self.assertFalse(r.exists)

    def test_e_expiry_names_the_entity_and_its_version(self):
        code, details, took, _ = failure(self.srv, V1, [('x-catalog-min-version', '99')])
        self.assertEqual(code, UNAVAILABLE)
        self.assertIn('variant %s is held at version 1' % V1, details)
        self.assertGreaterEqual(took, 2.9)
        code, details, _, _ = failure(self.srv, new_id(4), [('x-catalog-min-version', '1')])
        self.assertIn('is not held', details)
        e = harness.rpc_error(self.srv.catalog_stub().GetProductDetails,
                              pb.GetProductDetailsRequest(organization_id=ORG, product_id=PID),
                              metadata=(('x-catalog-min-version', '2'),))
        self.assertEqual(e.code(), UNAVAILABLE)
        self.assertIn('product %s is held at version 1' % PID, e.details())

    def test_f_malformed(self):
        for v in ['', '0', '-1', '1.5', 'x', '9223372036854775808', '1 ']:
            code, details, _, _ = failure(self.srv, V1, [('x-catalog-min-version', v)])
            self.assertEqual(code, BAD, v)
            self.assertIn('x-catalog-min-version', details)


class StalenessTest(FeedServer):
    ENV = {}

    def test_a_caught_up_is_zero(self):
        r, tr = validate(self.srv, V1, [('x-catalog-max-staleness-ms', '0')])
        self.assertTrue(r.exists)
        self.assertEqual(tr['x-catalog-staleness-ms'], '0')
        self.assertEqual(metric(self.srv, 'catalogd_staleness_seconds'), 0)
        self.assertEqual(ru.readyz(self.srv)[1]['staleness_seconds'], 0)
        for v in ['', '-1', 'ten', '1e3']:
            code, details, _, _ = failure(self.srv, V1, [('x-catalog-max-staleness-ms', v)])
            self.assertEqual(code, BAD, v)
            self.assertIn('x-catalog-max-staleness-ms', details)

    def test_b_broker_down_staleness_tracks_wall_time_and_refuses(self):
        self.mock.command('down 1')
        t_down = time.monotonic()
        try:
            time.sleep(1.5)
            r, tr = validate(self.srv, V1)
            wall = (time.monotonic() - t_down) * 1e3
            stale = int(tr['x-catalog-staleness-ms'])
            print('staleness %d ms, broker down for %.0f ms' % (stale, wall))
            self.assertLessEqual(stale, wall + 50)
            self.assertGreaterEqual(stale, wall - 300)
            m = metric(self.srv, 'catalogd_staleness_seconds')
            self.assertGreater(m, 1.0)
            self.assertGreater(ru.readyz(self.srv)[1]['staleness_seconds'], 1.0)
            code, details, took, _ = failure(self.srv, V1, [('x-catalog-max-staleness-ms', '500')])
            self.assertEqual(code, UNAVAILABLE)
            self.assertIn('ms behind its change feed', details)
            self.assertLess(took, 0.5, 'refused at once, not after a wait')
            r, _ = validate(self.srv, V1, [('x-catalog-max-staleness-ms', '60000')])
            self.assertTrue(r.exists)
        finally:
            self.mock.command('up 1')
        ru.eventually(lambda: validate(self.srv, V1)[1]['x-catalog-staleness-ms'] == '0', 20,
                      'caught up again after the broker came back')
        r, _ = validate(self.srv, V1, [('x-catalog-max-staleness-ms', '0')])
        self.assertTrue(r.exists)


class ShutdownWhileParkedTest(unittest.TestCase):
    def test_parked_calls_are_answered_at_shutdown(self):
        mock = kafka.KafkaMock(partitions=1)
        try:
            mock.produce([kafka.product(ORG, PID, 1), kafka.variant(ORG, V1, PID, 1)])
            srv = harness.Catalogd({'KAFKA_BOOTSTRAP_SERVERS': mock.bootstrap,
                                    'MAX_WAIT_MS': '20000', 'SHUTDOWN_GRACE_SECONDS': '3'})
            srv.wait_serving(30)
            hi = ru.next_offset(mock)
            futs = [validate_future(srv, V1, [('x-catalog-min-position', '0:%d' % (hi + 5))],
                                    timeout=30) for _ in range(5)]
            futs.append(validate_future(srv, V1, [('x-catalog-min-version', '9')], timeout=30))
            ru.wait_parked(srv, 6)
            t0 = time.monotonic()
            srv.send_signal(signal.SIGTERM)
            codes = []
            for f in futs:
                try:
                    f.result(timeout=10)
                    codes.append('OK')
                except grpc.RpcError as e:
                    codes.append(e.code())
                    self.assertIn('shutting down', e.details())
            self.assertEqual(codes, [UNAVAILABLE] * 6)
            self.assertEqual(srv.wait_exit(10), 0)
            took = time.monotonic() - t0
            print('parked calls answered, exit after %.2f s' % took)
            self.assertLess(took, 3 + 2)
            self.assertEqual(ru.logs_with(srv, 'calls still outstanding at shutdown'), [])
        finally:
            mock.stop()


if __name__ == '__main__':
    unittest.main()
