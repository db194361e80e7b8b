#!/usr/bin/python3
"""Never a torn read: while the writer publishes snapshot after snapshot, each changing a
product and all its variants together (one batch = one generation), clients on many
threads and channels (spread over every worker thread) check that every response is
internally consistent with one generation, and that the snapshot version they see never
goes backwards. Two more readers park on a future position (x-catalog-min-position: the offset
the next event will get) and are released by the publish that applies it: their answer must be
one generation and hold at least the generation they waited for.
"""
import threading
import time
import unittest

import grpc

import harness
import kafka
from harness import pb

ORG = 'org_torn'
PID = '11111111-0000-4000-8000-00000000aaaa'
NVAR = 20
VIDS = ['22222222-0000-4000-8000-%012x' % (0xb000 + i) for i in range(NVAR)]
GENERATIONS = 150


def generation(g):
    """Product and all its variants at version g, every text carrying g."""
    msgs = [kafka.product(ORG, PID, g, title='gen-%d' % g)]
    msgs += [kafka.variant(ORG, v, PID, g, sku='gen-%d-%d' % (g, i)) for i, v in enumerate(VIDS)]
    return msgs


class TornReadTest(unittest.TestCase):
    def test_every_response_is_one_generation(self):
        mock = kafka.KafkaMock(partitions=1)
        mock.produce(generation(1))
        # One batch per generation exactly: closes at 1 + NVAR events, never on time.
        srv = harness.Catalogd({'KAFKA_BOOTSTRAP_SERVERS': mock.bootstrap,
                                'SYNC_MAX_BATCH_EVENTS': str(1 + NVAR),
                                'SYNC_MAX_BATCH_MS': '60000', 'GRPC_MAX_WORKERS': '4',
                                'MAX_WAIT_MS': '10000'})
        try:
            srv.wait_serving(30)
            stop = threading.Event()
            stats = {'checks': 0, 'torn': [], 'backwards': 0, 'released': 0, 'early': []}
            lock = threading.Lock()

            def reader(k):
                ch = srv.new_channel([('grpc.use_local_subchannel_pool', 1)])
                stub = harness.pb_grpc.CatalogServiceStub(ch)
                last, n, deadline = 0, 0, time.monotonic() + 120
                while not stop.is_set() and time.monotonic() < deadline:
                    if k % 2:
                        r, call = stub.GetProductDetails.with_call(pb.GetProductDetailsRequest(
                            organization_id=ORG, product_id=PID, include_variants=True),
                            timeout=5)
                        gens = {r.product.title.split('-')[1]}
                        gens |= {v.sku.split('-')[1] for v in r.product.variants}
                        ok = len(r.product.variants) == NVAR and len(gens) == 1
                    else:
                        r, call = stub.GetVariantsBatch.with_call(pb.GetVariantsBatchRequest(
                            organization_id=ORG, variant_ids=VIDS), timeout=5)
                        gens = {v.sku.split('-')[1] for v in r.variants}
                        ok = len(r.variants) == NVAR and len(gens) == 1
                    version = int(dict(call.trailing_metadata())['x-catalog-snapshot-version'])
                    with lock:
                        stats['checks'] += 1
                        if not ok:
                            stats['torn'].append(sorted(gens))
                        if version < last:
                            stats['backwards'] += 1
                    last = version
                    n += 1
                ch.close()

            def parker(k):
                """Waits for the next event's offset; released by the publish applying it."""
                ch = srv.new_channel([('grpc.use_local_subchannel_pool', 1)])
                stub = harness.pb_grpc.CatalogServiceStub(ch)
                deadline = time.monotonic() + 120
                while not stop.is_set() and time.monotonic() < deadline:
                    hi = int(mock.command('watermarks %s' % kafka.TOPIC).split(':')[1]
                             .split('-')[1])
                    want = hi // (1 + NVAR) + 1  # the generation offset hi belongs to
                    try:
                        r = stub.GetProductDetails(pb.GetProductDetailsRequest(
                            organization_id=ORG, product_id=PID, include_variants=True),
                            timeout=8, metadata=(('x-catalog-min-position', '0:%d' % hi),))
                    except grpc.RpcError:
                        if stop.is_set():
                            break  # nothing more is produced: the last wait cannot end
                        raise
                    gens = {r.product.title.split('-')[1]}
                    gens |= {v.sku.split('-')[1] for v in r.product.variants}
                    with lock:
                        stats['released'] += 1
                        if len(gens) != 1 or len(r.product.variants) != NVAR:
                            stats['torn'].append(sorted(gens))
                        elif int(gens.pop()) < want:
                            stats['early'].append((hi, want, r.product.title))
                ch.close()

            threads = [threading.Thread(target=reader, args=(k,)) for k in range(6)]
            threads += [threading.Thread(target=parker, args=(k,)) for k in range(2)]
            for t in threads:
                t.start()
            for g in range(2, GENERATIONS + 1, 10):
                time.sleep(0.05)  # let the parkers park on the next offset
                mock.produce([m for x in range(g, min(g + 10, GENERATIONS + 1))
                              for m in generation(x)], partition=0)
            harness.wait_until(lambda: srv.catalog_stub().GetProductDetails(
                pb.GetProductDetailsRequest(organization_id=ORG, product_id=PID),
                timeout=5).product.title == 'gen-%d' % GENERATIONS, 60, what='last generation')
            stop.set()
            for t in threads:
                t.join(30)
            print('checks=%d torn=%d backwards=%d released=%d early=%d' % (
                stats['checks'], len(stats['torn']), stats['backwards'], stats['released'],
                len(stats['early'])))
            self.assertGreater(stats['checks'], 100)
            self.assertEqual(stats['torn'], [])
            self.assertEqual(stats['backwards'], 0)
            self.assertGreater(stats['released'], 5, 'parked readers were released by publishes')
            self.assertEqual(stats['early'], [], 'released before the position was applied')
        finally:
            self.assertEqual(srv.stop(), 0, srv.sanitizer_summary())
            mock.stop()


if __name__ == '__main__':
    unittest.main()
