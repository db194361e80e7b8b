#!/usr/bin/python3
"""Every metric and label the dashboard and the alerts use exists in a real scrape.

The Grafana dashboard (helm/catalogd/dashboards/catalogd.json: panel queries,
legend templates, variable queries) and the alert rules
(helm/catalogd/alerts/catalogd.rules.yaml: expressions, $labels in annotations)
name metrics and labels; a name catalogd does not export shows an empty panel
or an alert that can never fire, and nothing else says so. This test scrapes
two real catalogd processes, one warm-loaded from PostgreSQL and one replaying
the mock Kafka broker with a dead-letter topic, so the loader's and the
consumer's metrics are both present, and checks each name against them.
Names other exporters provide (Prometheus's `up`, kube-state-metrics) and the
labels the scrape adds (namespace, pod, ...) are listed below as external.
It also watches catalogd_ready go from 0 (replay refused: empty topic) to 1.
"""
import json
import os
import re
import unittest

import harness
import kafka
import reliability_util as ru

try:
    import yaml
except ImportError:  # Debian: python3-yaml
    yaml = None

DASHBOARD = os.path.join(harness.REPO, 'helm', 'catalogd', 'dashboards', 'catalogd.json')
RULES = os.path.join(harness.REPO, 'helm', 'catalogd', 'alerts', 'catalogd.rules.yaml')
ORG = 'a1000000-0000-4000-8000-00000000d001'
PID = 'a1000000-0000-4000-8000-00000000d002'
VID = 'a1000000-0000-4000-8000-00000000d003'

# Metrics from other exporters, with the labels the rules use on them.
EXTERNAL_METRICS = {
    'up': {'namespace', 'pod', 'job', 'instance'},                         # Prometheus
    'kube_pod_container_status_restarts_total': {'namespace', 'pod', 'container'},  # k-s-m
}
# Labels the scrape adds to every catalogd series (ServiceMonitor, or an
# annotation-based scrape config): not in /metrics itself.
TARGET_LABELS = {'namespace', 'pod', 'job', 'instance'}

FUNCS_AND_KEYWORDS = {
    'sum', 'min', 'max', 'avg', 'count', 'stddev', 'stdvar', 'topk', 'bottomk', 'quantile',
    'count_values', 'group', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right',
    'and', 'or', 'unless', 'bool', 'offset', 'rate', 'irate', 'increase', 'delta', 'deriv',
    'histogram_quantile', 'clamp_min', 'clamp_max', 'time', 'vector', 'scalar', 'abs',
    'min_over_time', 'max_over_time', 'avg_over_time', 'sum_over_time', 'absent',
    'label_values', 'changes', 'resets', 'inf', 'nan',
}


def parse_promql(expr):
    """(metrics, labels) named in a PromQL expression: metric names, and label
    names used in matchers and in by/without/on/ignoring/group_* lists."""
    e = re.sub(r'#[^\n]*', ' ', expr)                       # comments
    labels = set()
    for inside in re.findall(r'\{([^}]*)\}', e):
        labels |= set(re.findall(r'([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)\s*"', inside))
    e = re.sub(r'\{[^}]*\}', ' ', e)                        # matchers
    for words in re.findall(r'\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)',
                            e):
        labels |= {w.strip() for w in words.split(',') if w.strip()}
    e = re.sub(r'\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)', ' ', e)
    e = re.sub(r'"(?:[^"\\]|\\.)*"', ' ', e)               # strings
    e = re.sub(r'\[[^\]]*\]', ' ', e)                       # ranges
    e = re.sub(r'\$\w+', ' ', e)                            # Grafana variables
    metrics = set()
    for m in re.finditer(r'(?<![\w.])([A-Za-z_:][A-Za-z0-9_:]*)\s*(\()?', e):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in FUNCS_AND_KEYWORDS or re.fullmatch(r'\d.*', word):
            continue
        metrics.add(word)
    return metrics, labels


def dashboard_uses():
    """[(where, expr, legend labels)] of the dashboard."""
    with open(DASHBOARD) as f:
        dash = json.load(f)
    out = []
    for p in dash.get('panels') or []:
        for t in p.get('targets') or []:
            legend = set(re.findall(r'\{\{\s*(\w+)\s*\}\}', t.get('legendFormat', '')))
            out.append(('panel %r' % p.get('title'), t.get('expr', ''), legend))
    for v in (dash.get('templating') or {}).get('list') or []:
        q = v.get('query')
        q = q.get('query') if isinstance(q, dict) else q
        m = re.fullmatch(r'\s*label_values\((.*),\s*(\w+)\)\s*', q or '')
        if m:
            out.append(('variable $%s' % v['name'], m.group(1), {m.group(2)}))
    return out


def rule_uses():
    """[(where, expr, annotation labels)] of the alert rules."""
    with open(RULES) as f:
        rules = yaml.safe_load(f)
    out = []
    for g in rules['groups']:
        for r in g['rules']:
            text = ' '.join(str(v) for v in (r.get('annotations') or {}).values())
            out.append(('alert %s' % r['alert'], r['expr'],
                        set(re.findall(r'\$labels\.(\w+)', text))))
    return out


