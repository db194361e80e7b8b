#!/usr/bin/python3
"""Defects found by attacking catalogd as a hostile client and as an operator (the breaker
review: freshness headers, parked calls, checkpoints, peers, configuration).

  InvalidRequestNeverWaitsTest  (demo catalog: partition 0 holds about 20 events)
    test_a  an invalid request (a variant id that is not a UUID, an empty organization,
            more than MAX_BATCH_IDS ids) with an x-catalog-min-position the replica has not
            reached is INVALID_ARGUMENT at once, naming the field, and takes no place
            under PARK_MAX_CALLS (was: parked, then UNAVAILABLE after MAX_WAIT_MS, which
            the status table says to retry: a request that can never succeed was retried
            and held a place that a valid caller was then refused).
    test_b  a valid request with the same header still waits, and fails UNAVAILABLE
            after MAX_WAIT_MS naming the position reached (the fix did not stop waiting).
  CheckpointPruneTest  (mock broker over TCP, CHECKPOINT_KEEP=1)
    test_a  a regular file under a checkpoint's name that sorts newer than any write (a
            damaged file, or one written by a node whose clock ran ahead) never makes the
            replica delete the checkpoint it has just written: after `checkpoint written`
            that file is on disk, and a restart starts from it (`startup source`
            checkpoint) instead of replaying the topic (was: pruning kept the newest
            names, so the junk file took the only place and every new checkpoint was
            deleted right after `checkpoint written` was logged).


  PeerTest
    test_a  BOOTSTRAP_PEERS holding a URL (`http://peer-0:9090`), a path or a `;` separator
            is `bad configuration`, exit 2 (was: accepted, then "bootstrap peer not
            resolved" at start, a line the runbook says to ignore for a first replica).
    test_b  a peer that accepts the connection and never answers is given up after
            BOOTSTRAP_PEER_TIMEOUT_MS and named so (was: "connection closed before the
            response head", although the peer never closed it); the replica replays.
    test_c  CHECKPOINT_DIR naming a FIFO or a regular file is `not a directory`, exit 2
            (was: "not a writable directory (Permission denied)" for a FIFO).
Real parts: the binary, the mock broker over TCP, Python grpcio.
Run: /usr/bin/python3 tests/integration/test_breaker.py -v   (about 30 s)
"""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import grpc  # noqa: E402  (Debian python3-grpcio)

import harness  # noqa: E402
import kafka  # noqa: E402
import reliability_util as ru  # noqa: E402
from harness import pb  # noqa: E402

DEMO_ORG = 'demo-org'
DEMO_VARIANT = 'd2000000-0000-4000-8000-000000000001'
FAR = [('x-catalog-min-position', '0:999999')]  # never reached by the demo catalog
eventually, logs_with = ru.eventually, ru.logs_with


def setUpModule():
    harness.require_binary()


def failure(fn, req, md, timeout=10):
    """(code, details, seconds) of a call expected to fail."""
    t0 = time.monotonic()
    e = harness.rpc_error(fn, req, timeout=timeout, metadata=tuple(md))
    return e.code(), e.details(), time.monotonic() - t0


class InvalidRequestNeverWaitsTest(unittest.TestCase):
    MAX_WAIT_MS = 1500

    @classmethod
    def setUpClass(cls):
        cls.srv = harness.Catalogd({'SYNC_MODE': 'demo', 'MAX_WAIT_MS': str(cls.MAX_WAIT_MS),
                                    'MAX_BATCH_IDS': '3'})
        cls.srv.wait_serving(30)

    @classmethod
    def tearDownClass(cls):
        code = cls.srv.stop()
        assert code == 0, (code, cls.srv.tail())

    def parked_total(self):
        return ru.metric(self.srv, 'catalogd_parked_calls_total{result="all"}', 0)

    def test_a_invalid_request_is_refused_at_once_without_waiting(self):
        st = self.srv.catalog_stub()
        parked0 = self.parked_total()
        cases = [
            (st.ValidateVariant,
             pb.ValidateVariantRequest(organization_id=DEMO_ORG, variant_id='not-a-uuid'),
             'variant_id'),
            (st.GetProductDetails,
             pb.GetProductDetailsRequest(organization_id='', product_id=DEMO_VARIANT),
             'organization_id'),
            (st.GetVariantsBatch,
             pb.GetVariantsBatchRequest(organization_id=DEMO_ORG, variant_ids=[DEMO_VARIANT] * 4),
             'the limit is 3'),
            (st.ValidateVariantsBatch,
             pb.ValidateVariantsBatchRequest(organization_id=DEMO_ORG,
                                             variant_ids=[DEMO_VARIANT, 'zz']),
             'variant_ids'),
        ]
        for fn, req, field in cases:
            code, details, took = failure(fn, req, FAR)
            self.assertEqual(code, grpc.StatusCode.INVALID_ARGUMENT, (field, details))
            self.assertIn(field, details)
            self.assertLess(took, self.MAX_WAIT_MS / 2000.0,
                            '%s: refused at once, not after MAX_WAIT_MS' % field)
        self.assertEqual(self.parked_total(), parked0, 'no invalid request waited')

    def test_b_valid_request_still_waits(self):
        st = self.srv.catalog_stub()
        parked0 = self.parked_total()
        code, details, took = failure(
            st.ValidateVariant,
            pb.ValidateVariantRequest(organization_id=DEMO_ORG, variant_id=DEMO_VARIANT), FAR)
        self.assertEqual(code, grpc.StatusCode.UNAVAILABLE, details)
        self.assertIn('x-catalog-min-position not reached after', details)
        self.assertIn('partition 0 is at offset', details)
        self.assertGreaterEqual(took, self.MAX_WAIT_MS / 1000.0 - 0.05)
        self.assertEqual(self.parked_total(), parked0 + 1)


