#!/usr/bin/python3
"""Tenant isolation as a property: zero cross-tenant bytes over >= 100,000 probes.

The catalog holds tenants whose organization ids are easy to confuse: equal up to case
('acme', 'Acme', 'ACME'), up to spaces ('acme ', ' acme'), up to unicode normalization
('café' NFC vs 'café' NFD), a no-break space, a Cyrillic homoglyph, and a 255-byte id.
Every text field of every entity of a tenant embeds that tenant's unique marker.
PostgreSQL (warm load) holds most of it, including links that cross tenants (a product of
one tenant naming another tenant's brand, tags and collections; a variant naming another
tenant's product: the schema's foreign keys allow it). Kafka (the tail) adds entities whose
UUIDs are the same in several tenants, and copies of PostgreSQL entities' UUIDs under a
confusable tenant, each copy with its own marker. Rows with an empty or a 256-byte
organization are in PostgreSQL too: their markers must never be served.

Probes: random organizations (the tenants, mutations of them, the empty one, unknown ones)
x random ids (any tenant's, upper/lower case, random) over all four RPCs, from several
threads and channels. Each serialized response (and error details) is scanned: it may hold
only the probing tenant's marker. Answers are also checked against the model (exists /
found / not found, the product's brand, tags, collections and variants).

Knobs: TENANCY_SEED, TENANCY_PROBES (ids probed, default 100000 x RELIABILITY_SCALE).
Run:  /usr/bin/python3 tests/integration/test_tenancy.py -v
"""
import os
import random
import re
import sys
import threading
import time
import unicodedata
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402

import harness  # noqa: E402
import kafka  # noqa: E402
import reliability_util as ru  # noqa: E402
from harness import pb  # noqa: E402

MARKER_CHARS = 'GHJKLMNPQRSTUVWXYZ'
MARKER_RE = re.compile(rb'MK[G-Z]{10}')
NFC = unicodedata.normalize('NFC', 'caf\u00e9')
NFD = unicodedata.normalize('NFD', 'caf\u00e9')
assert NFC != NFD
LONG255 = 'tenant-' + 'x' * 248
assert len(LONG255.encode()) == 255

PG_TENANTS = ['acme', 'Acme', 'ACME', 'acme ', ' acme', NFC, NFD, 'org-b', 'ORG-B', LONG255]
KAFKA_TENANTS = ['acme', 'ACME', NFC, NFD, 'acme\u00a0', '\u0430cme', 'org-b ']
# Rows the server must refuse to load (empty / too long organization).
PG_INVALID = ['', 'tenant-' + 'y' * 249]
assert len(PG_INVALID[1].encode()) == 256


def setUpModule():
    harness.require_binary()


def q(s):
    return 'NULL' if s is None else "'" + str(s).replace("'", "''") + "'"


class Model:
    """What the catalog holds: (id, org) -> entity, ids in lower case."""

    def __init__(self, rng):
        self.rng = rng
        self.marker = {}
        self.variants, self.products = {}, {}
        self.brands, self.tags, self.cols = set(), set(), set()
        self.all_ids = []          # every id of any tenant or kind, valid ones included
        self.variant_ids, self.product_ids = [], []

    def marker_of(self, org):
        if org not in self.marker:
            while True:
                m = 'MK' + ''.join(self.rng.choice(MARKER_CHARS) for _ in range(10))
                if m not in self.marker.values():
                    break
            self.marker[org] = m
        return self.marker[org]

    def new_id(self):
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def note_id(self, i, kind):
        self.all_ids.append(i)
        if kind == 'variant':
            self.variant_ids.append(i)
        elif kind == 'product':
            self.product_ids.append(i)


