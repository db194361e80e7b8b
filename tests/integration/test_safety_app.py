#!/usr/bin/python3
"""Production safety of the application shell (issue 11): what an operator sees when
catalogd starts, is probed, logs and is looked at with ps.

  ConfigRefusalTest     no source configured -> exit 2 naming what to set (#6); an empty
                        KAFKA_TOPIC and ACCESS_LOG_SAMPLE=nan refused at start (#17)
  MakeRunTest           `make run` asks for the demo only when no source is set (#6)
  Ipv6ListenTest        GRPC_LISTEN_ADDRESS=::1 and [::1] serve on the IPv6 loopback (#17),
                        ADMIN_LISTEN_ADDRESS binds the admin port (#14)
  AdminSlowClientsTest  trickling and idle connections never starve /healthz, /readyz (#14)
  LogJsonTest           every stdout line is JSON whatever bytes a client sends (#17)
  VersionTest           --version, build info and process metrics
  ProcessNameTest       the process and its threads are named catalogd after the re-exec

Run:  CATALOGD_BIN=build/catalogd /usr/bin/python3 tests/integration/test_safety_app.py -v
"""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402

import harness  # noqa: E402
from harness import SERVING, health_pb2, health_pb2_grpc  # noqa: E402


def setUpModule():
    harness.require_binary()


def start_and_wait_exit(env, timeout=15):
    """Starts catalogd with env; returns (exit code, the server) once it has exited."""
    srv = harness.Catalogd(env)
    code = srv.wait_exit(timeout)
    return code, srv


def http_get(host, port, path, timeout):
    """(status, body) of GET http://host:port/path; raises OSError on a timeout."""
    h = '[%s]' % host if ':' in host else host
    try:
        with urllib.request.urlopen('http://%s:%d%s' % (h, port, path), timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def bad_config_line(srv):
    """The error text of the 'bad configuration' log line (AssertionError if none)."""
    for rec in srv.logs():
        if rec.get('msg') == 'bad configuration':
            return rec.get('error', '')
    raise AssertionError('no "bad configuration" line\n%s' % srv.tail())


# ---------------------------------------------------------------------------
class ConfigRefusalTest(unittest.TestCase):
    """#6: the demo is opt-in; #17: values that used to be accepted and misbehave later."""

    def test_no_source_exits_2_naming_the_variables(self):
        code, srv = start_and_wait_exit({})
        self.assertEqual(code, 2, srv.tail())
        err = bad_config_line(srv)
        for name in ('DATABASE_URL', 'KAFKA_BOOTSTRAP_SERVERS', 'SYNC_MODE=demo'):
            self.assertIn(name, err)
        self.assertEqual(srv.bad_log_lines(), [])

    def test_an_empty_database_url_is_no_source(self):
        # A Secret that failed to mount: the variable exists but is empty.
        code, srv = start_and_wait_exit({'DATABASE_URL': ''})
        self.assertEqual(code, 2, srv.tail())
        self.assertIn('DATABASE_URL', bad_config_line(srv))

    def test_sync_mode_demo_serves(self):
        srv = harness.Catalogd({'SYNC_MODE': 'demo'})
        self.addCleanup(srv.stop)
        srv.wait_serving(15)

    def test_access_log_sample_nan_refused(self):
        for value in ('nan', 'NaN', '-nan', 'inf', '1.5'):
            with self.subTest(value=value):
                code, srv = start_and_wait_exit({'SYNC_MODE': 'demo',
                                                 'ACCESS_LOG_SAMPLE': value})
                self.assertEqual(code, 2, srv.tail())
                self.assertIn('ACCESS_LOG_SAMPLE', bad_config_line(srv))

    def test_empty_kafka_topic_refused_at_start(self):
        # It used to start and retry forever against a topic named "".
        code, srv = start_and_wait_exit({'KAFKA_BOOTSTRAP_SERVERS': '127.0.0.1:1',
                                         'KAFKA_TOPIC': ''})
        self.assertEqual(code, 2, srv.tail())
        self.assertIn('KAFKA_TOPIC', bad_config_line(srv))


# ---------------------------------------------------------------------------
class MakeRunTest(unittest.TestCase):
    """`make run` sets SYNC_MODE=demo only when no source is configured (the binary never
    falls back to the demo on its own)."""

    def run_make(self, extra):
        build = os.path.dirname(os.path.abspath(harness.CATALOGD_BIN))
        port, admin = harness.free_port(), harness.free_port()
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(harness._SERVER_ENV_PREFIXES) or k in harness._KEEP_ENV}
        env.update({'GRPC_PORT': str(port), 'ADMIN_PORT': str(admin),
                    'GRPC_LISTEN_ADDRESS': '127.0.0.1', 'PG_RETRY_MAX_SECONDS': '1'})
        env.update(extra)
        out = tempfile.TemporaryFile()
        self.addCleanup(out.close)
        # -o build: the binary under test is already built; `make run` must not rebuild.
        proc = subprocess.Popen(['make', '-s', '-o', 'build', 'run', 'BUILD=' + build],
                                cwd=harness.REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)

        def stop():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(5)
        self.addCleanup(stop)

        def listening():
            out.seek(0)
            for line in out.read().decode('utf-8', 'replace').splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if rec.get('msg') == 'listening':
                    return rec
            return proc.poll() is not None and {'exited': proc.returncode}
        rec = harness.wait_until(listening, 30, what='make run: "listening"')
        return rec, port

    def test_make_run_without_a_source_serves_the_demo(self):
        rec, port = self.run_make({})
        self.assertEqual(rec.get('sync_mode'), 'demo', rec)
        self.assertTrue(rec.get('reflection'), rec)
        ch = grpc.insecure_channel('127.0.0.1:%d' % port, options=harness.CHANNEL_OPTIONS)
        self.addCleanup(ch.close)
        stub = health_pb2_grpc.HealthStub(ch)
        harness.wait_until(lambda: self._serving(stub), 15, what='demo SERVING')

    def test_make_run_with_a_source_does_not_force_the_demo(self):
        rec, _ = self.run_make({'DATABASE_URL': 'postgresql://nobody@127.0.0.1:1/none'})
        self.assertEqual(rec.get('sync_mode'), 'warm', rec)
        rec, _ = self.run_make({'KAFKA_BOOTSTRAP_SERVERS': '127.0.0.1:1'})
        self.assertEqual(rec.get('sync_mode'), 'replay', rec)

    @staticmethod
    def _serving(stub):
        try:
            return stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == SERVING
        except grpc.RpcError:
            return False


