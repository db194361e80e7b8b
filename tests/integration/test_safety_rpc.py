#!/usr/bin/python3
"""Production-safety regressions of the RPC side (issue 11): each test reproduces one
defect against the real binary, the mock broker over TCP and real gRPC clients.

  #7   a version sent as a decimal string above int64 is refused (logged, counted,
       dead-lettered), never clamped to INT64_MAX: the next normal upsert applies
  #9   unknown protobuf fields with NUL bytes are skipped (forward compatibility);
       a NUL in a known string field is still INVALID_ARGUMENT
  #16  a client cancellation is counted as CANCELLED, not logged as a bad request
  #15  one reply larger than budget / workers is sent on an idle server
  #17  a gRPC port conflict: the first error line is the clear one
"""
import json
import socket
import time
import unittest

import grpc

import harness
import kafka
import reliability_util as ru
from harness import pb

ORG = 'org_s'
P1 = '11111111-0000-4000-8000-00000000f0a1'
V1 = '22222222-0000-4000-8000-00000000f0a1'
V2 = '22222222-0000-4000-8000-00000000f0a2'


def eventually(fn, timeout=15, what='condition'):
    """Polls fn until it returns a truthy value (bounded)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError('timed out waiting for %s (last: %r)' % (what, last))


def validate(srv, vid, org=ORG):
    return srv.catalog_stub().ValidateVariant(
        pb.ValidateVariantRequest(organization_id=org, variant_id=vid), timeout=5)


class VersionAboveInt64(unittest.TestCase):
    """#7: "version":"9223372036854775808" used to become INT64_MAX and freeze the entity."""

    def test_out_of_range_version_string_is_rejected_and_the_next_upsert_applies(self):
        dlq = 'catalog.dlq'
        km = kafka.KafkaMock(partitions=1)
        self.addCleanup(km.stop)
        km.command('create %s 1' % dlq)
        bad = []
        for i, v in enumerate(['9223372036854775808', '+09223372036854775808',
                               ' 18446744073709551616', '99999999999999999999999']):
            vid = V1 if i == 0 else '22222222-0000-4000-8000-00000000f1%02d' % i
            k, env = kafka.variant(ORG, vid, P1, 1, sku='FROZEN')
            env['version'] = v
            bad.append((0, k, env))
        k, good = kafka.variant(ORG, V1, P1, 2, sku='APPLIED')
        # The history, replayed from offset 0: the product, the poisoned versions, then
        # a normal upsert of the same variant (same partition: read in this order).
        ru.produce(km, [(0,) + kafka.product(ORG, P1, 1)] + bad + [(0, k, good)])
        srv = harness.Catalogd({'KAFKA_BOOTSTRAP_SERVERS': km.bootstrap,
                                'KAFKA_DLQ_TOPIC': dlq, 'SYNC_MAX_BATCH_MS': '5'})
        self.addCleanup(srv.close)
        srv.wait_serving(30)
        ru.wait_caught_up(srv, km, 30)
        r = eventually(lambda: validate(srv, V1).exists and validate(srv, V1), what='V1')
        self.assertEqual(r.sku, 'APPLIED', 'the upsert after the out-of-range version applies')
        for _, key, _ in bad[1:]:
            vid = key.rsplit('/', 1)[1]
            self.assertFalse(validate(srv, vid).exists, vid)
        # Later upserts keep applying (the entity is not frozen).
        k3, v3 = kafka.variant(ORG, V1, P1, 3, sku='LATER')
        ru.produce(km, [(0, k3, v3)])
        eventually(lambda: validate(srv, V1).sku == 'LATER', what='a later upsert')
        m = ru.metrics(srv)
        self.assertEqual(ru.metric_sum(m, 'catalogd_events_total', result='rejected'), len(bad))
        why = [l.get('why') for l in srv.logs() if l.get('msg') == 'event rejected']
        self.assertEqual(why, ['version out of range'] * len(bad))
        keys = eventually(lambda: (lambda ks: ks if len(ks) >= len(bad) else None)(
            ru.kcat_keys(km.bootstrap, dlq)), 20, 'the rejected events in the dead-letter topic')
        self.assertEqual(sorted(keys), sorted(k for _, k, _ in bad))


if __name__ == '__main__':
    harness.require_binary()
    unittest.main()