def scrape_names(srv):
    """{metric name: label names} of one /metrics scrape."""
    out = {}
    for key in ru.metrics(srv):
        name, _, rest = key.partition('{')
        out.setdefault(name, set()).update(re.findall(r'(\w+)="', rest))
    return out


def metric_now(srv, name):
    """The sample's value, or None while the admin port is not up yet."""
    try:
        return ru.metrics(srv).get(name)
    except OSError:
        return None


def merge(a, b):
    out = {k: set(v) for k, v in a.items()}
    for k, v in b.items():
        out.setdefault(k, set()).update(v)
    return out


def problems(uses, scraped):
    """Names used but absent from the scrape (and not external)."""
    known = merge(scraped, EXTERNAL_METRICS)
    out = []
    for where, expr, shown in uses:
        metrics, labels = parse_promql(expr)
        if not metrics:
            out.append('%s: no metric found in %r' % (where, expr))
        for m in sorted(metrics - set(known)):
            out.append('%s: metric %s is not in a real scrape' % (where, m))
        have = set(TARGET_LABELS)
        for m in metrics & set(known):
            have |= known[m]
        for lab in sorted((labels | shown) - have):
            out.append('%s: label %r is on none of %s' % (where, lab, sorted(metrics)))
    return out


@unittest.skipIf(yaml is None, 'python3-yaml is missing')
class DashboardAndAlertNamesTest(unittest.TestCase):
    scraped = None

    @classmethod
    def setUpClass(cls):
        harness.require_binary()
        warm = cls.warm_scrape()
        feed = cls.kafka_scrape()
        cls.scraped = merge(warm, feed)

    @classmethod
    def warm_scrape(cls):
        with harness.PgCluster() as pg:
            pg.load_fixtures()
            srv = harness.Catalogd({'DATABASE_URL': pg.url()})
            try:
                srv.wait_serving(60)
                names = scrape_names(srv)
                assert ru.metric(srv, 'catalogd_warm_load_rows_total', 0) > 0, \
                    'the warm load read rows'
            finally:
                srv.close()
        return names

    @classmethod
    def kafka_scrape(cls):
        km = kafka.KafkaMock(partitions=3)
        try:
            km.command('create catalog.dlq 1')
            srv = harness.Catalogd({'KAFKA_BOOTSTRAP_SERVERS': km.bootstrap,
                                    'KAFKA_DLQ_TOPIC': 'catalog.dlq',
                                    'SYNC_MAX_BATCH_MS': '5'})
            try:
                # An empty topic: replay refuses to serve, and says so.
                ru.eventually(lambda: metric_now(srv, 'catalogd_ready') == 0 or None, 30,
                              'catalogd_ready 0 while the replay is refused')
                cls.ready_before = ru.metric(srv, 'catalogd_ready')
                # The refusal is a condition: catalogd_condition{name,level} is shown.
                def with_condition():
                    names = scrape_names(srv)
                    return names if 'level' in names.get('catalogd_condition', ()) else None
                refused = ru.eventually(with_condition, 30,
                                        'the replay refusal as catalogd_condition', interval=0.2)
                ru.produce(km, [(0,) + kafka.product(ORG, PID, 1),
                                (1,) + kafka.variant(ORG, VID, PID, 1),
                                (2, kafka.key(ORG, 'variant', VID), '{not json')])
                srv.wait_serving(30)
                ru.eventually(lambda: ru.metric(
                    srv, 'catalogd_dead_letters_total{result="delivered"}', 0) == 1 or None, 20, 'the poison event in the dead-letter topic')
                cls.ready_after = ru.metric(srv, 'catalogd_ready')
                names = merge(refused, scrape_names(srv))
            finally:
                srv.close()
        finally:
            km.stop()
        return names

    def test_catalogd_ready_follows_readiness(self):
        self.assertEqual((self.ready_before, self.ready_after), (0, 1),
                         'catalogd_ready: 0 while not serving, 1 once serving')

    def test_both_scrapes_hold_the_loader_and_the_consumer(self):
        for name in ('catalogd_warm_load_rows_total', 'catalogd_consumer_lag_messages',
                     'catalogd_last_event_age_seconds', 'catalogd_dead_letters_total'):
            self.assertIn(name, self.scraped)

    def test_dashboard_names_exist(self):
        uses = dashboard_uses()
        self.assertGreater(len(uses), 10)
        self.assertEqual(problems(uses, self.scraped), [])

    def test_alert_names_exist(self):
        uses = rule_uses()
        self.assertGreater(len(uses), 5)
        self.assertEqual(problems(uses, self.scraped), [])

    def test_the_check_catches_a_wrong_name(self):
        # The checker itself: a wrong metric, a wrong label, a wrong legend.
        bad = [('t', 'max by (table) (catalogd_warm_load_rows_total)', set()),
               ('t', 'sum(rate(catalogd_events_totl[5m]))', set()),
               ('t', 'catalogd_snapshot_entities{kind="variant"}', set()),
               ('t', 'max by (pod) (catalogd_snapshot_version)', {'table'})]
        self.assertEqual(len(problems(bad, self.scraped)), 4, problems(bad, self.scraped))


if __name__ == '__main__':
    unittest.main()
