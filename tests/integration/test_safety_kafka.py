#!/usr/bin/python3
"""Production safety of the change feed (issue 11): catalogd never goes Ready on a catalog
it cannot vouch for, says loudly when the feed is broken, recovers from a lost position by
itself, and never leaks a Kafka secret.

  ReplayTrustTest   (#4) a replay over a topic whose oldest data was deleted stays
                    NOT_SERVING (condition "replay") unless REPLAY_ALLOW_INCOMPLETE=true;
                    (#5) a missing topic is reported by name and broker list, never
                    created, NOT_SERVING until it exists; a replay that ends with no live
                    entity (an empty topic, another service's topic whose every event is
                    rejected, only deletes) is NOT_SERVING (condition "replay" with the
                    counts) until an entity arrives, unless ALLOW_EMPTY_CATALOG=true (or its
                    alias REPLAY_ALLOW_EMPTY); (#12) an unreachable broker is named
                    with librdkafka's error (condition "kafka"), cleared once reachable;
                    (#3, replay) a lost position with a truncated history: the condition
                    stays and says why, /readyz still serving.
  WarmFeedTest      (#3, warm) a lost position is re-synced from PostgreSQL in the
                    background and converges to PostgreSQL's state (a delete missed in
                    the gap included); (#5) warm mode with a missing topic serves the warm
                    load with an error condition; (#6) no change feed: warning, condition
                    "feed", catalogd_change_feed_enabled 0.
  ConfigTest        (#10) Kubernetes service-link variables (a Service named kafka) are
                    not handed to librdkafka; secrets never logged; (#8) shutdown with the
                    broker down is bounded by SHUTDOWN_GRACE_SECONDS.

The mock broker keeps at most 5 MiB per partition (older batches are dropped silently):
producing ~6 MiB of padding to one partition truncates its history.
Run: /usr/bin/python3 tests/integration/test_safety_kafka.py -v   (about 2 min)
"""
import json
import os
import shutil
import signal
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402  (Debian python3-grpcio)
import harness  # noqa: E402
import kafka  # noqa: E402
import reliability_util as ru  # noqa: E402
from harness import pb, NOT_SERVING  # noqa: E402

ORG = 'org_safety'
P1 = '11111111-0000-4000-8000-00000000a001'
V = ['22222222-0000-4000-8000-00000000b%03d' % i for i in range(1, 7)]


def setUpModule():
    harness.require_binary()


eventually = ru.eventually


readyz, condition, logs_with = ru.readyz, ru.condition, ru.logs_with


def sku_of(srv, vid, org=ORG):
    return ru.sku_of(srv, vid, org)


def padding(partition, mib=6.0):
    return ru.padding(partition, P1, mib)


def base_events(partitions):
    msgs = [(0,) + kafka.product(ORG, P1, 1)]
    for i, v in enumerate(V):
        msgs.append((i % partitions,) + kafka.variant(ORG, v, P1, 1, sku='V%d-1' % i))
    return msgs


def feed_env(km, **extra):
    env = {'KAFKA_BOOTSTRAP_SERVERS': km.bootstrap, 'SYNC_MAX_BATCH_MS': '5'}
    env.update(extra)
    return env


def stays_not_serving(test, srv, seconds):
    """Every health answer for `seconds` is NOT_SERVING, and there are at least three. A
    check that gets no answer (a loaded box: the connection attempt timed out) proves
    nothing either way: it is retried, for at most 20 s more."""
    start = time.monotonic()
    answers = 0
    while answers < 3 or time.monotonic() - start < seconds:
        test.assertLess(time.monotonic() - start, seconds + 20, 'no health answers')
        test.assertTrue(srv.alive(), srv.tail())
        try:
            test.assertEqual(srv.health_check(), NOT_SERVING)
            answers += 1
        except grpc.RpcError as e:
            test.assertEqual(e.code(), grpc.StatusCode.UNAVAILABLE, e)
        time.sleep(0.2)


