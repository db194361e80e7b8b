#!/usr/bin/python3
"""A client that shares nothing with the server and needs no proto file: `buf curl`
(npm @bufbuild/buf, installed into a cache dir on first use) discovers the service by
server reflection and calls it. Skips with a message only if buf cannot be had.
"""
import json
import os
import shutil
import subprocess
import unittest

import harness

CACHE = os.path.join(os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache'),
                     'catalogd-buf')
BUF = os.path.join(CACHE, 'node_modules', '.bin', 'buf')


def ensure_buf():
    if os.path.exists(BUF):
        return True
    if shutil.which('npm') is None:
        return False
    os.makedirs(CACHE, exist_ok=True)
    r = subprocess.run(['npm', 'install', '--silent', '--prefix', CACHE, '@bufbuild/buf'],
                       capture_output=True, text=True, timeout=300)
    return r.returncode == 0 and os.path.exists(BUF)


class BufCurlTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not ensure_buf():
            raise unittest.SkipTest('buf (npm @bufbuild/buf) could not be installed')
        cls.srv = harness.Catalogd({'GRPC_REFLECTION': 'true', 'SYNC_MODE': 'demo'})
        cls.srv.wait_serving(30)

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def curl(self, *args):
        r = subprocess.run([BUF, 'curl', '--protocol', 'grpc', '--http2-prior-knowledge'] +
                           list(args), capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout

    def url(self, method):
        return 'http://127.0.0.1:%d/%s' % (self.srv.port, method)

    def test_lists_services_by_reflection(self):
        out = self.curl('--list-methods', 'http://127.0.0.1:%d' % self.srv.port)
        self.assertIn('catalog.CatalogService/ValidateVariant', out.split())
        self.assertIn('grpc.health.v1.Health/Check', out.split())

    def test_validate_and_product_details(self):
        r = json.loads(self.curl('-d', json.dumps({
            'organization_id': 'demo-org',
            'variant_id': 'D2000000-0000-4000-8000-000000000001'}),
            self.url('catalog.CatalogService/ValidateVariant')))
        self.assertTrue(r['exists'] and r['isActive'])
        self.assertEqual(r['variantId'], 'D2000000-0000-4000-8000-000000000001')
        p = json.loads(self.curl('-d', json.dumps({
            'organization_id': 'demo-org', 'product_id': 'd1000000-0000-4000-8000-000000000001',
            'include_images': True, 'include_variants': True}),
            self.url('catalog.CatalogService/GetProductDetails')))
        self.assertTrue(p['success'])
        self.assertEqual([i['position'] for i in p['product']['images']], [1, 2])
        self.assertEqual(len(p['product']['variants']), 3)
        # Another tenant sees nothing of it.
        other = json.loads(self.curl('-d', json.dumps({
            'organization_id': 'other-org', 'product_id': 'd1000000-0000-4000-8000-000000000001'}),
            self.url('catalog.CatalogService/GetProductDetails')))
        self.assertNotIn('product', other)
        self.assertFalse(other.get('success', False))


if __name__ == '__main__':
    unittest.main()
