#!/usr/bin/python3
"""Warm load details: rows that break the schema's expectations (which PostgreSQL's own
constraints let through) are skipped and counted, never fatal; the rest is served. Child
rows (images, tag and collection links) reach their product or variant whatever their
text holds.
"""
import unittest
import urllib.request

import harness
from harness import pb

GOOD_ORG = 'org_wl'
PID = 'a0000000-0000-4000-8000-000000000001'
GOOD = 'a1000000-0000-4000-8000-000000000001'
EMPTY_ORG = 'a1000000-0000-4000-8000-000000000002'
LONG_ORG = 'a1000000-0000-4000-8000-000000000003'


class WarmLoadTest(unittest.TestCase):
    def test_bad_rows_are_skipped_and_counted(self):
        with harness.PgCluster() as pg:
            pg.psql_file(harness.SCHEMA_SQL)
            pg.psql("""
              INSERT INTO products (id, organization_id, title, sku, status)
                VALUES ('%(pid)s', '%(org)s', 'T', 'P', 'activa');
              INSERT INTO variants (id, organization_id, product_id, sku, status, sale_price,
                                    warehouse_id) VALUES
                ('%(good)s', '%(org)s', '%(pid)s', 'OK', 'active', 1.5, 'W'),
                ('%(empty)s', '', '%(pid)s', 'NO-ORG', 'active', 1.5, 'W'),
                ('%(long)s', repeat('x', 300), '%(pid)s', 'LONG-ORG', 'active', 1.5, 'W');
            """ % {'pid': PID, 'org': GOOD_ORG, 'good': GOOD, 'empty': EMPTY_ORG,
                   'long': LONG_ORG})
            srv = harness.Catalogd({'DATABASE_URL': pg.url()})
            try:
                srv.wait_serving(30)
                stub = srv.catalog_stub()
                r = stub.ValidateVariant(pb.ValidateVariantRequest(
                    organization_id=GOOD_ORG, variant_id=GOOD), timeout=5)
                self.assertTrue(r.exists and r.is_active)
                with urllib.request.urlopen('http://127.0.0.1:%d/metrics' % srv.admin_port,
                                            timeout=10) as m:
                    text = m.read().decode()
                self.assertIn('catalogd_warm_load_rows_skipped_total 2\n', text)
                self.assertIn('catalogd_snapshot_entities{type="variant"} 1\n', text)
                warned = [l for l in srv.logs() if l.get('msg') == 'skipping row that breaks the schema']
                self.assertEqual(len(warned), 2)
                self.assertTrue(all(l['table'] == 'variants' for l in warned))
            finally:
                self.assertEqual(srv.stop(), 0)

    def test_children_arrive_byte_for_byte_and_sorted(self):
        """Images, tags and collections are read as separate COPYs and attached to their
        parents in catalogd (sync/children.c): text that COPY escapes or that other
        encodings would have to quote arrives unchanged, NULL alt stays apart from the
        text 'NULL', and images come sorted by position, then id."""
        pid, vid = 'b0000000-0000-4000-8000-000000000001', 'b1000000-0000-4000-8000-000000000001'
        other = 'b0000000-0000-4000-8000-000000000002'
        tag, col = 'b2000000-0000-4000-8000-000000000001', 'b3000000-0000-4000-8000-000000000001'
        nasty = ['tab\there', 'new\nline\r\n', 'back\\slash \\N', 'quote " and \'', 'a,b{c}d',
                 'NULL', '', ' lead and trail ', 'ünï €']
        img = lambda n: 'b4000000-0000-4000-8000-%012d' % n  # noqa: E731
        # (id, url, alt, position): positions out of order, a tie broken by id.
        pimgs = [(img(9), nasty[0], nasty[1], 5), (img(3), nasty[2], None, 1),
                 (img(7), nasty[3], nasty[5], 1), (img(1), nasty[4], nasty[6], 9),
                 (img(5), nasty[7], nasty[8], -2)]
        vimgs = [(img(20), nasty[5], nasty[0], 2), (img(21), nasty[6], None, 0)]

        def lit(v):
            return 'NULL' if v is None else "E'%s'" % v.replace('\\', '\\\\').replace(
                "'", "\\'").replace('\t', '\\t').replace('\n', '\\n').replace('\r', '\\r')

        def rows(parent, imgs):
            return ', '.join("('%s', '%s', %s, %s, %d)" % (i, parent, lit(u), lit(a), p)
                             for i, u, a, p in imgs)
        with harness.PgCluster() as pg:
            pg.psql_file(harness.SCHEMA_SQL)
            pg.psql("""
              INSERT INTO tags (id, organization_id, name) VALUES ('%(tag)s', '%(org)s', 'T1');
              INSERT INTO collections (id, organization_id, name, slug)
                VALUES ('%(col)s', '%(org)s', 'C1', 'c1');
              INSERT INTO products (id, organization_id, title, sku, status) VALUES
                ('%(pid)s', '%(org)s', 'T', 'P', 'activa'),
                ('%(other)s', '%(org)s', 'U', 'Q', 'activa');
              INSERT INTO variants (id, organization_id, product_id, sku, status, sale_price,
                                    warehouse_id)
                VALUES ('%(vid)s', '%(org)s', '%(pid)s', 'V', 'active', 1, 'W');
              INSERT INTO product_images (id, product_id, url, alt, position) VALUES %(pi)s;
              INSERT INTO variant_images (id, variant_id, url, alt, position) VALUES %(vi)s;
              INSERT INTO product_tags VALUES ('%(pid)s', '%(tag)s');
              INSERT INTO product_collections VALUES ('%(pid)s', '%(col)s');
            """ % {'tag': tag, 'col': col, 'org': GOOD_ORG, 'pid': pid, 'other': other,
                   'vid': vid, 'pi': rows(pid, pimgs), 'vi': rows(vid, vimgs)})
            srv = harness.Catalogd({'DATABASE_URL': pg.url()})
            try:
                srv.wait_serving(30)
                stub = srv.catalog_stub()
                r = stub.GetProductDetails(pb.GetProductDetailsRequest(
                    organization_id=GOOD_ORG, product_id=pid, include_images=True,
                    include_variants=True), timeout=5)
                want = sorted(pimgs, key=lambda i: (i[3], i[0]))
                self.assertEqual([(i.image_id, i.url, i.alt, i.position) for i in r.product.images],
                                 [(i, u, a or '', p) for i, u, a, p in want])
                self.assertEqual([t.tag_id for t in r.product.tags], [tag])
                self.assertEqual([c.collection_id for c in r.product.collections], [col])
                self.assertEqual(len(r.product.variants), 1)
                want = sorted(vimgs, key=lambda i: (i[3], i[0]))
                self.assertEqual([(i.image_id, i.url, i.alt, i.position)
                                  for i in r.product.variants[0].images],
                                 [(i, u, a or '', p) for i, u, a, p in want])
                r = stub.GetProductDetails(pb.GetProductDetailsRequest(
                    organization_id=GOOD_ORG, product_id=other, include_images=True,
                    include_variants=True), timeout=5)
                self.assertEqual((len(r.product.images), len(r.product.tags),
                                  len(r.product.collections)), (0, 0, 0))
            finally:
                self.assertEqual(srv.stop(), 0)


if __name__ == '__main__':
    unittest.main()