FUTURE_NAME = 'checkpoint-09999999999999999999.ckpt'  # sorts after any real write's name


class CheckpointPruneTest(unittest.TestCase):

    def setUp(self):
        self.km = kafka.KafkaMock(partitions=1)
        self.addCleanup(self.km.stop)
        self.dir = tempfile.mkdtemp(prefix='catalogd-breaker-ckpt-')
        self.addCleanup(shutil.rmtree, self.dir, True)
        ru.produce(self.km, [(0,) + kafka.product('org_brk', '44444444-0000-4000-8000-00000000f001', 1)])

    def server(self):
        srv = harness.Catalogd({'KAFKA_BOOTSTRAP_SERVERS': self.km.bootstrap,
                                'CHECKPOINT_DIR': self.dir, 'CHECKPOINT_KEEP': '1',
                                'CHECKPOINT_INTERVAL_SECONDS': '1', 'SHUTDOWN_GRACE_SECONDS': '2'})
        self.addCleanup(srv.close)
        return srv

    def test_a_a_newer_junk_file_never_costs_the_checkpoint_just_written(self):
        with open(os.path.join(self.dir, FUTURE_NAME), 'wb') as f:
            f.write(b'not a checkpoint, but named like the newest one')
        a = self.server()
        a.wait_serving(30)
        written = eventually(lambda: logs_with(a, 'checkpoint written'), 15, 'a checkpoint')
        path = written[0]['path']
        time.sleep(0.5)  # the write's pruning is done right after the log line's rename
        self.assertEqual(a.stop(), 0, a.tail())
        self.assertTrue(os.path.exists(path), 'the checkpoint just written was deleted: %s'
                        % sorted(os.listdir(self.dir)))
        b = self.server()
        b.wait_serving(30)
        src = logs_with(b, 'startup source')
        self.assertEqual(src[0]['source'], 'checkpoint', b.tail())
        skipped = logs_with(b, 'checkpoint skipped')
        self.assertTrue(skipped and FUTURE_NAME in skipped[0]['path'], 'the junk file is loud')
        self.assertEqual(b.stop(), 0, b.tail())


class PeerTest(unittest.TestCase):
    """BOOTSTRAP_PEERS typos and a peer that accepts and then says nothing."""

    def run_config(self, peers):
        env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS='127.0.0.1:1', BOOTSTRAP_PEERS=peers,
                   GRPC_PORT='0', ADMIN_PORT='0')
        try:
            p = subprocess.run([harness.CATALOGD_BIN], env=env, capture_output=True, text=True,
                               timeout=5)
        except subprocess.TimeoutExpired as e:  # it started: the typo was accepted
            return None, e.stdout.decode() if e.stdout else ''
        return p.returncode, p.stdout

    def test_a_a_url_or_a_wrong_separator_is_a_configuration_error(self):
        for peers in ('http://peer-0:9090', 'peer-0:9090;peer-1:9090', 'peer-0:9090/snapshot', ',,', ' , '):
            code, out = self.run_config(peers)
            self.assertEqual(code, 2, (peers, out[-600:]))
            self.assertIn('BOOTSTRAP_PEERS', out)
            self.assertIn('bad configuration', out)

    def test_c_a_checkpoint_dir_that_is_not_a_directory_is_named_so(self):
        d = tempfile.mkdtemp(prefix='brk-notdir-')
        self.addCleanup(shutil.rmtree, d, True)
        fifo, plain = os.path.join(d, 'fifo'), os.path.join(d, 'file')
        os.mkfifo(fifo)
        open(plain, 'w').close()
        for path in (fifo, plain):
            env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS='127.0.0.1:1', CHECKPOINT_DIR=path,
                       GRPC_PORT='0', ADMIN_PORT='0')
            p = subprocess.run([harness.CATALOGD_BIN], env=env, capture_output=True, text=True,
                               timeout=5)
            self.assertEqual(p.returncode, 2, p.stdout[-600:])
            # was: "not a writable directory (Permission denied)" for a FIFO
            self.assertIn('CHECKPOINT_DIR=%s: not a directory' % path, p.stdout)

    def test_b_a_silent_peer_is_named_a_timeout_not_a_closed_connection(self):
        lsock = socket.socket()
        lsock.bind(('127.0.0.1', 0))
        lsock.listen(4)  # accepted by the kernel, never answered
        self.addCleanup(lsock.close)
        km = kafka.KafkaMock(partitions=1)
        self.addCleanup(km.stop)
        ru.produce(km, [(0,) + kafka.product('org_brk', '44444444-0000-4000-8000-00000000f001', 1)])
        srv = harness.Catalogd({'KAFKA_BOOTSTRAP_SERVERS': km.bootstrap,
                                'BOOTSTRAP_PEERS': '127.0.0.1:%d' % lsock.getsockname()[1],
                                'BOOTSTRAP_PEER_TIMEOUT_MS': '1000'})
        self.addCleanup(srv.close)
        srv.wait_serving(30)
        failed = logs_with(srv, 'peer bootstrap failed')
        self.assertTrue(failed, srv.tail())
        self.assertIn('BOOTSTRAP_PEER_TIMEOUT_MS', failed[0]['why'])
        self.assertNotIn('closed', failed[0]['why'])
        self.assertEqual(logs_with(srv, 'startup source')[0]['source'], 'replay')
        self.assertEqual(srv.stop(), 0, srv.tail())


if __name__ == '__main__':
    unittest.main()
