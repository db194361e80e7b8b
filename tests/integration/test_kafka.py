#!/usr/bin/python3
"""The change feed, end to end: a mock Kafka cluster in its own process (reached over
TCP), a test producer, catalogd, PostgreSQL, and a gRPC client that shares no code with
the server.  Covers issue 3's list: upsert visible, delete, tombstone, stale and
duplicate versions, variant before its product, product status flipping is_active,
events during warm load not lost, replay digest == warm load + tail digest, poison
messages skipped and counted, broker down then up.
"""
import json
import subprocess
import time
import unittest
import urllib.request

import harness
import reliability_util as ru
import kafka
from harness import pb

ORG = 'org_k'
P1 = '11111111-0000-4000-8000-0000000000a1'
V1 = '22222222-0000-4000-8000-0000000000a1'
V2 = '22222222-0000-4000-8000-0000000000a2'


def admin_get(srv, path):
    with urllib.request.urlopen('http://127.0.0.1:%d%s' % (srv.admin_port, path),
                                timeout=10) as r:
        return r.read().decode()


def metric(srv, name):
    for line in admin_get(srv, '/metrics').splitlines():
        if line.startswith(name + ' '):
            return float(line.split()[-1])
    raise AssertionError('metric %s not found' % name)


def validate(srv, vid, org=ORG):
    return srv.catalog_stub().ValidateVariant(
        pb.ValidateVariantRequest(organization_id=org, variant_id=vid), timeout=5)


eventually = ru.eventually


