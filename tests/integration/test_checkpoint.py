#!/usr/bin/python3
"""Checkpoints (issue 13, local part): a replica restarts from its own checkpoint file.

  test_a  kill -9, PostgreSQL stopped, events produced while it is down: the restarted
          replica serves from its checkpoint (log "startup source" source=checkpoint),
          applies the events it missed, and its state digest equals that of a replica that
          never restarted once both tailed the same events.
  test_b  a checkpoint older than the topic's retention (the mock's 5 MiB cap pushed the
          partition's first offset past the checkpoint's) is refused with the reason, and
          the warm load from PostgreSQL is used.
  test_c  a foreign file, a corrupt checkpoint and a truncated one, all newer than a good
          checkpoint, are skipped with a warning each; the good one is used.
  test_e  Kafka down and the only checkpoint damaged: it is skipped with the reason while
          the broker is still unreachable (the header's check, which waits for the broker,
          runs beside the body's read and is given up once the body failed); SIGTERM then
          ends the wait, exit 0.
  CheckpointSigtermTest
    test_a  SIGTERM during the load of a large checkpoint (500k variants, about 0.6 s to
            load here, the signal lands some 10-50 ms into it): exit 0 within the grace
            period, "checkpoint load stopped: shutting down", nothing published, no fallback
            (no warm load, no "checkpoint skipped"). The reader used to read the whole file
            and publish it first.

Real parts: the binary, PostgreSQL (PgCluster), the mock broker over TCP.
Run: /usr/bin/python3 tests/integration/test_checkpoint.py -v   (about 1.5 min)
"""
import os
import shutil
import signal
import sys
import tempfile
import unittest
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import grpc  # noqa: E402  (Debian python3-grpcio)

import harness  # noqa: E402
import kafka  # noqa: E402
import reliability_util as ru  # noqa: E402
from harness import pb  # noqa: E402

ORG = 'org_ckpt'
P1 = '44444444-0000-4000-8000-00000000a001'
V = ['55555555-0000-4000-8000-00000000b%03d' % i for i in range(1, 9)]
eventually, logs_with = ru.eventually, ru.logs_with


def setUpModule():
    harness.require_binary()


def sku_of(srv, vid, org=ORG):
    return ru.sku_of(srv, vid, org)


def events(version, variants, sku='S'):
    return ru.product_events(ORG, P1, version, variants, sku)


def padding(partition, mib=6.0):
    return ru.padding(partition, P1, mib)


def checkpoint_covering(srv, timeout=20):
    """Waits until srv wrote a checkpoint of its current snapshot (or a later one); returns
    that log record."""
    want = ru.digest(srv)['snapshot_version']

    def written():
        recs = [r for r in logs_with(srv, 'checkpoint written')
                if r['snapshot_version'] >= want]
        return recs[-1] if recs else None
    return eventually(written, timeout, 'a checkpoint of snapshot %d' % want)


class CheckpointTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.pg = harness.PgCluster()
        cls.pg.load_fixtures()

    @classmethod
    def tearDownClass(cls):
        cls.pg.stop()

    def setUp(self):
        if not self.pg._postmaster_pid():
            self.pg.start()
        self.km = kafka.KafkaMock(partitions=2)
        self.addCleanup(self.km.stop)
        self.dir = tempfile.mkdtemp(prefix='catalogd-ckpt-')
        self.addCleanup(shutil.rmtree, self.dir, True)

    def env(self, checkpoints=True, **extra):
        env = {'DATABASE_URL': self.pg.url(), 'KAFKA_BOOTSTRAP_SERVERS': self.km.bootstrap,
               'SYNC_MAX_BATCH_MS': '5', 'PG_RETRY_MAX_SECONDS': '1'}
        if checkpoints:
            env.update({'CHECKPOINT_DIR': self.dir, 'CHECKPOINT_INTERVAL_SECONDS': '1'})
        env.update(extra)
        return env

    def server(self, **env):
        srv = harness.Catalogd(self.env(**env))
        self.addCleanup(srv.close)
        return srv

    def same_state(self, a, b, timeout=30):
        """Waits until a's digest equals b's (both caught up with the topic)."""
        ru.wait_caught_up(a, self.km), ru.wait_caught_up(b, self.km)
        want = ru.digest(b)['digest']
        got = ru.wait_digest(a, want, timeout)
        self.assertEqual(got['digest'], want, a.tail())

    def test_a_restart_after_kill_with_postgres_stopped(self):
        ref = self.server(checkpoints=False)  # never restarts
        a = self.server()
        ref.wait_serving(30), a.wait_serving(30)
        self.assertEqual(ru.startup_source(a)['source'], 'postgres')
        ru.produce(self.km, events(1, V[:6]))
        self.same_state(a, ref)
        self.assertEqual(sku_of(a, V[5]), 'S5-1')
        checkpoint_covering(a)
        self.assertGreaterEqual(ru.metric(a, 'catalogd_checkpoints_written_total'), 1)
        self.assertGreater(ru.metric(a, 'catalogd_checkpoint_last_bytes'), 0)
        a.kill()
        self.pg.stop()
        # While it is down: an update, a delete and new variants.
        ru.produce(self.km, events(2, V[:2] + V[6:], sku='T') +
                   [(1,) + kafka.deleted(ORG, 'variant', V[3], 2)])
        b = self.server()
        b.wait_serving(30)
        src = ru.startup_source(b)
        self.assertEqual(src['source'], 'checkpoint', b.tail())
        self.assertFalse(logs_with(b, 'warm load starting'), 'PostgreSQL was asked')
        self.same_state(b, ref)
        self.assertEqual(sku_of(b, V[0]), 'T0-2')
        self.assertEqual(sku_of(b, V[7]), 'T3-2')
        self.assertIsNone(sku_of(b, V[3]))
        self.assertEqual(sku_of(b, V[5]), 'S5-1')
        self.assertEqual(b.stop(), 0)
        self.assertEqual(ref.stop(), 0)

    def test_d_staleness_counts_from_the_checkpoint_not_the_restart(self):
        """A replica started from an old checkpoint is as stale as that checkpoint until its
        tail catches up: x-catalog-max-staleness-ms must refuse it, not answer old data."""
        a = self.server()
        a.wait_serving(30)
        ru.produce(self.km, events(1, V[:2]))
        eventually(lambda: sku_of(a, V[1]) == 'S1-1', 15, 'the first events')
        rec = checkpoint_covering(a)
        a.kill()
        time.sleep(10)  # the checkpoint ages (well beyond this replica's start-up)
        ru.produce(self.km, events(2, V[:2], sku='T'))
        self.km.command('rtt 1 700')  # the tail is slow to catch up
        self.addCleanup(self.km.command, 'rtt 1 0')
        t_start = time.monotonic()
        b = self.server()
        b.wait_serving(60)
        self.assertEqual(ru.startup_source(b)['source'], 'checkpoint', b.tail())
        stub = b.catalog_stub()
        req = pb.ValidateVariantRequest(organization_id=ORG, variant_id=V[1])
        r, call = stub.ValidateVariant.with_call(req, timeout=5)
        if r.sku == 'T1-2':
            self.skipTest('the tail caught up before the first call (%s)' % rec)
        stale = int(dict(call.trailing_metadata())['x-catalog-staleness-ms'])
        up = time.monotonic() - t_start
        ru.note('checkpoint age >= 10 s, replica up %.1f s, staleness %d ms' % (up, stale))
        self.assertGreaterEqual(stale, 10000, 'staleness counted from the restart')
        with self.assertRaises(grpc.RpcError) as e:
            stub.ValidateVariant(req, timeout=5,
                                 metadata=[('x-catalog-max-staleness-ms', '9000')])
        self.assertEqual(e.exception.code(), grpc.StatusCode.UNAVAILABLE)
        self.assertEqual(b.stop(), 0)

    def test_b_checkpoint_older_than_retention_is_refused(self):
        a = self.server()
        a.wait_serving(30)
        ru.produce(self.km, events(1, V[:4]))
        ru.wait_caught_up(a, self.km)
        checkpoint_covering(a)
        self.assertEqual(a.stop(), 0)
        ru.produce(self.km, padding(0))
        lo = ru.watermarks(self.km)[0][0]
        self.assertGreater(lo, 0, 'setup: the mock dropped the oldest data of partition 0')
        b = self.server()
        b.wait_serving(60)
        skipped = logs_with(b, 'checkpoint skipped')
        self.assertTrue(skipped, b.tail())
        self.assertIn('retention', skipped[0]['why'])
        self.assertIn('starts at %d' % lo, skipped[0]['why'])
        self.assertEqual(ru.startup_source(b)['source'], 'postgres')
        # The state is PostgreSQL's: what only the refused checkpoint held is not served.
        self.assertIsNone(sku_of(b, V[1]))
        self.assertEqual(b.stop(), 0)

    def test_c_damaged_and_foreign_files_are_skipped(self):
        ref = self.server(checkpoints=False)
        a = self.server(CHECKPOINT_KEEP='5')
        ref.wait_serving(30), a.wait_serving(30)
        ru.produce(self.km, events(1, V[:4]))
        ru.wait_caught_up(a, self.km)
        good = checkpoint_covering(a)['path']
        ru.produce(self.km, events(2, V[:4], sku='U'))
        ru.wait_caught_up(a, self.km)
        newer = checkpoint_covering(a)['path']
        self.assertNotEqual(good, newer)
        a.send_signal(signal.SIGSTOP)  # no more checkpoints; killed below
        for p in os.listdir(self.dir):
            full = os.path.join(self.dir, p)
            if full not in (good, newer):
                os.unlink(full)
        with open(newer, 'rb') as f:
            data = f.read()
        corrupt = bytearray(data)
        corrupt[len(data) // 2] ^= 0x10
        with open(newer, 'wb') as f:
            f.write(corrupt)
        with open(os.path.join(self.dir, 'checkpoint-99999999999999999998.ckpt'), 'wb') as f:
            f.write(data[:len(data) - 7])  # truncated
        with open(os.path.join(self.dir, 'checkpoint-99999999999999999999.ckpt'), 'wb') as f:
            f.write(b'PK\x03\x04 not ours' * 10)  # foreign
        # A FIFO under the newest name: not a checkpoint (only regular files are listed);
        # opening it blocked the start-up for ever.
        os.mkfifo(os.path.join(self.dir, 'checkpoint-999999999999999999999.ckpt'))
        a.kill()
        self.pg.stop()
        b = self.server()
        b.wait_serving(30)
        whys = [r['why'] for r in logs_with(b, 'checkpoint skipped')]
        self.assertEqual(len(whys), 3, b.tail())
        self.assertIn('bad magic', whys[0])
        self.assertIn('truncated', whys[1])
        self.assertIn('checksum', whys[2])
        self.assertTrue(all(r['level'] == 'warn' for r in logs_with(b, 'checkpoint skipped')))
        src = ru.startup_source(b)
        self.assertEqual((src['source'], src['path']), ('checkpoint', good), b.tail())
        self.same_state(b, ref)  # and it caught up from the older checkpoint's offsets
        self.assertEqual(sku_of(b, V[2]), 'U2-2')
        self.assertEqual(b.stop(), 0)
        self.assertEqual(ref.stop(), 0)


    def test_e_a_damaged_checkpoint_is_skipped_while_kafka_is_down(self):
        a = self.server(SHUTDOWN_DRAIN_MS='0')
        a.wait_serving(30)
        ru.produce(self.km, events(1, V[:4]))
        ru.wait_caught_up(a, self.km)
        path = checkpoint_covering(a)['path']
        self.assertEqual(a.stop(), 0)
        for p in os.listdir(self.dir):  # only the newest, damaged below
            if os.path.join(self.dir, p) != path:
                os.unlink(os.path.join(self.dir, p))
        with open(path, 'r+b') as f:
            f.seek(os.path.getsize(path) // 2)
            byte = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([byte[0] ^ 0x10]))
        self.km.stop()
        b = self.server(SHUTDOWN_DRAIN_MS='0', SHUTDOWN_GRACE_SECONDS='5')
        # The body's checksum fails within milliseconds; the header's check waits for the
        # broker. The damage is said while Kafka is still down, not once it is back.
        skipped = eventually(lambda: logs_with(b, 'checkpoint skipped'), 10,
                             'the damaged checkpoint skipped with Kafka down')
        self.assertIn('checksum', skipped[0]['why'], b.tail())
        self.assertEqual(skipped[0]['level'], 'warn')
        self.assertEqual(ru.condition(b, 'kafka')['level'], 'error')  # and why it waits
        t0 = time.monotonic()
        b.send_signal(signal.SIGTERM)
        self.assertEqual(b.wait_exit(30), 0, b.tail())
        self.assertLess(time.monotonic() - t0, 5.0, 'not within SHUTDOWN_GRACE_SECONDS')
        self.assertFalse(logs_with(b, 'startup source'), b.tail())


class CheckpointSigtermTest(unittest.TestCase):
    """A SIGTERM while a checkpoint file is being loaded (start-up, before anything serves)."""

    ROWS = 500000  # ~50 MB of checkpoint, ~0.6 s to load on the development machine
    PRODUCTS = 1000

    @classmethod
    def setUpClass(cls):
        cls.pg = harness.PgCluster()
        cls.pg.load_fixtures()
        cls.pg.psql(ru.padded_catalog_sql('org_ckpt_big', cls.ROWS, products=cls.PRODUCTS,
                                          vendor_pad=7))

    @classmethod
    def tearDownClass(cls):
        cls.pg.stop()

    def setUp(self):
        self.km = kafka.KafkaMock(partitions=2)
        self.addCleanup(self.km.stop)
        self.dir = tempfile.mkdtemp(prefix='catalogd-ckpt-')
        self.addCleanup(shutil.rmtree, self.dir, True)

    def server(self):
        srv = harness.Catalogd({'DATABASE_URL': self.pg.url(),
                                'KAFKA_BOOTSTRAP_SERVERS': self.km.bootstrap,
                                'CHECKPOINT_DIR': self.dir, 'SHUTDOWN_DRAIN_MS': '0',
                                'SHUTDOWN_GRACE_SECONDS': '5'})
        self.addCleanup(srv.close)
        return srv

    def test_a_sigterm_during_the_checkpoint_load(self):
        a = self.server()
        a.wait_serving(120)
        self.assertEqual(a.stop(timeout=60), 0)  # writes the checkpoint on the way out
        self.assertTrue(logs_with(a, 'checkpoint written'), a.tail())
        # Loaded whole once, for the figure: how long the window is.
        b = self.server()
        b.wait_serving(120)
        src = ru.startup_source(b)
        self.assertEqual(src['source'], 'checkpoint', b.tail())
        load_s = src['load_seconds']
        self.assertEqual(b.stop(timeout=60), 0)
        c = self.server()
        line = '"msg":"checkpoint load starting"'
        harness.wait_until(lambda: line in c.raw_stdout(), 60, interval=0.005,
                           what='the checkpoint load starting')
        t0 = time.monotonic()
        c.send_signal(signal.SIGTERM)
        code = c.wait_exit(30)
        took = time.monotonic() - t0
        ru.note('a load of %.2f s stopped: exit %d %.2f s after SIGTERM' % (load_s, code, took))
        self.assertEqual(code, 0, c.tail())
        self.assertLess(took, 5.0, 'not within SHUTDOWN_GRACE_SECONDS')
        # The load was cut: nothing published, and no other source tried on the way out.
        self.assertTrue(logs_with(c, 'checkpoint load stopped: shutting down'), c.tail())
        for msg in ('snapshot published', 'startup source', 'checkpoint skipped',
                    'warm load starting'):
            self.assertFalse(logs_with(c, msg), '%s: %s' % (msg, c.tail()))


if __name__ == '__main__':
    unittest.main()
