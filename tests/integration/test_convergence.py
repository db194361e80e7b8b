#!/usr/bin/python3
"""Nothing lost, nothing invented: a seeded, randomized writer performs N creates, updates
and deletes of products, variants, brands, tags and collections across three organizations
in PostgreSQL (in SQL transactions, every write bumps the row's `version`) and publishes the
matching change events, as an outbox would, with the faults a real feed has:

  - duplicates (the same event twice, sometimes on another partition),
  - stale re-sends (an older version of an entity produced again later),
  - cross-partition reordering ("scattered" entities put every event on a random
    partition, and some events are held back and produced one to three batches late),
  - deletes as `*.deleted` events, sometimes followed by a Kafka tombstone, and for
    "pinned" entities (all events on one partition, like key partitioning) sometimes
    a tombstone alone.

A catalogd starts mid-stream with a warm load (DATABASE_URL + KAFKA_BOOTSTRAP_SERVERS)
while the writer keeps going. At quiescence its /digest must equal the digest of a fresh
warm load of PostgreSQL alone (`catalogd --digest`), and a second catalogd in replay mode
(Kafka only) must reach the same digest.

Knobs: CONVERGENCE_SEED (replay a run), CONVERGENCE_OPS (N, default 12000 x
RELIABILITY_SCALE), CONVERGENCE_PARTITIONS (default 8).

Run:  /usr/bin/python3 tests/integration/test_convergence.py -v
"""
import json
import os
import signal
import sys
import threading
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import kafka  # noqa: E402
import reliability_util as ru  # noqa: E402
from harness import pb  # noqa: E402

ORGS = ['conv_alpha', 'conv_beta', 'conv_gamma']
KINDS = ('brand', 'tag', 'collection', 'product', 'variant')
# Text that exercises COPY escaping and JSON escaping alike.
WORDS = ['alpha', 'Beta', "O'Reilly", 'tab\there', 'back\\slash', 'ñandú', 'line\nbreak',
         'x' * 40, 'café', 'naïve', '"quoted"', '50% off', 'a;b', 'emoji 🙂']

OUTBOX_PARTS = dict(zip(('brand', 'tag', 'collection', 'product', 'variant'),
                        [p.strip().rstrip(';') for p in kafka.OUTBOX_SQL.split('UNION ALL')]))
OUTBOX_ALIAS = {'brand': 'b', 'tag': 't', 'collection': 'c', 'product': 'p', 'variant': 'v'}


def q(s):
    """SQL literal (or NULL)."""
    if s is None:
        return 'NULL'
    return "'" + str(s).replace("'", "''") + "'"


def setUpModule():
    harness.require_binary()


class Ent:
    __slots__ = ('kind', 'id', 'org', 'version', 'alive', 'part', 'history', 'deleted_batch',
                 'product', 'brand', 'tags', 'cols', 'variants')

    def __init__(self, kind, eid, org, part):
        self.kind, self.id, self.org, self.part = kind, eid, org, part
        self.version = 0
        self.alive = True
        self.history = []        # produced upsert values (JSON text), oldest first
        self.deleted_batch = None
        self.product = None      # variant -> product id
        self.brand = None        # product -> brand id
        self.tags, self.cols, self.variants = set(), set(), set()

    @property
    def key(self):
        return kafka.key(self.org, self.kind, self.id)