# ---------------------------------------------------------------------------
def ipv6_health(port, timeout=1.0):
    ch = grpc.insecure_channel('ipv6:[::1]:%d' % port, options=harness.CHANNEL_OPTIONS)
    try:
        return health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(),
                                                    timeout=timeout).status
    finally:
        ch.close()


def ipv6_listening(port):
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        try:
            s.connect(('::1', port))
            return True
        except OSError:
            return False


class Ipv6ListenTest(unittest.TestCase):
    """#17: an IPv6 literal with or without brackets; #14: admin binds ADMIN_LISTEN_ADDRESS."""

    def serve(self, env):
        srv = harness.Catalogd(dict({'SYNC_MODE': 'demo'}, **env))
        self.addCleanup(srv.stop)
        harness.wait_until(lambda: ipv6_listening(srv.port) or not srv.alive(), 15,
                           what='gRPC on [::1]')
        self.assertTrue(srv.alive(), srv.tail())
        return srv

    def assert_grpc_on_ipv6_loopback(self, srv):
        def serving():
            try:
                return ipv6_health(srv.port) == SERVING
            except grpc.RpcError:
                return False
        harness.wait_until(serving, 15, what='SERVING on [::1]')
        self.assertFalse(harness.port_is_listening(srv.port), 'also listening on 127.0.0.1')

    def test_grpc_plain_ipv6_literal(self):
        self.assert_grpc_on_ipv6_loopback(self.serve({'GRPC_LISTEN_ADDRESS': '::1'}))

    def test_grpc_bracketed_ipv6_literal(self):
        self.assert_grpc_on_ipv6_loopback(self.serve({'GRPC_LISTEN_ADDRESS': '[::1]'}))

    def test_admin_listen_address(self):
        for addr in ('::1', '[::1]'):
            with self.subTest(addr=addr):
                srv = self.serve({'GRPC_LISTEN_ADDRESS': '::1', 'ADMIN_LISTEN_ADDRESS': addr})
                harness.wait_until(lambda: ipv6_listening(srv.admin_port), 10,
                                   what='admin on [::1]')
                self.assertEqual(http_get('::1', srv.admin_port, '/healthz', 5)[0], 200)
                self.assertFalse(harness.port_is_listening(srv.admin_port),
                                 'admin also listening on 127.0.0.1')
                srv.stop()
        srv = harness.Catalogd({'SYNC_MODE': 'demo', 'ADMIN_LISTEN_ADDRESS': '127.0.0.1'})
        self.addCleanup(srv.stop)
        srv.wait_serving(15)
        self.assertEqual(http_get('127.0.0.1', srv.admin_port, '/healthz', 5)[0], 200)
        self.assertFalse(ipv6_listening(srv.admin_port), 'admin also listening on [::1]')

    def test_admin_bad_listen_address_refused(self):
        code, srv = start_and_wait_exit({'SYNC_MODE': 'demo', 'ADMIN_LISTEN_ADDRESS': 'nohost'})
        self.assertEqual(code, 2, srv.tail())
        self.assertIn('ADMIN_LISTEN_ADDRESS', bad_config_line(srv))


if __name__ == '__main__':
    unittest.main()
