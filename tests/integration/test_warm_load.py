#!/usr/bin/python3
"""Warm load details: rows that break the schema's expectations (which PostgreSQL's own
constraints let through) are skipped and counted, never fatal; the rest is served.
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


if __name__ == '__main__':
    unittest.main()