class Writer:
    """The write side: PostgreSQL transactions, then their events (after COMMIT)."""

    def __init__(self, pg, km, rng, partitions, n_ops):
        self.pg, self.km, self.rng, self.P, self.n_ops = pg, km, rng, partitions, n_ops
        self.ents = {}                                   # id -> Ent
        self.live = {(k, o): [] for k in KINDS for o in ORGS}   # alive ids, for choosing
        self.ops = 0
        self.batch_no = 0
        self.deferred = []                               # (due batch, ent, partition, value)
        self.launched = False                            # catalogd under test was started
        self.ready_batch = None                          # ... and serving as of this batch
        self.stats = dict.fromkeys(('creates', 'updates', 'deletes', 'cascade_writes',
                                    'upsert_events', 'delete_events', 'tombstones',
                                    'duplicates', 'stale_resends', 'deferred',
                                    'deferred_dropped', 'messages', 'batches'), 0)
        self.error = None
        self.pending = None                              # the AsyncProduce in flight
        self.psql = ru.PsqlPipe(pg)

    # -- model helpers --
    def new_id(self):
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def word(self):
        return self.rng.choice(WORDS) + ' ' + str(self.rng.randrange(10 ** 6))

    def pick(self, kind, org=None):
        org = org or self.rng.choice(ORGS)
        ids = self.live[(kind, org)]
        return self.ents[self.rng.choice(ids)] if ids else None

    def create_ent(self, kind, org):
        pinned = self.rng.random() < 0.5
        e = Ent(kind, self.new_id(), org, self.rng.randrange(self.P) if pinned else None)
        self.ents[e.id] = e
        self.live[(kind, org)].append(e.id)
        e.version = 1
        return e

    def kill_ent(self, e):
        e.alive = False
        e.version += 1
        e.deleted_batch = self.batch_no
        self.live[(e.kind, e.org)].remove(e.id)

    # -- SQL for one operation; appends to sql, records changed entities --
    def price(self):
        return '%d.%02d' % (self.rng.randrange(1, 500), self.rng.randrange(100))

    def variant_images_sql(self, e, sql, fresh=False):
        if not fresh:
            sql.append('DELETE FROM variant_images WHERE variant_id = %s;' % q(e.id))
        rows = ['(%s, %s, %s, %s, %d)' % (q(self.new_id()), q(e.id),
                                          q('https://img.test/v/%s/%d.jpg' % (e.id, i)),
                                          q(self.word() if self.rng.random() < .7 else None),
                                          self.rng.randrange(3))
                for i in range(self.rng.choice((0, 0, 1, 2)))]
        if rows:
            sql.append('INSERT INTO variant_images (id, variant_id, url, alt, position) VALUES '
                       '%s;' % ', '.join(rows))

    def product_links_sql(self, e, sql, fresh=False):
        """Replaces the product's images, tags and collections. The named entities keep the
        reverse link (named.variants = ids of the products that reference them)."""
        if not fresh:
            sql.append('DELETE FROM product_images WHERE product_id = %s;' % q(e.id))
        rows = ['(%s, %s, %s, %s, %d)' % (q(self.new_id()), q(e.id),
                                          q('https://img.test/p/%s/%d.jpg' % (e.id, i)),
                                          q(self.word()), i)
                for i in range(self.rng.choice((0, 1, 2)))]
        if rows:
            sql.append('INSERT INTO product_images (id, product_id, url, alt, position) VALUES '
                       '%s;' % ', '.join(rows))
        for kind, attr, table, col in (('tag', 'tags', 'product_tags', 'tag_id'),
                                       ('collection', 'cols', 'product_collections',
                                        'collection_id')):
            for nid in getattr(e, attr):
                self.ents[nid].variants.discard(e.id)   # reverse link: named -> products
            ids = self.live[(kind, e.org)]
            chosen = set(self.rng.sample(ids, min(len(ids), self.rng.choice((0, 1, 2, 3)))))
            setattr(e, attr, chosen)
            if not fresh:
                sql.append('DELETE FROM %s WHERE product_id = %s;' % (table, q(e.id)))
            for nid in chosen:
                self.ents[nid].variants.add(e.id)
            if chosen:
                sql.append('INSERT INTO %s (product_id, %s) VALUES %s;'
                           % (table, col, ', '.join('(%s, %s)' % (q(e.id), q(n))
                                                    for n in sorted(chosen))))

    def set_brand(self, e):
        if e.brand:
            self.ents[e.brand].variants.discard(e.id)
        b = self.pick('brand', e.org) if self.rng.random() < 0.7 else None
        e.brand = b.id if b else None
        if b:
            b.variants.add(e.id)

    def op_create(self, kind, sql, changed):
        org = self.rng.choice(ORGS)
        if kind == 'variant':
            p = self.pick('product', org)
            if p is None:
                return self.op_create('product', sql, changed)
        e = self.create_ent(kind, org)
        if kind == 'brand':
            sql.append('INSERT INTO brands (id, organization_id, name, slug, description, version)'
                       ' VALUES (%s, %s, %s, %s, %s, 1);'
                       % (q(e.id), q(org), q(self.word()), q('brand-%d' % self.ops),
                          q(self.word() if self.rng.random() < .5 else None)))
        elif kind == 'tag':
            sql.append('INSERT INTO tags (id, organization_id, name, version) VALUES '
                       '(%s, %s, %s, 1);' % (q(e.id), q(org), q(self.word())))
        elif kind == 'collection':
            sql.append('INSERT INTO collections (id, organization_id, name, slug, version) VALUES'
                       ' (%s, %s, %s, %s, 1);' % (q(e.id), q(org), q(self.word()),
                                                  q('col-%d' % self.ops)))
        elif kind == 'product':
            self.set_brand(e)
            sql.append(
                'INSERT INTO products (id, organization_id, local_id, title, sku, barcode, '
                'description, status, product_type, unit_of_measure, alert_stock, brand_id, '
                'version) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %d, %s, 1);'
                % (q(e.id), q(org), q('L-%d' % self.ops), q(self.word()), q('P-%d' % self.ops),
                   q(str(self.rng.randrange(10 ** 12)) if self.rng.random() < .5 else None),
                   q(self.word() if self.rng.random() < .6 else None),
                   q(self.rng.choice(('activa', 'activa', 'inactiva', 'borrador'))),
                   q(self.rng.choice(('simple', None))),
                   q(self.rng.choice(('unidad', 'kg', 'caja'))), self.rng.randrange(20),
                   q(e.brand)))
            self.product_links_sql(e, sql, fresh=True)
        else:
            e.product = p.id
            p.variants.add(e.id)
            sql.append(
                'INSERT INTO variants (id, organization_id, product_id, sku, barcode, status, '
                'sale_price, cost_price, tax, weight, dim_length, dim_width, dim_height, '
                'lot_number, stock_total, stock_available, stock_reserved, warehouse_id, vendor, '
                'track_inventory, default_min_stock, default_max_stock, version) VALUES '
                '(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %d, %d, %d, %s, %s, '
                '%s, %d, %d, 1);'
                % (q(e.id), q(org), q(p.id), q('SKU-%d-%s' % (self.ops, self.word())),
                   q(str(self.rng.randrange(10 ** 12)) if self.rng.random() < .5 else None),
                   q(self.rng.choice(('active', 'active', 'inactive'))), self.price(),
                   self.price() if self.rng.random() < .7 else 'NULL',
                   '%d.%02d' % (self.rng.randrange(30), self.rng.randrange(100))
                   if self.rng.random() < .5 else 'NULL',
                   '%d.%03d' % (self.rng.randrange(20), self.rng.randrange(1000))
                   if self.rng.random() < .5 else 'NULL',
                   '1.5' if self.rng.random() < .3 else 'NULL', 'NULL', '2.25',
                   q(self.word() if self.rng.random() < .3 else None),
                   self.rng.randrange(1000), self.rng.randrange(1000), self.rng.randrange(50),
                   q('WH-%d' % self.rng.randrange(5)),
                   q(self.word() if self.rng.random() < .4 else None),
                   'true' if self.rng.random() < .8 else 'false', self.rng.randrange(10),
                   self.rng.randrange(100, 1000)))
            self.variant_images_sql(e, sql, fresh=True)
        changed[e.id] = e
        self.stats['creates'] += 1

    def op_update(self, kind, sql, changed):
        e = self.pick(kind)
        if e is None:
            return self.op_create(kind, sql, changed)
        e.version += 1
        v = e.version
        if kind in ('brand', 'collection'):
            table = 'brands' if kind == 'brand' else 'collections'
            sql.append('UPDATE %s SET name = %s, slug = %s, version = %d WHERE id = %s;'
                       % (table, q(self.word()), q('%s-%d' % (kind, self.ops)), v, q(e.id)))
        elif kind == 'tag':
            sql.append('UPDATE tags SET name = %s, version = %d WHERE id = %s;'
                       % (q(self.word()), v, q(e.id)))
        elif kind == 'product':
            r = self.rng.random()
            sets = ['version = %d' % v, 'updated_at = now()']
            if r < 0.35:
                sets.append('status = %s' % q(self.rng.choice(('activa', 'inactiva',
                                                               'borrador'))))
            elif r < 0.55:
                self.set_brand(e)
                sets.append('brand_id = %s' % q(e.brand))
            elif r < 0.8:
                self.product_links_sql(e, sql)
            else:
                sets.append('title = %s, description = %s' % (q(self.word()),
                                                              q(self.word())))
            sql.append('UPDATE products SET %s WHERE id = %s;' % (', '.join(sets), q(e.id)))
        else:
            r = self.rng.random()
            sets = ['version = %d' % v, 'updated_at = now()']
            if r < 0.3:
                sets.append('sale_price = %s' % self.price())
            elif r < 0.5:
                sets.append('status = %s' % q(self.rng.choice(('active', 'inactive'))))
            elif r < 0.65:
                sets.append('stock_total = %d, stock_available = %d, stock_reserved = %d'
                            % (self.rng.randrange(1000), self.rng.randrange(1000),
                               self.rng.randrange(50)))
            elif r < 0.8:
                self.variant_images_sql(e, sql)
            elif r < 0.9:
                p = self.pick('product', e.org)   # move to another product of the org
                if p is not None:
                    self.ents[e.product].variants.discard(e.id)
                    e.product = p.id
                    p.variants.add(e.id)
                    sets.append('product_id = %s' % q(p.id))
            else:
                sets.append('sku = %s, barcode = %s, vendor = %s'
                            % (q('SKU-%d' % self.ops), q(str(self.rng.randrange(10 ** 9))),
                               q(self.word())))
            sql.append('UPDATE variants SET %s WHERE id = %s;' % (', '.join(sets), q(e.id)))
        changed[e.id] = e
        self.stats['updates'] += 1

    def bump_product(self, pid, sql, changed):
        p = self.ents[pid]
        p.version += 1
        sql.append('UPDATE products SET version = %d, updated_at = now() WHERE id = %s;'
                   % (p.version, q(pid)))
        changed[pid] = p
        self.stats['cascade_writes'] += 1

    def op_delete(self, kind, sql, changed, deleted):
        e = self.pick(kind)
        if e is None:
            return
        table = {'brand': 'brands', 'tag': 'tags', 'collection': 'collections',
                 'product': 'products', 'variant': 'variants'}[kind]
        if kind == 'product':
            # The write side deletes the variants itself (each is a change with an event)
            # rather than letting ON DELETE CASCADE remove rows silently.
            for vid in sorted(e.variants):
                ve = self.ents[vid]
                if ve.alive and ve.product == e.id:
                    sql.append('DELETE FROM variants WHERE id = %s;' % q(vid))
                    self.kill_ent(ve)
                    changed.pop(vid, None)
                    deleted[vid] = ve
                    self.stats['cascade_writes'] += 1
            for nid in e.tags | e.cols | ({e.brand} if e.brand else set()):
                self.ents[nid].variants.discard(e.id)
        elif kind == 'variant':
            self.ents[e.product].variants.discard(e.id)
        else:
            # Products lose the link: each such product row changes (version bump).
            for pid in sorted(e.variants):
                p = self.ents[pid]
                if not p.alive:
                    continue
                if kind == 'brand' and p.brand == e.id:
                    p.brand = None
                    sql.append('UPDATE products SET brand_id = NULL WHERE id = %s;' % q(pid))
                elif kind == 'tag' and e.id in p.tags:
                    p.tags.discard(e.id)
                    sql.append('DELETE FROM product_tags WHERE product_id = %s AND tag_id = %s;'
                               % (q(pid), q(e.id)))
                elif kind == 'collection' and e.id in p.cols:
                    p.cols.discard(e.id)
                    sql.append('DELETE FROM product_collections WHERE product_id = %s AND '
                               'collection_id = %s;' % (q(pid), q(e.id)))
                else:
                    continue
                self.bump_product(pid, sql, changed)
        sql.append('DELETE FROM %s WHERE id = %s;' % (table, q(e.id)))
        self.kill_ent(e)
        changed.pop(e.id, None)
        deleted[e.id] = e
        self.stats['deletes'] += 1

    # (create, update) probabilities by kind; the rest are deletes. Products are deleted
    # rarely: each takes its variants with it.
    MIX = {'brand': (.3, .6), 'tag': (.3, .6), 'collection': (.3, .6), 'product': (.3, .64),
           'variant': (.33, .5)}

    def one_op(self, sql, changed, deleted):
        r = self.rng.random()
        kind = self.rng.choices(KINDS, weights=(1, 1, 1, 3, 7))[0]
        c, u = self.MIX[kind]
        # Every kind needs a population before updates and deletes make sense.
        if r < c or len(self.live[(kind, ORGS[0])]) < 3:
            self.op_create(kind, sql, changed)
        elif r < c + u:
            self.op_update(kind, sql, changed)
        else:
            self.op_delete(kind, sql, changed, deleted)
        self.ops += 1

    # -- events --
    def outbox(self, changed):
        """(id -> JSON value) of the changed rows, read back after the commit."""
        by_kind = {}
        for e in changed.values():
            by_kind.setdefault(e.kind, []).append(e.id)
        parts = []
        for kind, ids in by_kind.items():
            parts.append('%s WHERE %s.id IN (%s)' % (OUTBOX_PARTS[kind], OUTBOX_ALIAS[kind],
                                                   ', '.join(q(i) for i in ids)))
        return parts

    def excluded(self, e):
        """A re-send of an older upsert of e must not be produced: e was deleted before the
        catalogd under test had loaded, so no catalogd that warm-loaded after the delete
        holds a marker for it (see test_stale_resend_of_entity_deleted_before_warm_load)."""
        return (self.launched and not e.alive and
                (self.ready_batch is None or e.deleted_batch <= self.ready_batch))

    def part_of(self, e):
        return e.part if e.part is not None else self.rng.randrange(self.P)

    def run_batch(self, size):
        self.batch_no += 1
        self.stats['batches'] += 1
        sql, changed, deleted = ['BEGIN;'], {}, {}
        for _ in range(size):
            self.one_op(sql, changed, deleted)
        sql.append('COMMIT;')
        parts = self.outbox(changed)
        if parts:
            sql.append(' UNION ALL '.join(parts) + ';')
        values = {}
        for line in self.psql.run('\n'.join(sql)):
            k, v = line.split('\t', 1)
            values[k.rsplit('/', 1)[1]] = v
        if set(values) != set(changed):
            raise RuntimeError('outbox rows %d != changed rows %d' % (len(values), len(changed)))
        msgs = []
        rng = self.rng
        for eid, e in changed.items():      # upserts of this commit
            v = values[eid]
            self.stats['upsert_events'] += 1
            if e.part is None and rng.random() < 0.1:
                self.deferred.append((self.batch_no + rng.randint(1, 3), e,
                                      self.part_of(e), v))
                self.stats['deferred'] += 1
            else:
                msgs.append((self.part_of(e), e.key, v))
            if rng.random() < 0.08:
                msgs.append((self.part_of(e), e.key, v))
                self.stats['duplicates'] += 1
            e.history.append(v)
        for eid, e in deleted.items():      # deletes of this commit
            if e.part is not None and rng.random() < 0.4:
                msgs.append((e.part, e.key, None))            # tombstone alone (in order)
                self.stats['tombstones'] += 1
                continue
            _, env = kafka.deleted(e.org, e.kind, e.id, e.version)
            msgs.append((self.part_of(e), e.key, env))
            self.stats['delete_events'] += 1
            if rng.random() < 0.3:
                msgs.append((self.part_of(e), e.key, None))
                self.stats['tombstones'] += 1
            if rng.random() < 0.08:
                msgs.append((self.part_of(e), e.key, env))
                self.stats['duplicates'] += 1
        # Stale re-sends: an older version of some entity, produced again now.
        # (The random draws do not depend on timing, so a seed replays the same writes.)
        ids = list(self.ents)
        for _ in range(max(1, size // 15)):
            e = self.ents[rng.choice(ids)]
            if not e.history:
                continue
            part, value = self.part_of(e), rng.choice(e.history)
            if self.excluded(e):
                continue
            msgs.append((part, e.key, value))
            self.stats['stale_resends'] += 1
        # Held-back events whose time has come (older than what was produced since).
        due = [d for d in self.deferred if d[0] <= self.batch_no]
        self.deferred = [d for d in self.deferred if d[0] > self.batch_no]
        for _, e, part, v in due:
            if self.excluded(e):
                self.stats['deferred_dropped'] += 1
                continue
            msgs.append((part, e.key, v))
        self.produce(msgs)

    def produce(self, msgs):
        """Produces this batch's messages in the background while the next batch writes to
        PostgreSQL; one kafka-produce at a time, so the order within a partition is the
        order of the batches."""
        self.wait_produced()
        if msgs:
            self.pending = ru.AsyncProduce(self.km, msgs, compression='zstd', timeout_ms=60000)
            self.stats['messages'] += len(msgs)

    def wait_produced(self):
        if self.pending is not None:
            p, self.pending = self.pending, None
            n = p.wait()
            if n != p.n:
                raise RuntimeError('kafka-produce delivered %d of %d' % (n, p.n))

    def flush_deferred(self):
        msgs = []
        for _, e, part, v in self.deferred:
            if self.excluded(e):
                self.stats['deferred_dropped'] += 1
            else:
                msgs.append((part, e.key, v))
        self.deferred = []
        self.produce(msgs)
        self.wait_produced()

    def run(self, stop_at=None):
        """Runs batches until n_ops (or stop_at) operations were done."""
        target = min(self.n_ops, stop_at or self.n_ops)
        try:
            while self.ops < target:
                self.run_batch(min(self.rng.randint(20, 150), target - self.ops))
            self.wait_produced()
        except BaseException as exc:
            self.error = exc
            raise


class ConvergenceTest(unittest.TestCase):
    def setUp(self):
        self.seed, self.rng = ru.seeded_rng('CONVERGENCE_SEED')
        self.n_ops = int(ru.env_float('CONVERGENCE_OPS', 12000 * ru.scale()))
        self.partitions = int(ru.env_float('CONVERGENCE_PARTITIONS', 8))
        self.pg = harness.PgCluster()
        self.addCleanup(self.pg.close)
        self.pg.psql_file(harness.SCHEMA_SQL)
        self.km = kafka.KafkaMock(partitions=self.partitions)
        self.addCleanup(self.km.stop)

    def add_ballast(self, n):
        """n brands of an organization the writer never touches, in PostgreSQL and (as an
        outbox would have published them) in Kafka: they make the warm load last long
        enough (~0.3 s per 150k) to be caught in the middle."""
        self.pg.psql("INSERT INTO brands (id, organization_id, name, slug, description) "
                     "SELECT ('bbbbbbbb-0000-4000-8000-' || lpad(to_hex(g), 12, '0'))::uuid, "
                     "'conv_ballast', 'Ballast brand ' || g, 'ballast-' || g, 'ballast' "
                     "FROM generate_series(1, %d) g" % n)
        rows = kafka.outbox_messages(self.pg, OUTBOX_PARTS['brand'])
        ru.produce(self.km, [(i % self.partitions, k, v) for i, (k, v) in enumerate(rows)],
                   compression='zstd', timeout_ms=120000)

    def test_warm_tail_and_replay_converge_to_postgres(self):
        t0 = time.monotonic()
        self.add_ballast(int(150000 * min(1.0, ru.scale())))
        w = Writer(self.pg, self.km, self.rng, self.partitions, self.n_ops)
        # Phase 1: history before catalogd exists (35% of the operations).
        w.run(stop_at=int(self.n_ops * 0.35))
        # Phase 2: the writer keeps going while catalogd starts with a warm load.
        th = threading.Thread(target=w.run, daemon=True)
        w.launched = True
        th.start()
        srv = harness.Catalogd({'DATABASE_URL': self.pg.url(),
                                'KAFKA_BOOTSTRAP_SERVERS': self.km.bootstrap,
                                'SYNC_MAX_BATCH_MS': '20'})
        self.addCleanup(srv.close)
        # Widen the hand-off window: once the load's transaction runs (its snapshot is
        # taken by the first COPY, of the ballast brands), catalogd is paused for 1.5 s
        # while the writer commits and publishes several batches. Those writes are not in
        # the snapshot: only the tail can deliver them.
        harness.wait_until(lambda: any(l.get('msg') == 'warm load starting'
                                       for l in srv.logs()), 30, interval=0.005,
                           what='the warm load starting')
        time.sleep(0.05)
        batch_at_pause = w.batch_no
        srv.send_signal(signal.SIGSTOP)
        try:
            time.sleep(1.5)
        finally:
            srv.send_signal(signal.SIGCONT)
        batches_in_pause = w.batch_no - batch_at_pause
        srv.wait_serving(60)
        w.ready_batch = w.batch_no + 1
        ops_at_ready = w.ops
        th.join(600)
        self.assertFalse(th.is_alive(), 'writer did not finish')
        if w.error:
            raise w.error
        w.flush_deferred()
        t_write = time.monotonic() - t0

        hw = ru.wait_caught_up(srv, self.km, timeout=60)
        lows = {p: lo for p, (lo, hi) in hw.items()}
        self.assertEqual(set(lows.values()), {0},
                         'the mock broker dropped old messages (low watermarks %r): the test '
                         'produced more than it keeps; raise CONVERGENCE_PARTITIONS' % lows)
        expected = ru.offline_digest({'DATABASE_URL': self.pg.url()})
        counts = expected['counts']
        ru.note('seed=%d N=%d ops (%d at warm-load ready, %d batches committed while the '
                'load was paused) in %d batches; %s'
                % (self.seed, w.ops, ops_at_ready, batches_in_pause, w.stats['batches'],
                   ', '.join('%s=%d' % kv for kv in sorted(w.stats.items()))))
        ru.note('final PostgreSQL counts %r; %d messages over %d partitions (high watermarks '
                '%s); writer %.1fs' % (counts, sum(h for _, h in hw.values()), len(hw),
                                      ' '.join(str(h) for _, h in sorted(hw.values())), t_write))
        self.assertGreaterEqual(w.ops, 10000)
        # Non-trivial: every kind is populated and every kind of fault happened.
        self.assertGreater(counts['variants'], 500)
        self.assertGreater(counts['products'], 150)
        for k in ('brands', 'tags', 'collections'):
            self.assertGreater(counts[k], 20, k)
        for k in ('deletes', 'duplicates', 'stale_resends', 'deferred', 'tombstones',
                  'delete_events'):
            self.assertGreater(w.stats[k], 20, k)

        # The warm-loaded, tailing catalogd converges to PostgreSQL.
        live = self.wait_digest(srv, expected['digest'], 30)
        m = ru.metrics(srv)
        stale = ru.metric_sum(m, 'catalogd_events_total', result='stale')
        applied = ru.metric_sum(m, 'catalogd_events_total', result='applied')
        rejected = ru.metric_sum(m, 'catalogd_events_total', result='rejected')
        ru.note('warm+tail catalogd: applied=%d stale=%d rejected=%d'
                % (applied, stale, rejected))
        if live['digest'] != expected['digest']:
            self.fail('warm+tail catalogd diverged from PostgreSQL: %s vs %s\n%s'
                      % (live, expected, self.explain(srv, w)))
        self.assertEqual(live['counts'], counts)
        self.assertEqual(rejected, 0, 'every event was valid')
        self.assertGreater(applied, 1000)
        self.assertGreater(stale, 100, 'duplicates and stale re-sends were seen as stale')
        self.assertEqual(srv.stop(), 0)

        # Replay from Kafka alone reaches the same state.
        replay = harness.Catalogd({'KAFKA_BOOTSTRAP_SERVERS': self.km.bootstrap,
                                   'SYNC_MODE': 'replay'})
        self.addCleanup(replay.close)
        replay.wait_serving(120)
        rd = self.wait_digest(replay, expected['digest'], 30)
        if rd['digest'] != expected['digest']:
            self.fail('replay catalogd diverged from PostgreSQL: %s vs %s\n%s'
                      % (rd, expected, self.explain(replay, w)))
        self.assertEqual(rd['counts'], counts)
        self.assertEqual(replay.stop(), 0)
        ru.note('digest %s reached by warm+tail and by replay; total %.1fs'
                % (expected['digest'], time.monotonic() - t0))

    def wait_digest(self, srv, want, timeout):
        deadline = time.monotonic() + timeout
        while True:
            d = ru.digest(srv)
            if d['digest'] == want or time.monotonic() > deadline:
                return d
            time.sleep(0.2)

    def pg_json(self, sql):
        return json.loads(self.pg.psql('SELECT coalesce(json_agg(t), \'[]\') FROM (%s) t' % sql))

    def explain(self, srv, w, limit=15):
        """Entity-level differences between catalogd (over gRPC) and PostgreSQL."""
        out = []
        pgv = {r['id']: (r['organization_id'], r['product_id'], r['sku'], float(r['sale_price']))
               for r in self.pg_json('SELECT id, organization_id, product_id, sku, sale_price '
                                     'FROM variants')}
        stub = srv.catalog_stub()
        for org in ORGS:
            ids = [e.id for e in w.ents.values() if e.kind == 'variant' and e.org == org]
            for i in range(0, len(ids), 1000):
                r = stub.GetVariantsBatch(pb.GetVariantsBatchRequest(
                    organization_id=org, variant_ids=ids[i:i + 1000]), timeout=10)
                for v in r.variants:
                    want = pgv.get(v.variant_id)
                    e = w.ents[v.variant_id]
                    if want is None:
                        out.append('variant %s/%s served but not in PostgreSQL (invented; '
                                   'pinned=%s, deleted in batch %s, last version %d)'
                                   % (org, v.variant_id, e.part, e.deleted_batch, e.version))
                    elif (want[1], want[2], want[3]) != (v.product_id, v.sku, v.sale_price):
                        out.append('variant %s differs: served %r, PostgreSQL %r'
                                   % (v.variant_id, (v.product_id, v.sku, v.sale_price), want))
                for vid in r.not_found_ids:
                    if vid in pgv:
                        out.append('variant %s/%s in PostgreSQL but not served (lost)'
                                   % (org, vid))
        pgp = {r['id']: (r['title'], r['status'], r['brand_id'] or '')
               for r in self.pg_json('SELECT id, title, status, brand_id FROM products')}
        for e in w.ents.values():
            if e.kind != 'product' or len(out) > 4 * limit:
                continue
            r = stub.GetProductDetails(pb.GetProductDetailsRequest(
                organization_id=e.org, product_id=e.id), timeout=10)
            if r.success and e.id not in pgp:
                out.append('product %s served but not in PostgreSQL (invented; pinned=%s, '
                           'deleted in batch %s)' % (e.id, e.part, e.deleted_batch))
            elif not r.success and e.id in pgp:
                out.append('product %s in PostgreSQL but not served (lost)' % e.id)
            elif r.success:
                got = (r.product.title, r.product.status,
                       r.product.brand.brand_id if r.product.HasField('brand') else '')
                if got != pgp[e.id]:
                    out.append('product %s differs: served %r, PostgreSQL %r'
                               % (e.id, got, pgp[e.id]))
        return '%d differences (first %d):\n  %s' % (len(out), limit, '\n  '.join(out[:limit]))


class WarmLoadMarkerTest(unittest.TestCase):
    """The contract (docs/contract/events.md): "A deleted entity leaves a version marker long enough that
    a late, older upsert cannot resurrect it."  A replica that warm-loads after the delete
    has no such marker: PostgreSQL no longer has the row, and the delete event sits below
    the recorded start offsets. A late re-send of the older upsert (an outbox publisher
    re-publishing a range after a crash, a producer retry) must not bring it back."""

    def test_stale_resend_of_entity_deleted_before_warm_load(self):
        org = 'conv_marker'
        pid, vid = str(uuid.uuid4()), str(uuid.uuid4())
        with harness.PgCluster() as pg:
            pg.psql_file(harness.SCHEMA_SQL)
            km = kafka.KafkaMock(partitions=1)
            try:
                pg.psql("INSERT INTO products (id, organization_id, title, sku, status, version) "
                        "VALUES ('%s', '%s', 'P', 'P-1', 'activa', 1);"
                        "INSERT INTO variants (id, organization_id, product_id, sku, status, "
                        "sale_price, warehouse_id, version) VALUES ('%s', '%s', '%s', 'V-1', "
                        "'active', 9.99, 'WH', 1);" % (pid, org, vid, org, pid))
                upserts = kafka.outbox_messages(pg)
                ru.produce(km, [(0, k, v) for k, v in upserts])
                # The variant is deleted (version 2) and its event published.
                pg.psql("DELETE FROM variants WHERE id = '%s'" % vid)
                ru.produce(km, [(0,) + kafka.deleted(org, 'variant', vid, 2)])
                srv = harness.Catalogd({'DATABASE_URL': pg.url(),
                                        'KAFKA_BOOTSTRAP_SERVERS': km.bootstrap})
                try:
                    srv.wait_serving(30)
                    stub = srv.catalog_stub()
                    req = pb.ValidateVariantRequest(organization_id=org, variant_id=vid)
                    self.assertFalse(stub.ValidateVariant(req, timeout=5).exists)
                    # Later: the old upsert (version 1) is published again.
                    ru.produce(km, [(0, k, v) for k, v in upserts if '/variant/' in k])
                    ru.wait_caught_up(srv, km, 30)
                    time.sleep(0.3)
                    r = stub.ValidateVariant(req, timeout=5)
                    expected = ru.offline_digest({'DATABASE_URL': pg.url()})
                    live = ru.digest(srv)
                    replay = ru.offline_digest({'KAFKA_BOOTSTRAP_SERVERS': km.bootstrap})
                    ru.note('after the stale re-send: exists=%s; counts warm+tail %r, '
                            'PostgreSQL %r, replay %r' % (r.exists, live['counts'],
                                                          expected['counts'], replay['counts']))
                    self.assertEqual(replay['digest'], expected['digest'])
                    self.assertFalse(r.exists, 'a variant deleted (version 2) before the warm '
                                     'load was resurrected by a late re-send of version 1')
                    self.assertEqual(live['digest'], expected['digest'])
                finally:
                    srv.close()
            finally:
                km.stop()


if __name__ == '__main__':
    unittest.main()