class ReplayTrustTest(unittest.TestCase):

    def refused(self, km, seconds=1.5, **env):
        """A replaying catalogd on km that refuses to serve: its 'replay' condition, once
        set and NOT_SERVING held for seconds, and the server."""
        srv = harness.Catalogd(feed_env(km, **env))
        self.addCleanup(srv.close)
        srv.wait_listening(10)
        eventually(lambda: condition(srv, 'replay'), 20, 'condition replay')
        stays_not_serving(self, srv, seconds)
        return condition(srv, 'replay'), srv

    def test_a_truncated_history_is_not_served_unless_allowed(self):
        km = kafka.KafkaMock(partitions=2)
        self.addCleanup(km.stop)
        ru.produce(km, base_events(2) + padding(0))
        lo = ru.watermarks(km)[0][0]
        self.assertGreater(lo, 0, 'setup: the mock dropped the oldest data of partition 0')
        c, srv = self.refused(km, 2)
        self.assertEqual(c['level'], 'error')
        self.assertIn('0@%d' % lo, c['message'])
        self.assertEqual(readyz(srv)[0], 503)
        err = logs_with(srv, 'replay refused: the topic history is incomplete')
        self.assertTrue(err, srv.tail())
        self.assertEqual(err[0]['level'], 'error')
        self.assertIn('0@%d' % lo, err[0]['first_offsets'])
        self.assertIn('warm', err[0]['fix'])
        self.assertIn('compact', err[0]['fix'])
        self.assertEqual(srv.stop(), 0)

        # The operator's override: serves, loudly; and never hands the partial state on
        # (a checkpoint or a peer would serve it without the warning).
        ckdir = tempfile.mkdtemp(prefix='catalogd-ckpt-')
        self.addCleanup(shutil.rmtree, ckdir, True)
        srv = harness.Catalogd(feed_env(km, REPLAY_ALLOW_INCOMPLETE='true', CHECKPOINT_DIR=ckdir,
                                        CHECKPOINT_INTERVAL_SECONDS='1', SNAPSHOT_SERVE='true'))
        self.addCleanup(srv.close)
        srv.wait_serving(30)
        time.sleep(2.5)  # two checkpoint intervals
        self.assertEqual([f for f in os.listdir(ckdir) if f.endswith('.ckpt')], [])
        self.assertEqual(ru.admin_status(srv, '/snapshot')[0], 503)
        loud = [l for l in srv.logs() if 'REPLAY_ALLOW_INCOMPLETE' in json.dumps(l)
                and l.get('level') in ('warn', 'error')]
        self.assertTrue(loud, srv.tail())
        self.assertIsNotNone(condition(srv, 'replay'))
        self.assertEqual(sku_of(srv, V[1]), 'V1-1')  # partition 1 is complete
        self.assertEqual(srv.stop(), 0)

    def test_b_missing_topic_is_never_created_and_not_served(self):
        km = kafka.KafkaMock(partitions=2)
        self.addCleanup(km.stop)
        ru.produce(km, base_events(2))
        typo = 'catalog.chnages'
        srv = harness.Catalogd(feed_env(km, KAFKA_TOPIC=typo))
        self.addCleanup(srv.close)
        srv.wait_listening(10)
        eventually(lambda: condition(srv, 'kafka'), 20, 'condition kafka')
        stays_not_serving(self, srv, 2)
        with self.assertRaises(RuntimeError, msg='catalogd created the topic'):
            km.command('partitions %s' % typo)
        err = logs_with(srv, 'kafka topic does not exist')
        self.assertTrue(err, srv.tail())
        self.assertEqual(err[0]['level'], 'error')
        self.assertEqual(err[0]['topic'], typo)
        self.assertEqual(err[0]['brokers'], km.bootstrap)
        self.assertIn(typo, condition(srv, 'kafka')['message'])
        # Created later (and filled): catalogd notices and serves it.
        km.command('create %s 2' % typo)
        ru.produce(km, base_events(2), topic=typo)
        srv.wait_serving(30)
        self.assertEqual(sku_of(srv, V[2]), 'V2-1')
        eventually(lambda: condition(srv, 'kafka') is None, 10, 'condition kafka cleared')
        self.assertEqual(srv.stop(), 0)

    def test_c_empty_topic_is_not_served_unless_allowed(self):
        km = kafka.KafkaMock(partitions=2)
        self.addCleanup(km.stop)
        c, srv = self.refused(km)
        self.assertTrue(logs_with(srv, 'replay refused: the topic is empty'), srv.tail())
        self.assertIn('ALLOW_EMPTY_CATALOG', c['message'])
        self.assertEqual(srv.stop(), 0)
        srv = harness.Catalogd(feed_env(km, ALLOW_EMPTY_CATALOG='true'))
        self.addCleanup(srv.close)
        srv.wait_serving(20)
        self.assertIsNone(condition(srv, 'replay'))
        # Events produced later arrive as usual.
        ru.produce(km, base_events(2))
        eventually(lambda: sku_of(srv, V[0]) == 'V0-1', 20, 'event after start')
        self.assertEqual(srv.stop(), 0)

    def test_f_foreign_topic_is_not_served_as_an_empty_catalog(self):
        # KAFKA_TOPIC points at another service's topic: every event is rejected.
        km = kafka.KafkaMock(partitions=2)
        self.addCleanup(km.stop)
        ru.produce(km, [(i % 2, 'order/%d' % i, '{"order_id":%d}' % i) for i in range(30)])
        c, srv = self.refused(km)
        self.assertEqual(c['level'], 'error')
        self.assertIn('30 events (30 rejected)', c['message'])
        self.assertIn('KAFKA_TOPIC', c['message'])
        self.assertEqual(readyz(srv)[0], 503)
        lines = logs_with(srv, 'replay refused: the replayed catalog is empty')
        self.assertTrue(lines, srv.tail())
        self.assertEqual((lines[0]['level'], lines[0]['events'], lines[0]['rejected']),
                         ('error', 30, 30))
        self.assertIn('KAFKA_TOPIC', lines[0]['cause'])
        # Catalog events arriving later make it a catalog: served, condition cleared.
        ru.produce(km, base_events(2))
        srv.wait_serving(30)
        self.assertEqual(sku_of(srv, V[1]), 'V1-1')
        self.assertIsNone(condition(srv, 'replay'))
        self.assertEqual(srv.stop(), 0)

    def test_g_deletes_only_topic_is_not_served_unless_allowed(self):
        # Every entity created is deleted again (versioned deletes and Kafka tombstones).
        km = kafka.KafkaMock(partitions=2)
        self.addCleanup(km.stop)
        dels = [(0,) + kafka.deleted(ORG, 'product', P1, 2)]
        dels += [(i % 2,) + (kafka.deleted(ORG, 'variant', v, 2) if i % 2 else
                             kafka.tombstone(ORG, 'variant', v)) for i, v in enumerate(V)]
        ru.produce(km, base_events(2) + dels)
        c, srv = self.refused(km)
        self.assertEqual(c['level'], 'error')
        self.assertIn('14 events (0 rejected)', c['message'])
        self.assertTrue(logs_with(srv, 'replay refused: the replayed catalog is empty'),
                        srv.tail())
        self.assertEqual(srv.stop(), 0)
        # REPLAY_ALLOW_EMPTY, the knob's first name, still allows it.
        srv = harness.Catalogd(feed_env(km, REPLAY_ALLOW_EMPTY='true'))
        self.addCleanup(srv.close)
        srv.wait_serving(20)
        self.assertIsNone(condition(srv, 'replay'))
        self.assertIsNone(sku_of(srv, V[0]))
        self.assertEqual(srv.stop(), 0)

    def test_d_unreachable_broker_is_named_and_cleared(self):
        km = kafka.KafkaMock(partitions=2)
        self.addCleanup(km.stop)
        ru.produce(km, base_events(2))
        km.command('down 1')
        srv = harness.Catalogd(feed_env(km))
        self.addCleanup(srv.close)
        srv.wait_listening(10)
        c = eventually(lambda: condition(srv, 'kafka'), 30, 'condition kafka')
        self.assertIn(km.bootstrap, c['message'])
        stays_not_serving(self, srv, 1)
        lines = logs_with(srv, 'kafka not reachable')
        self.assertTrue(lines, srv.tail())
        self.assertIn(lines[0]['level'], ('warn', 'error'))
        self.assertEqual(lines[0]['brokers'], km.bootstrap)
        self.assertTrue(lines[0].get('error'), lines[0])
        km.command('up 1')
        srv.wait_serving(30)
        eventually(lambda: condition(srv, 'kafka') is None, 10, 'condition kafka cleared')
        self.assertEqual(srv.stop(), 0)

    def test_e_lost_position_with_truncated_history_stays_flagged(self):
        km = kafka.KafkaMock(partitions=2)
        self.addCleanup(km.stop)
        ru.produce(km, base_events(2))
        srv = harness.Catalogd(feed_env(km))
        self.addCleanup(srv.close)
        srv.wait_serving(30)
        m = ru.metrics(srv)
        self.assertEqual(m.get('catalogd_partition_stalled{partition="0"}'), 0)
        self.assertIn('catalogd_replay_progress_ratio', m)
        self.assertEqual(m['catalogd_replay_progress_ratio'], 1)
        self.assertIn('catalogd_last_event_timestamp_seconds', m)
        srv.send_signal(signal.SIGSTOP)
        try:
            ru.produce(km, padding(0))
        finally:
            srv.send_signal(signal.SIGCONT)
        self.assertGreater(ru.watermarks(km)[0][0], 0, 'setup: partition 0 truncated')
        eventually(lambda: ru.metrics(srv).get('catalogd_partition_stalled{partition="0"}') == 1,
                   30, 'partition 0 flagged')
        # After the history check (DescribeConfigs gets no answer from the mock: ~3 s)
        # the condition says why it stays.
        c = eventually(lambda: 'incomplete' in (condition(srv, 'partition_stalled') or {}).get(
            'message', '') and condition(srv, 'partition_stalled'), 20, 'condition says why')
        self.assertEqual(c['level'], 'error')
        self.assertIn('0@', c['message'])
        self.assertTrue(logs_with(srv, 'kafka position lost: events were deleted before they '
                                       'were read'), srv.tail())
        time.sleep(2)
        code, body = readyz(srv)
        self.assertEqual((code, body['status']), (200, 'serving'))
        self.assertIsNotNone(condition(srv, 'partition_stalled'))
        self.assertEqual(ru.metrics(srv).get('catalogd_partition_stalled{partition="0"}'), 1)
        self.assertEqual(ru.metrics(srv).get('catalogd_partition_stalled{partition="1"}'), 0)
        self.assertEqual(srv.stop(), 0)


class WarmFeedTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.pg = harness.PgCluster()
        cls.pg.load_fixtures()

    @classmethod
    def tearDownClass(cls):
        cls.pg.stop()

    def test_a_lost_position_resyncs_from_postgres(self):
        km = kafka.KafkaMock(partitions=2)
        self.addCleanup(km.stop)
        srv = harness.Catalogd(feed_env(km, DATABASE_URL=self.pg.url()))
        self.addCleanup(srv.close)
        srv.wait_serving(30)
        rows = self.pg.psql("SELECT v.organization_id, v.id, p.id FROM variants v "
                            "JOIN products p ON p.id = v.product_id WHERE v.status = 'active' "
                            "AND p.status = 'activa' ORDER BY v.id LIMIT 2").split()
        (org, gone, _), (org2, changed, _) = [r.split('|') for r in rows]
        self.assertIsNotNone(sku_of(srv, gone, org))
        srv.send_signal(signal.SIGSTOP)
        try:
            # A delete and an update in PostgreSQL; their events, then enough padding to
            # push them out of the partition before catalogd reads them.
            ver = int(self.pg.psql("SELECT version FROM variants WHERE id = '%s'" % gone))
            self.pg.psql("DELETE FROM variant_images WHERE variant_id = '%s'; "
                         "DELETE FROM variants WHERE id = '%s'" % (gone, gone))
            self.pg.psql("UPDATE variants SET sku = 'RESYNCED', version = version + 1 "
                         "WHERE id = '%s'" % changed)
            ru.produce(km, [(0,) + kafka.deleted(org, 'variant', gone, ver + 1)] + padding(0))
        finally:
            srv.send_signal(signal.SIGCONT)
        # Callers are answered all along: the old snapshot serves until the swap.
        def probe(stub):
            r = stub.ValidateVariant(pb.ValidateVariantRequest(organization_id=org2,
                                                               variant_id=changed), timeout=5)
            return r.exists, r.sku
        calls = ru.ClientLoop(srv, [('ValidateVariant', probe)], threads=1, pause=0.02)
        try:
            self.assertGreater(ru.watermarks(km)[0][0], 0, 'setup: partition 0 truncated')
            lost = eventually(lambda: logs_with(srv, 'kafka position lost: events were deleted '
                                                     'before they were read'), 30, 'loss detected')
            self.assertEqual(lost[0]['level'], 'error')
            eventually(lambda: logs_with(srv, 're-sync done'), 60, 're-sync done')
            eventually(lambda: sku_of(srv, changed, org2) == 'RESYNCED', 10, 'update applied')
        finally:
            records = calls.stop()
        self.assertGreater(len(records), 0)
        self.assertEqual(calls.failures(), [], calls.show(calls.failures()))
        self.assertIsNone(sku_of(srv, gone, org), 'the delete missed in the gap is applied')
        self.assertIsNone(condition(srv, 'partition_stalled'))
        m = ru.metrics(srv)
        self.assertEqual(m.get('catalogd_partition_stalled{partition="0"}'), 0)
        self.assertEqual(readyz(srv)[1]['status'], 'serving')
        want = ru.offline_digest({'DATABASE_URL': self.pg.url()})
        self.assertEqual(ru.digest(srv)['digest'], want['digest'])
        self.assertEqual(srv.stop(), 0)

    def test_b_missing_topic_serves_the_warm_load_loudly(self):
        km = kafka.KafkaMock(partitions=2)
        self.addCleanup(km.stop)
        srv = harness.Catalogd(feed_env(km, DATABASE_URL=self.pg.url(), KAFKA_TOPIC='nope'))
        self.addCleanup(srv.close)
        srv.wait_serving(30)
        c = eventually(lambda: condition(srv, 'kafka'), 10, 'condition kafka')
        self.assertEqual(c['level'], 'error')
        self.assertIn('nope', c['message'])
        self.assertTrue(logs_with(srv, 'kafka topic does not exist'), srv.tail())
        with self.assertRaises(RuntimeError, msg='catalogd created the topic'):
            km.command('partitions nope')
        # No event applied yet: no age at all (it used to export a -1 sentinel).
        m = ru.metrics(srv)
        self.assertNotIn('catalogd_last_event_age_seconds', m)
        self.assertNotIn('catalogd_last_event_timestamp_seconds', m)
        self.assertEqual(srv.stop(), 0)

    def test_b2_topic_created_during_the_load_is_read_from_its_beginning(self):
        # Missing at the hand-off, created (with an event in it) while the load runs: the
        # tail must read it from its beginning. It used to record the high watermark it found
        # when the tail started, skipping what was produced during the load.
        km = kafka.KafkaMock(partitions=2)
        self.addCleanup(km.stop)
        blocker = ru.PsqlSession(self.pg)
        self.addCleanup(blocker.close)
        blocker.send('BEGIN; LOCK TABLE variants IN ACCESS EXCLUSIVE MODE;')
        srv = harness.Catalogd(feed_env(km, DATABASE_URL=self.pg.url(), KAFKA_TOPIC='late'))
        self.addCleanup(srv.close)
        eventually(lambda: logs_with(srv, 'kafka topic does not exist'), 20, 'the missing topic')
        eventually(lambda: [r for r in logs_with(srv, 'table loaded')
                            if r.get('table') == 'products'], 20, 'the load held on variants')
        km.command('create late 2')
        ru.produce(km, [(0,) + kafka.variant(ORG, V[0], P1, 1, sku='LATE')], topic='late')
        blocker.send('COMMIT;')
        srv.wait_serving(30)
        eventually(lambda: sku_of(srv, V[0]) == 'LATE', 20, 'the event of the late topic applied')
        m = ru.metrics(srv)
        self.assertGreaterEqual(m['catalogd_last_event_age_seconds'], 0)
        self.assertGreater(m['catalogd_last_event_timestamp_seconds'], 1.7e9)
        self.assertEqual(srv.stop(), 0)

    def test_c_no_change_feed_is_announced(self):
        srv = harness.Catalogd({'DATABASE_URL': self.pg.url()})
        self.addCleanup(srv.close)
        srv.wait_serving(30)
        warn = logs_with(srv, 'no change feed: the catalog will not change until restart')
        self.assertTrue(warn, srv.tail())
        self.assertEqual(warn[0]['level'], 'warn')
        self.assertEqual(condition(srv, 'feed')['level'], 'warn')
        self.assertEqual(ru.metric(srv, 'catalogd_change_feed_enabled'), 0)
        self.assertEqual(srv.stop(), 0)

    def test_d_unreachable_broker_at_the_hand_off_is_named(self):
        km = kafka.KafkaMock(partitions=2)
        self.addCleanup(km.stop)
        km.command('down 1')
        srv = harness.Catalogd(feed_env(km, DATABASE_URL=self.pg.url()))
        self.addCleanup(srv.close)
        srv.wait_listening(10)
        c = eventually(lambda: condition(srv, 'kafka'), 30, 'condition kafka')
        self.assertIn(km.bootstrap, c['message'])
        lines = logs_with(srv, 'kafka not reachable')
        self.assertTrue(lines and lines[0].get('error') and
                        lines[0]['brokers'] == km.bootstrap, srv.tail())
        km.command('up 1')
        srv.wait_serving(30)
        eventually(lambda: condition(srv, 'kafka') is None, 10, 'condition kafka cleared')
        self.assertEqual(ru.metric(srv, 'catalogd_change_feed_enabled'), 1)
        self.assertEqual(srv.stop(), 0)