def pg_seed(model, pg):
    """Tenants in PostgreSQL, with links across tenants. Returns {org: ids} for reuse."""
    sql, per = ['BEGIN;'], {}
    orgs = PG_TENANTS + PG_INVALID
    for org in orgs:
        m = model.marker_of(org)
        valid = org in PG_TENANTS
        ids = per[org] = {'brand': [model.new_id() for _ in range(2)],
                          'tag': [model.new_id() for _ in range(3)],
                          'collection': [model.new_id() for _ in range(2)],
                          'product': [model.new_id() for _ in range(4)], 'variant': []}
        for b in ids['brand']:
            sql.append('INSERT INTO brands (id, organization_id, name, slug, description) VALUES '
                       '(%s, %s, %s, %s, %s);' % (q(b), q(org), q(m + ' brand'),
                                                  q(m + '-slug'), q(m + ' about')))
            if valid:
                model.brands.add((b, org))
        for t in ids['tag']:
            sql.append('INSERT INTO tags (id, organization_id, name) VALUES (%s, %s, %s);'
                       % (q(t), q(org), q(m + ' tag')))
            if valid:
                model.tags.add((t, org))
        for c in ids['collection']:
            sql.append('INSERT INTO collections (id, organization_id, name, slug) VALUES '
                       '(%s, %s, %s, %s);' % (q(c), q(org), q(m + ' col'), q(m + '-c')))
            if valid:
                model.cols.add((c, org))
        for kind in ('brand', 'tag', 'collection', 'product'):
            for i in ids[kind]:
                model.note_id(i, kind)
    # Products and variants, after every tenant's named entities exist (cross links).
    later = []
    for n, org in enumerate(orgs):
        m, ids = model.marker_of(org), per[org]
        other = per[orgs[(n + 1) % len(orgs)]]     # a neighbour: confusable, or invalid
        valid = org in PG_TENANTS
        for k, pid in enumerate(ids['product']):
            src = other if k == 3 else ids          # product #3 links the neighbour's
            brand = src['brand'][k % 2]
            tags = src['tag'][:1 + k % 3]
            cols = src['collection'][:1 + k % 2]
            sql.append('INSERT INTO products (id, organization_id, local_id, title, sku, barcode, '
                       'description, status, product_type, unit_of_measure, brand_id) VALUES '
                       '(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s);'
                       % (q(pid), q(org), q(m + '-L'), q(m + ' title'), q(m + '-SKU'),
                          q(m + '-BC'), q(m + ' desc'), q('activa' if k != 1 else 'inactiva'),
                          q(m + ' type'), q(m + ' unit'), q(brand)))
            for t in tags:
                sql.append('INSERT INTO product_tags VALUES (%s, %s);' % (q(pid), q(t)))
            for c in cols:
                sql.append('INSERT INTO product_collections VALUES (%s, %s);' % (q(pid), q(c)))
            sql.append('INSERT INTO product_images (id, product_id, url, alt, position) VALUES '
                       '(%s, %s, %s, %s, 0);' % (q(model.new_id()), q(pid),
                                                 q('https://img.test/%s/p.jpg' % m),
                                                 q(m + ' alt')))
            if valid:
                model.products[(pid, org)] = {'brand': brand, 'tags': tags, 'cols': cols}
            for j in range(3):
                vid = model.new_id()
                ids['variant'].append(vid)
                model.note_id(vid, 'variant')
                # The last variant of product #0 points at the neighbour's product.
                vpid = other['product'][0] if (k == 0 and j == 2) else pid
                later.append(
                    'INSERT INTO variants (id, organization_id, product_id, sku, barcode, status,'
                    ' sale_price, lot_number, warehouse_id, vendor) VALUES (%s, %s, %s, %s, %s, '
                    '%s, %s, %s, %s, %s);'
                    % (q(vid), q(org), q(vpid), q('%s-V%d' % (m, j)), q(m + '-vbc'),
                       q('active' if j != 1 else 'inactive'), '%d.5' % (10 + j), q(m + '-lot'),
                       q(m + '-WH'), q(m + ' vendor')))
                later.append('INSERT INTO variant_images (id, variant_id, url, alt, position) '
                             'VALUES (%s, %s, %s, %s, 1);'
                             % (q(model.new_id()), q(vid), q('https://img.test/%s/v.jpg' % m),
                                q(m + ' valt')))
                if valid:
                    model.variants[(vid, org)] = {'product': vpid}
    sql += later + ['COMMIT;']   # variants after every product (they link across tenants)
    session = ru.PsqlPipe(pg)
    try:
        session.run('\n'.join(sql))
    finally:
        session.close()
    return per


