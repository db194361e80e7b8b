#!/usr/bin/python3
"""`catalogd --probe`, the container's HEALTHCHECK: one gRPC health Check of the local server,
configured by the server's own environment. Exit 0 only while the server says SERVING; 1 when
it is loading or refusing (NOT_SERVING), not listening, or frozen (bounded by
PROBE_TIMEOUT_MS); it works over TLS and mutual TLS."""
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

import harness
import kafka
import test_tls


def probe(env, timeout=20, **extra):
    """Runs `catalogd --probe` with the server's environment; (exit code, stdout, seconds)."""
    env = dict(env)
    env.update({k: str(v) for k, v in extra.items()})
    t0 = time.monotonic()
    r = subprocess.run([harness.CATALOGD_BIN, '--probe'], env=env, capture_output=True,
                       text=True, timeout=timeout)
    return r.returncode, r.stdout.strip(), time.monotonic() - t0


class ProbeTest(unittest.TestCase):
    def test_serving_demo_is_healthy(self):
        srv = harness.Catalogd({'SYNC_MODE': 'demo'})
        self.addCleanup(srv.close)
        srv.wait_serving(30)
        rc, out, _ = probe(srv.env)
        self.assertEqual((rc, out.split()[0]), (0, 'SERVING'), out)

    def test_not_serving_and_not_listening_are_unhealthy(self):
        km = kafka.KafkaMock(partitions=1)  # an empty topic: replay refuses to serve it
        self.addCleanup(km.stop)
        srv = harness.Catalogd({'KAFKA_BOOTSTRAP_SERVERS': km.bootstrap})
        self.addCleanup(srv.close)
        srv.wait_listening(20)
        rc, out, _ = probe(srv.env)
        self.assertEqual((rc, out.split()[0]), (1, 'NOT_SERVING'), out)
        env = dict(srv.env)
        self.assertEqual(srv.stop(), 0)
        rc, out, _ = probe(env)
        self.assertEqual((rc, out.split()[0]), (1, 'UNREACHABLE'), out)

    def test_a_frozen_server_fails_within_the_timeout(self):
        srv = harness.Catalogd({'SYNC_MODE': 'demo'})
        self.addCleanup(srv.close)
        srv.wait_serving(30)
        os.kill(srv.pid, signal.SIGSTOP)
        try:
            rc, out, took = probe(srv.env, PROBE_TIMEOUT_MS=1000)
        finally:
            os.kill(srv.pid, signal.SIGCONT)
        self.assertEqual(rc, 1, out)
        self.assertLess(took, 1.0 + 3.0, out)  # the timeout, plus the queue's second and slack
        self.assertEqual(probe(srv.env)[0], 0)

    def test_needs_no_catalog_source_and_never_exits_2(self):
        """Docker reserves exit code 2 in a HEALTHCHECK: a bad setting is unhealthy (1),
        named. The probe reads only the transport's settings: run from a plain shell next
        to a server, it needs no DATABASE_URL or Kafka."""
        srv = harness.Catalogd({'SYNC_MODE': 'demo'})
        self.addCleanup(srv.close)
        srv.wait_serving(30)
        plain = {k: v for k, v in srv.env.items() if k != 'SYNC_MODE'}
        rc, out, _ = probe(plain)
        self.assertEqual((rc, out.split()[0]), (0, 'SERVING'), out)
        for name, value in (('GRPC_PORT', 'abc'), ('PROBE_TIMEOUT_MS', '5s'),
                            ('PROBE_TIMEOUT_MS', '0'), ('GRPC_PROBE_CERT_FILE', '/x.crt')):
            rc, out, _ = probe(plain, **{name: value})
            self.assertEqual(rc, 1, (name, value, out))
            self.assertIn('UNHEALTHY bad configuration', out)
            self.assertIn(name, out)


class ProbeTlsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix='catalogd-probe-tls-')
        for ca in ('ca1', 'ca2'):
            test_tls.make_ca(cls.dir, ca)
        test_tls.make_cert(cls.dir, 'server1', 'ca1', True)
        test_tls.make_cert(cls.dir, 'stranger', 'ca2', False)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.dir, name)

    def serve(self, client_ca=None):
        env = {'SYNC_MODE': 'demo', 'GRPC_TLS_CERT_FILE': self.path('server1.crt'),
               'GRPC_TLS_KEY_FILE': self.path('server1.key')}
        if client_ca:
            env['GRPC_TLS_CLIENT_CA_FILE'] = self.path(client_ca + '.crt')
        srv = harness.Catalogd(env)
        self.addCleanup(srv.close)
        srv.wait_listening(20)
        harness.wait_until(lambda: probe(srv.env)[0] == 0 or not srv.alive(), 30,
                           what='probe over TLS')
        return srv

    def test_tls(self):
        srv = self.serve()
        rc, out, _ = probe(srv.env)
        self.assertEqual((rc, out.split()[0]), (0, 'SERVING'), out)

    def test_mutual_tls_with_the_servers_pair(self):
        self.serve(client_ca='ca1')  # the client CA signed the server's own certificate

    def test_mutual_tls_needs_a_trusted_client_pair(self):
        env = {'SYNC_MODE': 'demo', 'GRPC_TLS_CERT_FILE': self.path('server1.crt'),
               'GRPC_TLS_KEY_FILE': self.path('server1.key'),
               'GRPC_TLS_CLIENT_CA_FILE': self.path('ca2.crt')}
        srv = harness.Catalogd(env)
        self.addCleanup(srv.close)
        srv.wait_listening(20)
        # The server's own pair is not signed by ca2: refused by the server.
        rc, out, _ = probe(srv.env)
        self.assertEqual((rc, out.split()[0]), (1, 'UNREACHABLE'), out)
        # A pair that ca2 signed, named for the probe: accepted.
        harness.wait_until(lambda: probe(srv.env, GRPC_PROBE_CERT_FILE=self.path('stranger.crt'),
                                         GRPC_PROBE_KEY_FILE=self.path('stranger.key'))[0] == 0,
                           30, what='probe with its own client pair')


class DockerfileTest(unittest.TestCase):
    """The image's metadata as docker reads it (no docker here: the Dockerfile's text)."""

    def setUp(self):
        root = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..')
        with open(os.path.join(root, 'Dockerfile')) as f:
            self.text = f.read().replace('\\\n', ' ')
        with open(os.path.join(root, 'CMakeLists.txt')) as f:
            self.cmake = f.read()

    def test_healthcheck_is_the_probe(self):
        hc = [ln for ln in self.text.splitlines() if ln.startswith('HEALTHCHECK')]
        self.assertEqual(len(hc), 1, hc)
        self.assertIn('"/usr/local/bin/catalogd", "--probe"', hc[0])

    def test_oci_labels_and_pinnable_bases(self):
        for key in ('version', 'revision', 'source', 'licenses'):
            self.assertIn('org.opencontainers.image.%s=' % key, self.text)
        froms = [ln.split()[1] for ln in self.text.splitlines() if ln.startswith('FROM ')]
        self.assertEqual(froms, ['${BUILD_IMAGE}', '${RUNTIME_IMAGE}'])
        version = re.search(r'project\(catalogd VERSION (\S+)', self.cmake).group(1)
        self.assertIn('ARG CATALOGD_VERSION=%s\n' % version, self.text)


if __name__ == '__main__':
    unittest.main()