SERVICE_LINKS = {  # what Kubernetes injects for a Service named kafka (enableServiceLinks)
    'KAFKA_SERVICE_HOST': '10.96.12.7', 'KAFKA_SERVICE_PORT': '9092',
    'KAFKA_SERVICE_PORT_BROKER': '9092', 'KAFKA_PORT': 'tcp://10.96.12.7:9092',
    'KAFKA_PORT_9092_TCP': 'tcp://10.96.12.7:9092', 'KAFKA_PORT_9092_TCP_PROTO': 'tcp',
    'KAFKA_PORT_9092_TCP_PORT': '9092', 'KAFKA_PORT_9092_TCP_ADDR': '10.96.12.7',
}


class ConfigTest(unittest.TestCase):

    def test_a_kubernetes_service_links_are_skipped(self):
        km = kafka.KafkaMock(partitions=2)
        self.addCleanup(km.stop)
        ru.produce(km, base_events(2))
        srv = harness.Catalogd(feed_env(km, LOG_LEVEL='debug', **SERVICE_LINKS))
        self.addCleanup(srv.close)
        srv.wait_serving(30)
        self.assertEqual(sku_of(srv, V[0]), 'V0-1')
        skipped = logs_with(srv, 'kafka: Kubernetes service-link variable ignored')
        self.assertEqual(sorted(l['variable'] for l in skipped), sorted(SERVICE_LINKS))
        self.assertEqual(srv.stop(), 0)

    def test_b_secrets_are_never_logged(self):
        km = kafka.KafkaMock(partitions=2)
        self.addCleanup(km.stop)
        secret = 'Sup3r-S3cret-9471'
        def talked(srv):  # librdkafka ran with the settings: it logged about the broker
            return [l for l in srv.logs() if l.get('msg') in ('kafka', 'kafka error',
                                                                'kafka not reachable')]

        def refused(prop):  # librdkafka refused the settings, naming this property
            return lambda srv: [l for l in logs_with(srv, 'bad Kafka configuration')
                                if prop in l.get('error', '')]

        # (settings, proof that the code which could leak the secret ran)
        cases = [
            # valid config, broker rejects or ignores SASL: runs; debug logging on
            ({'KAFKA_SASL_PASSWORD': secret, 'KAFKA_SASL_USERNAME': 'u',
              'KAFKA_SECURITY_PROTOCOL': 'sasl_plaintext', 'KAFKA_SASL_MECHANISMS': 'PLAIN',
              'LOG_LEVEL': 'debug', 'KAFKA_DEBUG': 'conf,security'}, talked),
            # an odd property next to the secret
            ({'KAFKA_SASL_PASSWORD': secret, 'KAFKA_SASL_MECHANISMS': 'BOGUS'}, talked),
            # the secret given to a property librdkafka rejects
            ({'KAFKA_SSL_KEY_PASSWORD': secret, 'KAFKA_SSL_KEY_LOCATION': '/nonexistent/' +
              secret, 'KAFKA_SECURITY_PROTOCOL': 'ssl'}, refused('ssl.key.location')),
            ({'KAFKA_SSL_KEYSTORE_PASSWORD': secret, 'KAFKA_SSL_KEYSTORE_LOCATION':
              '/nonexistent.p12', 'KAFKA_SECURITY_PROTOCOL': 'ssl'},
             refused('ssl.keystore.location')),
            ({'KAFKA_SASL_PASSWORD': secret, 'KAFKA_SASL_PASSWORD_TYPO': secret},
             refused('KAFKA_SASL_PASSWORD_TYPO')),
        ]
        for env, proof in cases:
            srv = harness.Catalogd(feed_env(km, **env))
            self.addCleanup(srv.close)
            eventually(lambda: proof(srv), 15, 'the settings used (%r)' % sorted(env))
            srv.stop()
            out = srv.raw_stdout() + srv.raw_stderr()
            self.assertNotIn(secret, out, 'secret logged with %r' % sorted(env))

    def test_c_shutdown_with_broker_down_is_bounded(self):
        # Two brokers: the change topic led by broker 1, the dead-letter topic by broker 2,
        # which goes down: a poison message is read but its copy cannot be delivered.
        km = kafka.KafkaMock(partitions=2, brokers=2)
        self.addCleanup(km.stop)
        for p in (0, 1):
            km.command('leader %s %d 1' % (kafka.TOPIC, p))
        km.command('create catalog.dlq 1')
        km.command('leader catalog.dlq 0 2')
        ru.produce(km, base_events(2))
        srv = harness.Catalogd(feed_env(km, KAFKA_DLQ_TOPIC='catalog.dlq',
                                        SHUTDOWN_GRACE_SECONDS='2'))
        self.addCleanup(srv.close)
        srv.wait_serving(30)
        km.command('down 2')
        ru.produce(km, [(0, kafka.key(ORG, 'variant', V[0]), '{not json')])
        eventually(lambda: logs_with(srv, 'event rejected'), 10, 'poison read')
        time.sleep(0.5)
        t0 = time.monotonic()
        srv.send_signal(signal.SIGTERM)
        code = srv.wait_exit(30)
        took = time.monotonic() - t0
        ru.note('shutdown with the dead-letter broker down took %.1fs (grace 2 s)' % took)
        self.assertEqual(code, 0)
        self.assertLess(took, 2 + 2.0)
        lost = logs_with(srv, 'dead-letter messages not delivered before shutdown')
        self.assertTrue(lost and lost[0]['count'] >= 1, srv.tail())


if __name__ == '__main__':
    unittest.main()