def named_event(org, kind, eid, m):
    data = {'id': eid, 'organization_id': org, 'name': '%s %s' % (m, kind)}
    if kind != 'tag':
        data['slug'] = m + '-s'
    if kind == 'brand':
        data['description'] = m + ' d'
    return kafka.key(org, kind, eid), kafka.envelope(org, kind, eid, 1, data)


def kafka_seed(model, km, pg_ids):
    """Shared UUIDs in every Kafka tenant (each copy with its tenant's marker), and copies
    of PostgreSQL tenants' UUIDs under confusable tenants."""
    shared = {'brand': model.new_id(), 'tag': [model.new_id(), model.new_id()],
              'collection': model.new_id(), 'product': model.new_id(),
              'variant': [model.new_id(), model.new_id()]}
    for kind in ('brand', 'collection', 'product'):
        model.note_id(shared[kind], kind)
    for kind in ('tag', 'variant'):
        for i in shared[kind]:
            model.note_id(i, kind)
    msgs = []
    for n, org in enumerate(KAFKA_TENANTS):
        m = model.marker_of(org)
        others = [t for t in PG_TENANTS if t != org]
        src = pg_ids[others[n % len(others)]]          # another PostgreSQL tenant's UUIDs
        pid_copy, vid_copy, brand_copy = src['product'][0], src['variant'][0], src['brand'][0]
        for kind, eid in (('brand', shared['brand']), ('tag', shared['tag'][0]),
                          ('tag', shared['tag'][1]), ('collection', shared['collection']),
                          ('brand', brand_copy)):
            msgs.append(named_event(org, kind, eid, m))
            {'brand': model.brands, 'tag': model.tags, 'collection': model.cols}[kind].add(
                (eid, org))
        for pid, brand, tags, cols in (
                (shared['product'], shared['brand'], shared['tag'], [shared['collection']]),
                (pid_copy, brand_copy, [shared['tag'][0]] + src['tag'][:1],
                 src['collection'][:1])):
            msgs.append(kafka.product(
                org, pid, 1, title=m + ' title', sku=m + '-SKU', barcode=m + '-bc',
                description=m + ' desc', local_id=m + '-L', product_type=m + ' t',
                unit_of_measure=m + ' u', brand_id=brand, tag_ids=tags, collection_ids=cols,
                images=[{'id': model.new_id(), 'url': 'https://img.test/%s/k.jpg' % m,
                         'alt': m + ' alt', 'position': 0}]))
            model.products[(pid, org)] = {'brand': brand, 'tags': tags, 'cols': cols}
        for vid, pid in ((shared['variant'][0], shared['product']),
                         (shared['variant'][1], shared['product']), (vid_copy, pid_copy)):
            msgs.append(kafka.variant(
                org, vid, pid, 1, sku=m + '-SKU-V', barcode=m + '-vbc', warehouse_id=m + '-WH',
                lot_number=m + '-lot', vendor=m + ' vendor',
                images=[{'id': model.new_id(), 'url': 'https://img.test/%s/kv.jpg' % m,
                         'alt': m, 'position': 0}]))
            model.variants[(vid, org)] = {'product': pid}
    ru.produce(km, [(None, k, v) for k, v in msgs])
    return len(msgs)


