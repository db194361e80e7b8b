#!/usr/bin/python3
"""Kafka helpers for the integration tests: a mock broker in its own process
(tests/tools/kafka-mock-host, librdkafka's mock cluster reached over TCP) and a
producer (tests/tools/kafka-produce), plus builders for change events
(docs/contract/events.md).  Everything is on 127.0.0.1 and stopped at exit.
"""
import json
import os
import subprocess
import threading

import harness

BUILD = os.path.join(harness.REPO, 'build')
MOCK_BIN = os.environ.get('KAFKA_MOCK_HOST_BIN') or os.path.join(BUILD, 'tests', 'tools',
                                                                    'kafka-mock-host')
PRODUCE_BIN = os.environ.get('KAFKA_PRODUCE_BIN') or os.path.join(BUILD, 'tests', 'tools',
                                                                  'kafka-produce')
TOPIC = 'catalog.changes'


class KafkaMock:
    """kafka-mock-host driven through its stdin command protocol."""

    def __init__(self, partitions=3, brokers=1):
        self.proc = subprocess.Popen(
            [MOCK_BIN, '--brokers', str(brokers), '--partitions', str(partitions),
             '--topic', TOPIC], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self._lock = threading.Lock()
        harness._register(self)
        line = self._readline(15)
        if not line.startswith('BOOTSTRAP '):
            raise RuntimeError('mock host did not start: %r' % line)
        self.bootstrap = line.split(' ', 1)[1].strip()

    def _readline(self, timeout):
        out = []
        t = threading.Thread(target=lambda: out.append(self.proc.stdout.readline()))
        t.daemon = True
        t.start()
        t.join(timeout)
        if not out:
            raise RuntimeError('mock host did not answer in %ss' % timeout)
        return out[0]

    def command(self, cmd, timeout=15):
        with self._lock:
            self.proc.stdin.write(cmd + '\n')
            self.proc.stdin.flush()
            ans = self._readline(timeout).strip()
        if not ans.startswith('OK'):
            raise RuntimeError('%s -> %s' % (cmd, ans))
        return ans[2:].strip()

    def produce(self, messages, partition=None, timeout=60):
        """messages: list of (key, value-or-None); None is a tombstone."""
        lines = []
        for key, value in messages:
            if value is not None and not isinstance(value, str):
                value = json.dumps(value, separators=(',', ':'))
            lines.append(key + ('\t' + value if value is not None else ''))
        argv = [PRODUCE_BIN, '--bootstrap', self.bootstrap, '--topic', TOPIC]
        if partition is not None:
            argv += ['--partition', str(partition)]
        r = subprocess.run(argv, input='\n'.join(lines) + '\n', capture_output=True, text=True,
                           timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError('produce failed: %s %s' % (r.stdout, r.stderr))

    def stop(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write('quit\n')
                self.proc.stdin.flush()
                self.proc.wait(10)
            except Exception:
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except Exception:
                pass
        harness._unregister(self)

    def _cleanup(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


# ---- Event builders (docs/contract/events.md) ----

def key(org, kind, entity_id):
    return '%s/%s/%s' % (org, kind, entity_id)


def envelope(org, kind, entity_id, version, data, deleted=False):
    return {'event_id': '%s-%s-%d' % (kind, entity_id, version),
            'event_type': '%s.%s' % (kind, 'deleted' if deleted else 'upserted'),
            'organization_id': org, 'entity_id': entity_id, 'version': version,
            'occurred_at': '2026-11-29T00:00:00Z', 'data': None if deleted else data}


def variant(org, vid, pid, version, status='active', sku='SKU-1', price='29.99', **extra):
    data = {'id': vid, 'organization_id': org, 'product_id': pid, 'sku': sku,
            'barcode': None, 'status': status, 'sale_price': price, 'cost_price': 10,
            'warehouse_id': 'WH-1', 'track_inventory': True, 'default_min_stock': 1,
            'default_max_stock': 9, 'images': []}
    data.update(extra)
    return key(org, 'variant', vid), envelope(org, 'variant', vid, version, data)


def product(org, pid, version, status='activa', title='Product', **extra):
    data = {'id': pid, 'organization_id': org, 'title': title, 'sku': 'P-1',
            'status': status, 'brand_id': None, 'images': [], 'tag_ids': [],
            'collection_ids': []}
    data.update(extra)
    return key(org, 'product', pid), envelope(org, 'product', pid, version, data)


def deleted(org, kind, entity_id, version):
    return key(org, kind, entity_id), envelope(org, kind, entity_id, version, None, True)


def tombstone(org, kind, entity_id):
    return key(org, kind, entity_id), None


# The whole catalog in PostgreSQL as upsert events, one "KEY\tJSON" line each: what an
# outbox publisher would have produced for the current rows.
OUTBOX_SQL = r"""
SELECT organization_id || '/brand/' || id || E'\t' || json_build_object(
  'event_id', 'b-' || id, 'event_type', 'brand.upserted', 'organization_id', organization_id,
  'entity_id', id, 'version', version, 'occurred_at', updated_at, 'data', to_jsonb(b))::text
FROM brands b
UNION ALL
SELECT organization_id || '/tag/' || id || E'\t' || json_build_object(
  'event_id', 't-' || id, 'event_type', 'tag.upserted', 'organization_id', organization_id,
  'entity_id', id, 'version', version, 'occurred_at', now(), 'data', to_jsonb(t))::text
FROM tags t
UNION ALL
SELECT organization_id || '/collection/' || id || E'\t' || json_build_object(
  'event_id', 'c-' || id, 'event_type', 'collection.upserted', 'organization_id',
  organization_id, 'entity_id', id, 'version', version, 'occurred_at', now(),
  'data', to_jsonb(c))::text
FROM collections c
UNION ALL
SELECT p.organization_id || '/product/' || p.id || E'\t' || json_build_object(
  'event_id', 'p-' || p.id, 'event_type', 'product.upserted', 'organization_id',
  p.organization_id, 'entity_id', p.id, 'version', p.version, 'occurred_at', p.updated_at,
  'data', to_jsonb(p) || jsonb_build_object(
    'images', coalesce((SELECT jsonb_agg(jsonb_build_object('id', i.id, 'url', i.url,
        'alt', i.alt, 'position', i.position)) FROM product_images i WHERE i.product_id = p.id),
        '[]'::jsonb),
    'tag_ids', coalesce((SELECT jsonb_agg(tag_id) FROM product_tags WHERE product_id = p.id),
        '[]'::jsonb),
    'collection_ids', coalesce((SELECT jsonb_agg(collection_id) FROM product_collections
        WHERE product_id = p.id), '[]'::jsonb)))::text
FROM products p
UNION ALL
SELECT v.organization_id || '/variant/' || v.id || E'\t' || json_build_object(
  'event_id', 'v-' || v.id, 'event_type', 'variant.upserted', 'organization_id',
  v.organization_id, 'entity_id', v.id, 'version', v.version, 'occurred_at', v.updated_at,
  'data', to_jsonb(v) || jsonb_build_object(
    'images', coalesce((SELECT jsonb_agg(jsonb_build_object('id', i.id, 'url', i.url,
        'alt', i.alt, 'position', i.position)) FROM variant_images i WHERE i.variant_id = v.id),
        '[]'::jsonb)))::text
FROM variants v;
"""


def outbox_messages(pg, where_sql=None):
    """(key, json) for every row in pg (optionally a subset of the outbox query)."""
    sql = OUTBOX_SQL if where_sql is None else where_sql
    r = subprocess.run(['psql', '-X', '-At', '-v', 'ON_ERROR_STOP=1', pg.url(), '-c', sql],
                       capture_output=True, text=True, timeout=60, check=True)
    out = []
    for line in r.stdout.splitlines():
        k, v = line.split('\t', 1)
        out.append((k, v))
    return out
