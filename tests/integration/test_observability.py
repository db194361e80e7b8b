#!/usr/bin/python3
"""Operability: /metrics in the Prometheus text format moves with real RPCs and events
(counters, consistent histograms, lag), /healthz and /readyz, JSON logs with start-up
phases and a sampled access log, and no secret (database or Kafka password) in any output.
"""
import json
import re
import unittest
import urllib.error
import urllib.request

import harness
import kafka
from harness import pb

PG_SECRET = 'pg-s3cret-Xy9'
KAFKA_SECRET = 'kafka-s3cret-Qw7'
LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (-?[0-9.e+-]+|\+Inf|NaN)$')


def get(srv, path):
    try:
        with urllib.request.urlopen('http://127.0.0.1:%d%s' % (srv.admin_port, path),
                                    timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def scrape(srv):
    """{(name, labels): value} with the format checked line by line."""
    status, text = get(srv, '/metrics')
    assert status == 200
    samples, typed = {}, set()
    for line in text.splitlines():
        if line.startswith('# TYPE '):
            typed.add(line.split()[2])
            continue
        if line.startswith('#') or not line:
            continue
        m = LINE.match(line)
        assert m, 'not Prometheus text: %r' % line
        name = m.group(1)
        assert name.startswith(('catalogd_', 'process_')), name
        base = re.sub(r'_(bucket|sum|count)$', '', name)
        assert name in typed or base in typed, 'no TYPE for %s' % name
        samples[(name, m.group(2) or '')] = float(m.group(3))
    return samples


def rpc_count(s, method, code):
    return s.get(('catalogd_rpc_requests_total', '{method="%s",code="%s"}' % (method, code)), 0)


class ObservabilityTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = harness.PgCluster()
        cls.pg.load_fixtures()
        cls.kafka = kafka.KafkaMock(partitions=2)
        url = cls.pg.url().replace('postgres@', 'postgres:%s@' % PG_SECRET)
        cls.srv = harness.Catalogd({'DATABASE_URL': url,
                                    'KAFKA_BOOTSTRAP_SERVERS': cls.kafka.bootstrap,
                                    'KAFKA_SASL_USERNAME': 'catalogd',
                                    'KAFKA_SASL_PASSWORD': KAFKA_SECRET,
                                    'ACCESS_LOG_SAMPLE': '1'})
        cls.srv.wait_serving(30)
        cls.variant = cls.pg.psql("SELECT id FROM variants ORDER BY id LIMIT 1").strip()
        cls.org = cls.pg.psql("SELECT organization_id FROM variants WHERE id = '%s'"
                              % cls.variant).strip()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        cls.kafka.stop()
        cls.pg.stop()

    def test_rpc_counters_and_histograms_move(self):
        before = scrape(self.srv)
        stub = self.srv.catalog_stub()
        for _ in range(25):
            stub.ValidateVariant(pb.ValidateVariantRequest(organization_id=self.org,
                                                           variant_id=self.variant), timeout=5)
        for _ in range(3):
            with self.assertRaises(Exception):
                stub.ValidateVariant(pb.ValidateVariantRequest(organization_id='', variant_id='x'),
                                     timeout=5)
        # A call is counted when its reply batch ends, a moment after the client got its
        # answer: wait (bounded) for the counters to reach what the assertions expect.
        def counted():
            s = scrape(self.srv)
            return (rpc_count(s, 'ValidateVariant', 'OK')
                    - rpc_count(before, 'ValidateVariant', 'OK') >= 25
                    and rpc_count(s, 'ValidateVariant', 'INVALID_ARGUMENT')
                    - rpc_count(before, 'ValidateVariant', 'INVALID_ARGUMENT') >= 3)
        harness.wait_until(counted, 10, what='the calls counted')
        after = scrape(self.srv)
        self.assertEqual(rpc_count(after, 'ValidateVariant', 'OK')
                         - rpc_count(before, 'ValidateVariant', 'OK'), 25)
        self.assertEqual(rpc_count(after, 'ValidateVariant', 'INVALID_ARGUMENT')
                         - rpc_count(before, 'ValidateVariant', 'INVALID_ARGUMENT'), 3)
        self.assertGreaterEqual(after[('catalogd_bad_requests_total', '')], 3)
        # Histogram: cumulative buckets, +Inf == _count == all codes, a positive sum.
        lab = 'method="ValidateVariant"'
        buckets = sorted(((float(k[1].split('le="')[1].rstrip('"}').replace('+Inf', 'inf')), v)
                          for k, v in after.items()
                          if k[0] == 'catalogd_rpc_duration_seconds_bucket' and lab in k[1]))
        self.assertGreaterEqual(len(buckets), 10)
        self.assertEqual(buckets[0][0], 5e-05)  # the finest bucket is 50 us
        self.assertTrue(all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:])))
        count = after[('catalogd_rpc_duration_seconds_count', '{%s}' % lab)]
        self.assertEqual(buckets[-1][1], count)
        total = sum(v for k, v in after.items() if k[0] == 'catalogd_rpc_requests_total'
                    and k[1].startswith('{' + lab))
        self.assertEqual(count, total)
        self.assertGreater(after[('catalogd_rpc_duration_seconds_sum', '{%s}' % lab)], 0)

    def test_events_snapshot_and_lag_metrics(self):
        before = scrape(self.srv)
        pid = '11111111-0000-4000-8000-0000000000f0'
        self.kafka.produce([kafka.product('org_obs', pid, 1),
                            kafka.variant('org_obs', '22222222-0000-4000-8000-0000000000f0', pid, 1),
                            kafka.variant('org_obs', '22222222-0000-4000-8000-0000000000f1', pid, 1)])
        key = ('catalogd_events_total', '{type="variant",result="applied"}')
        ver = ('catalogd_snapshot_version', '')
        # Events are counted as applied into the open batch; its snapshot is published
        # up to SYNC_MAX_BATCH_MS later: wait for both.
        harness.wait_until(lambda: (lambda s: s.get(key, 0) >= before.get(key, 0) + 2
                                    and s[ver] > before[ver])(scrape(self.srv)), 15,
                           what='events counted and published')
        after = scrape(self.srv)
        self.assertGreater(after[('catalogd_snapshot_version', '')],
                           before[('catalogd_snapshot_version', '')])
        self.assertGreaterEqual(after[('catalogd_snapshot_entities', '{type="variant"}')], 1)
        lags = [k for k in after if k[0] == 'catalogd_consumer_lag_messages']
        self.assertEqual(len(lags), 2)  # one per partition
        self.assertGreaterEqual(after[('catalogd_last_event_age_seconds', '')], 0)
        self.assertGreater(after[('catalogd_warm_load_rows_total', '')], 0)
        self.assertGreater(after[('catalogd_warm_load_duration_seconds', '')], 0)
        self.assertGreater(after[('process_resident_memory_bytes', '')], 1e6)
        self.assertGreater(after[('catalogd_snapshot_publish_duration_seconds_count', '')], 0)

    def test_liveness_and_readiness(self):
        self.assertEqual(get(self.srv, '/healthz')[0], 200)
        status, body = get(self.srv, '/readyz')
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)['status'], 'serving')
        self.assertEqual(get(self.srv, '/nope')[0], 404)

    def test_logs_are_json_with_phases_access_log_and_no_secret(self):
        stub = self.srv.catalog_stub()
        stub.ValidateVariant(pb.ValidateVariantRequest(organization_id=self.org,
                                                       variant_id=self.variant), timeout=5)
        # The access-log line is written when the reply batch ends, a moment after the
        # client has its answer: wait for this call's line (not any rpc line).
        harness.wait_until(lambda: any(l.get('msg') == 'rpc' and
                                       str(l.get('method')).endswith('/ValidateVariant')
                                       for l in self.srv.logs()), 5,
                           what='access log line')
        logs = self.srv.logs()  # parses every stdout line as JSON (fails otherwise)
        self.assertTrue(all({'ts', 'level', 'msg'} <= set(l) for l in logs))
        phases = {l.get('phase') for l in logs if l.get('msg') == 'startup phase done'}
        self.assertTrue({'grpc', 'ready'} <= phases, phases)
        self.assertTrue(any(l.get('msg') == 'warm load done' and l.get('seconds') is not None
                            for l in logs))
        rpc = [l for l in logs if l.get('msg') == 'rpc']
        self.assertTrue(any(l['method'].endswith('/ValidateVariant') and l['code'] == 0
                            and l['organization_id'] == self.org and 'us' in l for l in rpc))
        for stream in (self.srv.raw_stdout(), self.srv.raw_stderr()):
            self.assertNotIn(PG_SECRET, stream)
            self.assertNotIn(KAFKA_SECRET, stream)
        listening = [l for l in logs if l.get('msg') == 'listening'][0]
        self.assertIn('***', listening['database_url'])


if __name__ == '__main__':
    unittest.main()