def probe_orgs():
    """Organizations to probe with: the tenants, near misses, unknown, invalid."""
    near = ['', 'acme  ', 'acm', 'acme\u200b', 'Acme ', ' ACME', 'aCME', 'CAFÉ', 'cafe', NFC + ' ',
            NFD.upper(), 'org-B', 'org_b', LONG255[:-1], LONG255 + 'x', PG_INVALID[1],
            'acme\u00a0 ', '\u0430cme ', 'unknown-org', 'acme/variant', '\u0430CME', 'acme\x00',
            'acme\x00Acme', '\x00']
    return PG_TENANTS + KAFKA_TENANTS + near


def mutate(rng, org):
    """A random near miss of org."""
    ops = [lambda s: s.upper(), lambda s: s.lower(), lambda s: s.swapcase(),
           lambda s: s + ' ', lambda s: ' ' + s, lambda s: s.strip(),
           lambda s: unicodedata.normalize(rng.choice(('NFC', 'NFD', 'NFKC', 'NFKD')), s),
           lambda s: s[:-1], lambda s: s + '\u200b', lambda s: s.replace('a', '\u0430')]
    return rng.choice(ops)(org)


class Prober:
    def __init__(self, srv, model, seed, n_threads, target_ids, target_calls, time_cap):
        self.srv, self.model = srv, model
        self.seed = seed
        self.n_threads, self.target_ids, self.target_calls = n_threads, target_ids, target_calls
        self.deadline = time.monotonic() + time_cap
        self.lock = threading.Lock()
        self.ids = self.calls = self.bytes = 0
        self.by_method = {}
        self.codes = {}
        self.violations = []     # cross-tenant bytes
        self.wrong = []          # answers that disagree with the model
        self.orgs = probe_orgs()
        self.tenant_set = set(model.marker)

    def done(self):
        return ((self.ids >= self.target_ids and self.calls >= self.target_calls)
                or time.monotonic() > self.deadline or len(self.violations) > 20
                or len(self.wrong) > 20)

    def pick_org(self, rng):
        r = rng.random()
        if r < 0.6:
            return rng.choice(PG_TENANTS + KAFKA_TENANTS)
        if r < 0.85:
            return rng.choice(self.orgs)
        return mutate(rng, rng.choice(self.orgs))

    def pick_id(self, rng, pool):
        r = rng.random()
        if r < 0.75:
            i = rng.choice(pool)
        elif r < 0.9:
            i = rng.choice(self.model.all_ids)
        else:
            i = str(uuid.UUID(int=rng.getrandbits(128)))
        return i.upper() if rng.random() < 0.2 else i

    def run(self):
        threads = [threading.Thread(target=self.worker, args=(n,), daemon=True)
                   for n in range(self.n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(600)

    def worker(self, n):
        rng = random.Random(self.seed * 1000 + n)
        channel = self.srv.new_channel()
        methods = {}
        for name, req_cls in (('ValidateVariant', pb.ValidateVariantRequest),
                              ('GetProductDetails', pb.GetProductDetailsRequest),
                              ('GetVariantsBatch', pb.GetVariantsBatchRequest),
                              ('ValidateVariantsBatch', pb.ValidateVariantsBatchRequest)):
            methods[name] = channel.unary_unary('/catalog.CatalogService/' + name,
                                                request_serializer=req_cls.SerializeToString,
                                                response_deserializer=None)
        try:
            while not self.done():
                kind = rng.choices(('ValidateVariant', 'GetProductDetails', 'GetVariantsBatch',
                                    'ValidateVariantsBatch'), weights=(4, 3, 1, 1))[0]
                org = self.pick_org(rng)
                if kind == 'ValidateVariant':
                    ids = [self.pick_id(rng, self.model.variant_ids)]
                    req = pb.ValidateVariantRequest(organization_id=org, variant_id=ids[0])
                elif kind == 'GetProductDetails':
                    ids = [self.pick_id(rng, self.model.product_ids)]
                    req = pb.GetProductDetailsRequest(
                        organization_id=org, product_id=ids[0],
                        include_variants=rng.random() < .8, include_images=rng.random() < .8)
                else:
                    ids = [self.pick_id(rng, self.model.variant_ids)
                           for _ in range(rng.randint(1, 1000))]
                    cls = (pb.GetVariantsBatchRequest if kind == 'GetVariantsBatch'
                           else pb.ValidateVariantsBatchRequest)
                    req = cls(organization_id=org, variant_ids=ids)
                try:
                    raw = methods[kind](req, timeout=10)
                    code, details = grpc.StatusCode.OK, ''
                except grpc.RpcError as e:
                    raw, code, details = b'', e.code(), e.details() or ''
                self.check(kind, org, ids, req, raw, code, details)
        finally:
            channel.close()

    def check(self, kind, org, ids, req, raw, code, details):
        m = self.model
        blob = raw + details.encode('utf-8', 'replace')
        own = m.marker.get(org) if org in self.tenant_set and self.valid_org(org) else None
        foreign = sorted({x.decode() for x in MARKER_RE.findall(blob)} - {own})
        problems = []
        if foreign:
            owners = [o for o, mk in m.marker.items() if mk in foreign]
            self.violations.append('%s org=%r ids=%r...: markers of %r in the answer'
                                   % (kind, org, ids[:3], owners))
        want_code = grpc.StatusCode.OK if self.valid_org(org) else \
            grpc.StatusCode.INVALID_ARGUMENT
        if code != want_code:
            problems.append('code %s (%s), expected %s' % (code, details, want_code))
        elif code == grpc.StatusCode.OK:
            problems += self.check_answer(kind, org, ids, req, raw, own)
        with self.lock:
            self.calls += 1
            self.ids += len(ids)
            self.bytes += len(raw)
            self.by_method[kind] = self.by_method.get(kind, 0) + 1
            self.codes[code.name] = self.codes.get(code.name, 0) + 1
            if problems:
                self.wrong.append('%s org=%r ids=%r: %s' % (kind, org, ids[:3], '; '.join(
                    problems[:3])))

    @staticmethod
    def valid_org(org):
        return 0 < len(org.encode()) <= 255 and '\x00' not in org

    def check_answer(self, kind, org, ids, req, raw, own):
        m = self.model
        out = []
        if kind == 'ValidateVariant':
            r = pb.ValidateVariantResponse.FromString(raw)
            want = (ids[0].lower(), org) in m.variants
            if r.exists != want:
                out.append('exists=%s, model says %s' % (r.exists, want))
            if r.variant_id != ids[0]:
                out.append('variant_id %r is not the id sent' % r.variant_id)
            if r.exists and own not in r.sku:
                out.append('sku %r lacks the tenant marker' % r.sku)
        elif kind == 'GetProductDetails':
            r = pb.GetProductDetailsResponse.FromString(raw)
            key = (ids[0].lower(), org)
            if r.success != (key in m.products):
                out.append('success=%s, model says %s' % (r.success, key in m.products))
            elif r.success:
                p, pr = m.products[key], r.product
                if pr.organization_id != org:
                    out.append('organization_id %r' % pr.organization_id)
                brand = p['brand'] if (p['brand'], org) in m.brands else ''
                got_brand = pr.brand.brand_id if pr.HasField('brand') else ''
                if got_brand != brand:
                    out.append('brand %r, model %r' % (got_brand, brand))
                tags = sorted(t for t in p['tags'] if (t, org) in m.tags)
                if sorted(t.tag_id for t in pr.tags) != tags:
                    out.append('tags %r, model %r' % ([t.tag_id for t in pr.tags], tags))
                cols = sorted(c for c in p['cols'] if (c, org) in m.cols)
                if sorted(c.collection_id for c in pr.collections) != cols:
                    out.append('collections %r, model %r' % (
                        [c.collection_id for c in pr.collections], cols))
                if req.include_variants:
                    vs = sorted(v for (v, o), x in m.variants.items()
                                if o == org and x['product'] == key[0])
                    if sorted(v.variant_id for v in pr.variants) != vs:
                        out.append('variants %r, model %r' % (
                            [v.variant_id for v in pr.variants], vs))
                elif pr.variants:
                    out.append('variants without include_variants')
        elif kind == 'GetVariantsBatch':
            r = pb.GetVariantsBatchResponse.FromString(raw)
            found, seen, missing = [], set(), []
            for i in ids:
                if (i.lower(), org) in m.variants:
                    if i.lower() not in seen:
                        seen.add(i.lower())
                        found.append(i.lower())
                else:
                    missing.append(i)
            got = [v.variant_id.lower() for v in r.variants]
            if got != found or list(r.not_found_ids) != missing:
                out.append('found %d/%d not_found %d/%d (got/model)'
                           % (len(got), len(found), len(r.not_found_ids), len(missing)))
        else:
            r = pb.ValidateVariantsBatchResponse.FromString(raw)
            want = [(i, (i.lower(), org) in m.variants) for i in ids]
            got = [(v.variant_id, v.exists) for v in r.validations]
            if got != want:
                bad = [(g, w) for g, w in zip(got, want) if g != w][:3]
                out.append('%d validations differ from the model (%d vs %d entries), e.g. %r'
                           % (sum(g != w for g, w in zip(got, want)), len(got), len(want), bad))
        return out


class TenancyTest(unittest.TestCase):
    def test_no_cross_tenant_bytes(self):
        seed, rng = ru.seeded_rng('TENANCY_SEED')
        target_ids = int(ru.env_float('TENANCY_PROBES', 100000 * ru.scale()))
        model = Model(rng)
        pg = harness.PgCluster()
        self.addCleanup(pg.close)
        pg.psql_file(harness.SCHEMA_SQL)
        pg_ids = pg_seed(model, pg)
        km = kafka.KafkaMock(partitions=3)
        self.addCleanup(km.stop)
        srv = harness.Catalogd({'DATABASE_URL': pg.url(),
                                'KAFKA_BOOTSTRAP_SERVERS': km.bootstrap,
                                'GRPC_MAX_WORKERS': '2'})
        self.addCleanup(srv.close)
        srv.wait_serving(30)
        n_events = kafka_seed(model, km, pg_ids)
        ru.wait_caught_up(srv, km, 30)
        d = ru.digest(srv)
        self.assertEqual(d['counts']['variants'], len(model.variants), d)
        self.assertEqual(d['counts']['products'], len(model.products), d)
        skipped = ru.metric(srv, 'catalogd_warm_load_rows_skipped_total')
        self.assertGreater(skipped, 0, 'rows with an empty or a 256-byte organization skipped')

        t0 = time.monotonic()
        prober = Prober(srv, model, seed, n_threads=6, target_ids=target_ids,
                        target_calls=int(20000 * ru.scale()), time_cap=150 * ru.scale())
        prober.run()
        dt = time.monotonic() - t0
        ru.note('seed=%d tenants=%d (%d variants, %d products served; %d Kafka events); %d ids '
                'probed in %d calls (%s; codes %s), %.1f MB of answers in %.1fs'
                % (seed, len(model.marker), len(model.variants), len(model.products), n_events,
                   prober.ids, prober.calls, prober.by_method, prober.codes,
                   prober.bytes / 1e6, dt))
        self.assertEqual(prober.violations[:10], [], 'cross-tenant bytes in answers')
        self.assertEqual(prober.wrong[:10], [], 'answers that disagree with the catalog')
        self.assertGreaterEqual(prober.ids, target_ids, 'not enough ids probed in time')
        self.assertTrue(srv.alive())
        self.assertEqual(srv.stop(), 0)


if __name__ == '__main__':
    unittest.main()
