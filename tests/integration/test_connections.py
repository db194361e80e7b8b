#!/usr/bin/python3
"""Connections that rebalance and restarts that fail no call, seen by long-lived clients.

The setup, and why it is honest: a Kubernetes ClusterIP Service is one address; kube-proxy
picks a pod per new TCP connection and never moves a connection once made. Here that is
ServiceProxy, a TCP proxy on one 127.0.0.1 port that sends each new connection to the
next registered backend (round robin), backends being catalogd demo servers on their own
ports. Adding a backend is a pod becoming Ready (the endpoints controller adds it);
removing one is a pod starting to terminate (it leaves the endpoints at once). Clients
use one channel each to the proxy's address with the default pick_first policy, like a
client of the Service: what they never do on their own is reconnect, so whatever moves
them must come from the server (a GOAWAY).

MaxConnectionAgeTest: server A alone, a client calling in a loop, server B added later.
With GRPC_MAX_CONNECTION_AGE_MS set, A ends the client's connection (GOAWAY, then the
grace for calls still running), the client reconnects through the proxy, and B's
/metrics count calls; with it off (the control), B counts none in the same time. No call
fails either way.

RollingRestartTest: clients configured as docs/clients.md says (round_robin over the
replicas' addresses, client-side health checking, no retry policy) call two replicas
while each is restarted in turn (SIGTERM: drain NOT_SERVING, stop, start again): not one
call may fail. See its docstring for why the health checking is part of the contract.

Run:  CATALOGD_BIN=build/catalogd /usr/bin/python3 tests/integration/test_connections.py -v
"""

import json
import os
import signal
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402

import harness  # noqa: E402
from harness import pb  # noqa: E402
import reliability_util as ru  # noqa: E402
from tcp_proxy import TcpProxy  # noqa: E402

DEMO_ORG = 'demo-org'
DEMO_VARIANT = 'd2000000-0000-4000-8000-000000000001'
VALIDATE_OK = 'catalogd_rpc_requests_total{method="ValidateVariant",code="OK"}'


def setUpModule():
    harness.require_binary()


class ServiceProxy(TcpProxy):
    """TcpProxy that balances new connections over registered backends (round robin),
    like a ClusterIP Service; add()/remove() are endpoints changes."""

    def __init__(self, ports):
        self._backends = list(ports)
        self._next = 0
        self.per_backend = {}
        super().__init__(self._backends[0])

    def add(self, port):
        with self._lock:
            self._backends.append(port)

    def remove(self, port):
        with self._lock:
            self._backends.remove(port)

    def _pick_target(self):
        with self._lock:
            port = self._backends[self._next % len(self._backends)]
            self._next += 1
            self.per_backend[port] = self.per_backend.get(port, 0) + 1
        return ('127.0.0.1', port)


def demo_server(**env):
    srv = harness.Catalogd(dict({'SYNC_MODE': 'demo'}, **{k: str(v) for k, v in env.items()}))
    srv.wait_serving(30)
    return srv


def validate_ok(srv):
    """ValidateVariant calls srv answered OK (its /metrics)."""
    return ru.metrics(srv).get(VALIDATE_OK, 0.0)


class Callers:
    """n threads, each with its own channel to target (pick_first, no retry policy),
    calling ValidateVariant until stop(); every call is recorded as
    (t_start, t_end, code, details, answer_ok)."""

    def __init__(self, target, n, pause=0.0, options=()):
        self.records, self.lock = [], threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(target, pause, options),
                                          daemon=True)
                         for _ in range(n)]
        for t in self._threads:
            t.start()

    def _run(self, target, pause, options):
        channel = grpc.insecure_channel(target, options=harness.CHANNEL_OPTIONS + list(options))
        stub = harness.pb_grpc.CatalogServiceStub(channel)
        req = pb.ValidateVariantRequest(organization_id=DEMO_ORG, variant_id=DEMO_VARIANT)
        try:
            while not self._stop.is_set():
                t0 = time.monotonic()
                try:
                    r = stub.ValidateVariant(req, timeout=harness.RPC_TIMEOUT)
                    rec = (t0, time.monotonic(), grpc.StatusCode.OK, None,
                           r.exists and r.is_active)
                except grpc.RpcError as e:
                    rec = (t0, time.monotonic(), e.code(), e.details(), None)
                with self.lock:
                    self.records.append(rec)
                if pause:
                    self._stop.wait(pause)
        finally:
            channel.close()

    def count(self):
        with self.lock:
            return len(self.records)

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(harness.RPC_TIMEOUT + 5)
        return self.records

    def failures(self):
        with self.lock:
            return [r for r in self.records if r[2] != grpc.StatusCode.OK or not r[4]]


def show(recs, t_ref, n=8):
    return ['+%.3fs %s %r' % (r[0] - t_ref, getattr(r[2], 'name', r[2]), r[3]) for r in recs[:n]]


