#!/usr/bin/python3
"""Events applied a second time must converge to the state the log describes.

After a warm load catalogd reads the change feed from the high watermarks it recorded
*before* PostgreSQL's snapshot (docs/ARCHITECTURE.md, "Warm load -> tail hand-off"), so an
event produced between that record and the snapshot is applied on top of a state that
already holds it. For versioned events that is a stale no-op. A Kafka tombstone carries no
version: it deletes "whatever is held". When the entity was deleted and then re-created in
that window (deleted v+1, tombstone, re-created v+2), the re-applied tombstone deleted the
re-created entity and borrowed its version, so the re-created entity's own upsert (v+2),
re-applied right after, was "stale": the variant was gone for good while PostgreSQL and a
replay of the topic both hold it. Reproduced deterministically by freezing PostgreSQL's
connection (a TCP proxy) until the events are in the window.
"""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import kafka  # noqa: E402
import reliability_util as ru  # noqa: E402
import tcp_proxy  # noqa: E402
from harness import pb  # noqa: E402


class RedeliveredTombstone(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.pg = harness.PgCluster()
        cls.pg.load_fixtures()
        cls.kafka = kafka.KafkaMock(partitions=3)
        cls.kafka.produce(kafka.outbox_messages(cls.pg))

    @classmethod
    def tearDownClass(cls):
        cls.kafka.stop()
        cls.pg.stop()

    def validate(self, srv, vid, org):
        return srv.catalog_stub().ValidateVariant(
            pb.ValidateVariantRequest(organization_id=org, variant_id=vid), timeout=5)

    def test_recreated_variant_survives_the_hand_off(self):
        row = self.pg.psql("SELECT v.id, v.organization_id, v.version FROM variants v "
                           "JOIN products p ON p.id = v.product_id WHERE v.status = 'active' "
                           "AND p.status = 'activa' ORDER BY v.id LIMIT 1").strip()
        vid, org, version = row.split('|')
        version = int(version)
        proxy = tcp_proxy.TcpProxy(self.pg.port)
        self.addCleanup(proxy.close)
        proxy.freeze()
        srv = harness.Catalogd({
            'DATABASE_URL': 'postgresql://postgres@127.0.0.1:%d/postgres' % proxy.port,
            'KAFKA_BOOTSTRAP_SERVERS': self.kafka.bootstrap})
        self.addCleanup(srv.close)
        ru.eventually(lambda: ru.logs_with(srv, 'kafka start offsets recorded'), 30,
                      'the hand-off offsets recorded')
        # In the window: the variant is deleted (versioned event, then the compaction
        # tombstone) and re-created; PostgreSQL's snapshot, taken after, holds the
        # re-created row.
        self.pg.psql("UPDATE variants SET version = %d WHERE id = '%s'" % (version + 2, vid))
        recreated = kafka.outbox_messages(
            self.pg, kafka.OUTBOX_SQL.split('UNION ALL')[4].rstrip().rstrip(';')
            + " WHERE v.id = '%s'" % vid)
        self.assertEqual(len(recreated), 1)
        self.kafka.produce([kafka.deleted(org, 'variant', vid, version + 1),
                            kafka.tombstone(org, 'variant', vid)] + recreated)
        proxy.forward()
        srv.wait_serving(60)
        ru.wait_caught_up(srv, self.kafka, 30)
        reply = self.validate(srv, vid, org)
        self.assertTrue(reply.exists, 'the re-created variant was lost by the re-applied '
                        'tombstone\n' + srv.tail())
        self.assertTrue(reply.is_active)
        # The whole state equals a warm load of PostgreSQL alone and a replay of the topic.
        only_pg = harness.Catalogd({'DATABASE_URL': self.pg.url()})
        self.addCleanup(only_pg.close)
        only_pg.wait_serving(60)
        replay = harness.Catalogd({'KAFKA_BOOTSTRAP_SERVERS': self.kafka.bootstrap})
        self.addCleanup(replay.close)
        replay.wait_serving(60)
        want = ru.digest(only_pg)['digest']
        self.assertEqual(ru.digest(srv)['digest'], want)
        self.assertEqual(ru.digest(replay)['digest'], want)
        # Past the window (each partition reached its end once) a tombstone is a plain
        # delete again: a duplicate of the deleted upsert after it stays stale.
        self.kafka.produce([kafka.tombstone(org, 'variant', vid)] + recreated)
        ru.wait_caught_up(srv, self.kafka, 30)
        self.assertFalse(self.validate(srv, vid, org).exists,
                         'a duplicate upsert after its tombstone resurrected the variant')


if __name__ == '__main__':
    unittest.main()