class ReplayAndTail(unittest.TestCase):
    """One broker and one catalogd in replay mode for the whole class."""

    @classmethod
    def setUpClass(cls):
        cls.kafka = kafka.KafkaMock(partitions=3)
        # History present before catalogd starts: replayed from the beginning.
        cls.kafka.produce([kafka.product(ORG, P1, 1), kafka.variant(ORG, V1, P1, 1)])
        cls.srv = harness.Catalogd({'KAFKA_BOOTSTRAP_SERVERS': cls.kafka.bootstrap,
                                    'SYNC_MAX_BATCH_MS': '5'})
        cls.srv.wait_serving(30)

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        cls.kafka.stop()

    def test_a_replayed_history_is_served(self):
        r = validate(self.srv, V1)
        self.assertTrue(r.exists and r.is_active)
        self.assertAlmostEqual(r.price, 29.99)

    def test_upsert_becomes_visible(self):
        vid = '22222222-0000-4000-8000-0000000000b1'
        self.kafka.produce([kafka.variant(ORG, vid, P1, 1, sku='NEW-1')])
        r = eventually(lambda: validate(self.srv, vid).exists and validate(self.srv, vid),
                       what='new variant')
        self.assertEqual(r.sku, 'NEW-1')
        self.assertTrue(r.is_active)

    def test_delete_event_and_tombstone(self):
        a = '22222222-0000-4000-8000-0000000000c1'
        b = '22222222-0000-4000-8000-0000000000c2'
        self.kafka.produce([kafka.variant(ORG, a, P1, 1), kafka.variant(ORG, b, P1, 1)])
        eventually(lambda: validate(self.srv, a).exists and validate(self.srv, b).exists)
        self.kafka.produce([kafka.deleted(ORG, 'variant', a, 2),
                            kafka.tombstone(ORG, 'variant', b)])
        eventually(lambda: not validate(self.srv, a).exists and not validate(self.srv, b).exists,
                   what='both deleted')
        # A late, older upsert cannot resurrect a deleted variant. Zombie and marker on
        # one partition: the marker visible means the zombie was read (with the zombie
        # on its key's partition, the check could pass before it was read at all).
        self.kafka.produce([kafka.variant(ORG, a, P1, 1, sku='ZOMBIE')], partition=0)
        marker = '22222222-0000-4000-8000-0000000000c3'
        self.kafka.produce([kafka.variant(ORG, marker, P1, 1)], partition=0)
        eventually(lambda: validate(self.srv, marker).exists)
        self.assertFalse(validate(self.srv, a).exists)

    def test_stale_and_duplicate_versions_change_nothing(self):
        vid = '22222222-0000-4000-8000-0000000000d1'
        stale0 = metric(self.srv, 'catalogd_events_total{type="variant",result="stale"}')
        # All on one partition so the order of arrival is the order produced.
        self.kafka.produce([kafka.variant(ORG, vid, P1, 3, sku='V3'),
                            kafka.variant(ORG, vid, P1, 2, sku='V2-STALE'),
                            kafka.variant(ORG, vid, P1, 3, sku='V3-DUP')], partition=1)
        eventually(lambda: metric(self.srv, 'catalogd_events_total{type="variant",'
                                  'result="stale"}') >= stale0 + 2, what='stale counted')
        # Events are counted as they are applied to the open batch; the batch is
        # published up to SYNC_MAX_BATCH_MS later (asserting at once was a race).
        eventually(lambda: validate(self.srv, vid).exists, what='batch published')
        self.assertEqual(validate(self.srv, vid).sku, 'V3')

    def test_variant_before_its_product_then_status_flips(self):
        pid = '11111111-0000-4000-8000-0000000000e1'
        vid = '22222222-0000-4000-8000-0000000000e1'
        self.kafka.produce([kafka.variant(ORG, vid, pid, 1)])
        r = eventually(lambda: validate(self.srv, vid).exists and validate(self.srv, vid))
        self.assertFalse(r.is_active, 'a variant whose product is missing is not active')
        self.kafka.produce([kafka.product(ORG, pid, 1)])
        eventually(lambda: validate(self.srv, vid).is_active, what='product arrives')
        self.kafka.produce([kafka.product(ORG, pid, 2, status='inactiva')])
        eventually(lambda: not validate(self.srv, vid).is_active, what='product inactivated')
        self.kafka.produce([kafka.product(ORG, pid, 3, status='activa')])
        eventually(lambda: validate(self.srv, vid).is_active, what='product reactivated')

    def test_poison_messages_are_skipped_and_counted(self):
        rejected0 = sum(metric(self.srv, 'catalogd_events_total{type="%s",result="rejected"}' % t)
                        for t in ('variant', 'unknown', 'product'))
        vid = '22222222-0000-4000-8000-0000000000f1'
        good = kafka.variant(ORG, vid, P1, 1)
        poison = [
            (kafka.key(ORG, 'variant', vid), '{not json'),
            (kafka.key(ORG, 'variant', vid), json.dumps(dict(good[1], event_type='variant.exploded'))),
            (kafka.key('org_other', 'variant', vid), json.dumps(good[1])),       # key/org mismatch
            (kafka.key(ORG, 'variant', vid), json.dumps(dict(good[1], data={'id': vid}))),
            ('garbage-key', json.dumps(good[1])),
        ]
        for p in range(3):  # a poison message in every partition, then a good one after
            self.kafka.produce(poison, partition=p)
        self.kafka.produce([good], partition=2)
        eventually(lambda: validate(self.srv, vid).exists, what='good event after poison')
        def rejected():  # partitions 0 and 1 may be read after partition 2's good event
            return sum(metric(self.srv, 'catalogd_events_total{type="%s",result="rejected"}' % t)
                       for t in ('variant', 'unknown', 'product')) - rejected0
        eventually(lambda: rejected() >= 3 * len(poison), what='every poison message counted')
        self.assertEqual(rejected(), 3 * len(poison))
        self.assertTrue(self.srv.alive())
        why = [l.get('why') for l in self.srv.logs() if l.get('msg') == 'event rejected']
        self.assertIn('value is not valid JSON', why)
        self.assertTrue(all('partition' in l and 'offset' in l for l in self.srv.logs()
                            if l.get('msg') == 'event rejected'))

    def test_z_broker_down_then_up(self):
        vid = '22222222-0000-4000-8000-0000000000ff'
        self.kafka.command('down 1')
        try:
            # Still answering from the last snapshot while the broker is gone.
            for _ in range(20):
                self.assertTrue(validate(self.srv, V1).exists)
                time.sleep(0.05)
        finally:
            self.kafka.command('up 1')
        self.kafka.produce([kafka.variant(ORG, vid, P1, 1)])
        eventually(lambda: validate(self.srv, vid).exists, timeout=30, what='catch up after outage')