class MaxConnectionAgeTest(unittest.TestCase):
    WATCH_S = 5.0  # how long B may wait for its first call

    def run_case(self, age_ms):
        """Starts A behind the proxy, a client, then B; returns (calls B served within
        WATCH_S of joining, the client's records, connections the proxy made)."""
        env = {'GRPC_MAX_CONNECTION_AGE_MS': age_ms, 'GRPC_MAX_CONNECTION_AGE_GRACE_MS': 5000}
        a = demo_server(**env)
        self.addCleanup(a.close)
        proxy = ServiceProxy([a.port])
        self.addCleanup(proxy.close)
        callers = Callers('127.0.0.1:%d' % proxy.port, 1, pause=0.01)
        self.addCleanup(callers.stop)
        harness.wait_until(lambda: callers.count() >= 20, 10, what='20 calls on A')
        b = demo_server(**env)
        self.addCleanup(b.close)
        proxy.add(b.port)
        t0 = time.monotonic()
        try:
            harness.wait_until(lambda: validate_ok(b) > 0, self.WATCH_S, interval=0.2,
                               what='a call on B')
        except TimeoutError:
            pass
        on_b = validate_ok(b)
        time.sleep(0.5)  # calls go on after the move too
        records = callers.stop()
        sys.stderr.write('[age %s ms: %d calls, B served %d, %.1fs after joining; proxy '
                         'connections per backend %r] ' % (age_ms, len(records), on_b,
                                                           time.monotonic() - t0,
                                                           proxy.per_backend))
        self.assertEqual(callers.failures()[:5], [], 'calls failed')
        return on_b, records, proxy

    def test_aged_connection_moves_the_client_to_a_server_added_later(self):
        on_b, records, proxy = self.run_case(1000)
        self.assertGreater(on_b, 0, 'a client connected before B started never reached B '
                           'although A closes connections after 1 s')
        self.assertGreater(proxy.accepted, 1)

    def test_control_without_max_age_the_client_stays_on_the_first_server(self):
        on_b, records, proxy = self.run_case(0)
        self.assertEqual(on_b, 0, 'without a maximum connection age the client reached B '
                         '(so the other test proves nothing)')
        self.assertEqual(proxy.accepted, 1)


class RollingRestartTest(unittest.TestCase):
    """A rolling restart under load fails no call, for clients configured as
    docs/clients.md says: round_robin over every replica's address (the headless
    Service) with client-side health checking (healthCheckConfig), no retry policy.

    The replicas keep their ports across a restart, and the client's target names both
    (ipv4:127.0.0.1:P1,127.0.0.1:P2): a headless Service's DNS name resolving to the pods.
    On SIGTERM a replica turns NOT_SERVING and keeps serving for SHUTDOWN_DRAIN_MS; the
    clients' health watch takes it out of their rotation, so no call is on its way when
    the gRPC core's shutdown begins (the core fails, CANCELLED, every call that arrives
    after that moment, and its C API has no way to send the GOAWAY earlier; through a
    ClusterIP address, a pick_first client keeps sending until the GOAWAY: this test
    without healthCheckConfig fails: CANCELLED calls at the end of each drain, the
    issue's symptom, and UNAVAILABLE from a replica still loading)."""

    DRAIN_MS = 1500
    GRACE_S = 5
    CLIENTS = int(os.environ.get('ROLLING_CLIENTS', '6'))
    ROUNDS = int(os.environ.get('ROLLING_ROUNDS', '1'))  # each restarts both replicas

    def replica(self, port):
        srv = harness.Catalogd({'SYNC_MODE': 'demo', 'SHUTDOWN_DRAIN_MS': self.DRAIN_MS,
                                'SHUTDOWN_GRACE_SECONDS': self.GRACE_S}, start=False)
        srv.port = port
        srv.env['GRPC_PORT'] = str(port)
        self.addCleanup(srv.close)
        return srv.start().wait_serving(30)

    def rollout(self, service_config):
        """Restarts each replica in turn ROUNDS times under load; returns (records, failed)."""
        ports = [harness.free_port(), harness.free_port()]
        live = {p: self.replica(p) for p in ports}
        target = 'ipv4:' + ','.join('127.0.0.1:%d' % p for p in ports)
        callers = Callers(target, self.CLIENTS,
                          options=[('grpc.service_config', json.dumps(service_config))])
        self.addCleanup(callers.stop)
        t_ref = time.monotonic()
        harness.wait_until(lambda: callers.count() >= 200, 15, what='200 calls')
        for _ in range(self.ROUNDS):
            for p in ports:  # a rolling update: one replica at a time
                old = live[p]
                old.send_signal(signal.SIGTERM)
                self.assertEqual(old.wait_exit(self.DRAIN_MS / 1000 + self.GRACE_S + 10), 0,
                                 old.tail())
                live[p] = self.replica(p)
                n0 = callers.count()
                # The clients find the new replica again (their reconnect backoff runs
                # on its own clock: on a loaded box it takes seconds) before the next
                # one is restarted, as a rollout waits for readiness.
                harness.wait_until(lambda: validate_ok(live[p]) > 0, 30,
                                   what='calls reaching the restarted replica')
                harness.wait_until(lambda: callers.count() >= n0 + 200, 15,
                                   what='calls after the restart')
        records = callers.stop()
        bad = callers.failures()
        sys.stderr.write('[%d calls, %d failed: %s] ' % (len(records), len(bad),
                                                         show(bad, t_ref, 3)))
        self.assertTrue(all(validate_ok(s) > 0 for s in live.values()),
                        'a restarted replica served nothing')
        return records, bad, t_ref

    def test_rolling_restart_under_load_fails_no_call(self):
        records, bad, t_ref = self.rollout({
            'loadBalancingConfig': [{'round_robin': {}}],
            'healthCheckConfig': {'serviceName': 'catalog.CatalogService'}})
        self.assertEqual(show(bad, t_ref), [], '%d of %d calls failed during a rolling '
                         'restart' % (len(bad), len(records)))


if __name__ == '__main__':
    unittest.main()