class WarmLoadHandOff(unittest.TestCase):
    """PostgreSQL + Kafka: nothing lost between the warm load and the tail, and replay
    converges to the same state as warm load + tail."""

    @classmethod
    def setUpClass(cls):
        cls.pg = harness.PgCluster()
        cls.pg.load_fixtures()
        cls.kafka = kafka.KafkaMock(partitions=3)
        # The topic holds what an outbox publisher produced for every row.
        cls.kafka.produce(kafka.outbox_messages(cls.pg))

    @classmethod
    def tearDownClass(cls):
        cls.kafka.stop()
        cls.pg.stop()

    def digest(self, srv):
        return json.loads(admin_get(srv, '/digest'))

    def test_events_during_warm_load_are_not_lost_and_replay_converges(self):
        pid = self.pg.psql("SELECT id FROM products WHERE status = 'activa' "
                           "ORDER BY id LIMIT 1").strip()
        org = self.pg.psql("SELECT organization_id FROM products WHERE id = '%s'" % pid).strip()
        vid = self.pg.psql("SELECT id FROM variants WHERE product_id = '%s' AND status = 'active' "
                           "ORDER BY id LIMIT 1" % pid).strip()
        # Hold the variants table so the warm load stops there, after products were read.
        blocker = subprocess.Popen(['psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', self.pg.url()],
                                   stdin=subprocess.PIPE, text=True)
        try:
            blocker.stdin.write('BEGIN; LOCK TABLE variants IN ACCESS EXCLUSIVE MODE;\n')
            blocker.stdin.flush()
            time.sleep(0.5)
            srv = harness.Catalogd({'DATABASE_URL': self.pg.url(),
                                    'KAFKA_BOOTSTRAP_SERVERS': self.kafka.bootstrap})
            eventually(lambda: any(l.get('msg') == 'table loaded' and l.get('table') == 'products'
                                   for l in srv.logs()), what='products copied')
            # A write committed during the load, and its event: the snapshot cannot see
            # it (its transaction started before), so only the tail can deliver it.
            blocker.stdin.write("UPDATE products SET status = 'inactiva', version = version + 1 "
                                "WHERE id = '%s'; COMMIT;\n" % pid)
            blocker.stdin.flush()
            time.sleep(0.3)
            self.kafka.produce(kafka.outbox_messages(
                self.pg, kafka.OUTBOX_SQL.split('UNION ALL')[3].rstrip()
                + " WHERE p.id = '%s'" % pid))
            srv.wait_serving(30)
            eventually(lambda: not validate(srv, vid, org).is_active, what='change applied')
        finally:
            blocker.stdin.close()
            blocker.wait(10)
        warm = self.digest(srv)
        srv.stop()
        # Replay from the topic alone reaches the same state.
        replay = harness.Catalogd({'KAFKA_BOOTSTRAP_SERVERS': self.kafka.bootstrap})
        replay.wait_serving(30)
        self.assertFalse(validate(replay, vid, org).is_active)
        rd = self.digest(replay)
        replay.stop()
        # And so does a warm load of the final PostgreSQL state alone.
        only_pg = harness.Catalogd({'DATABASE_URL': self.pg.url()})
        only_pg.wait_serving(30)
        pd = self.digest(only_pg)
        only_pg.stop()
        self.assertEqual(warm['counts'], pd['counts'])
        self.assertGreater(pd['counts']['variants'], 0)
        self.assertEqual(rd['digest'], pd['digest'])
        self.assertEqual(warm['digest'], pd['digest'])


class KafkaDebugContexts(unittest.TestCase):
    """KAFKA_DEBUG (librdkafka's `debug` property) is how an operator asks librdkafka why it
    cannot reach a broker: its debug lines must reach the log, as JSON, at info level."""

    def test_kafka_debug_lines_are_logged(self):
        mock = kafka.KafkaMock(partitions=1)
        self.addCleanup(mock.stop)
        mock.produce([kafka.product(ORG, P1, 1), kafka.variant(ORG, V1, P1, 1)])
        srv = harness.Catalogd({'KAFKA_BOOTSTRAP_SERVERS': mock.bootstrap,
                                'KAFKA_DEBUG': 'broker'})
        self.addCleanup(srv.stop)
        srv.wait_serving(30)
        debug = eventually(lambda: ru.logs_with(srv, 'kafka debug'), 10,
                           what='a librdkafka debug line in the log')
        self.assertTrue(all(r['level'] == 'info' and r.get('facility') for r in debug), debug[:3])
        # Without KAFKA_DEBUG librdkafka writes none (the control: the lines come from it).
        quiet = harness.Catalogd({'KAFKA_BOOTSTRAP_SERVERS': mock.bootstrap})
        self.addCleanup(quiet.stop)
        quiet.wait_serving(30)
        self.assertEqual(ru.logs_with(quiet, 'kafka debug'), [])


if __name__ == '__main__':
    unittest.main()
