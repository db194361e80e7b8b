#!/usr/bin/python3
"""The client examples of docs/clients.md are tests: each runs against the demo catalog
(SYNC_MODE=demo) and must print the expected line for every step (a lookup with its
snapshot-version trailer, not found, a batch, a product, a bad request classified).

Python: docs/examples/python/catalog_client.py under /usr/bin/python3 (Debian's grpcio).
Node.js: docs/examples/node/catalog_client.js with @grpc/grpc-js and @grpc/proto-loader
from npm, installed into a cache dir on first use (as test_buf_curl.py gets buf); skips
with a message only if they cannot be had.
"""
import os
import shutil
import subprocess
import unittest

import harness

EXAMPLES = os.path.join(harness.REPO, 'docs', 'examples')
PROTOS = os.path.join(harness.REPO, 'protos')
CACHE = os.path.join(os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache'),
                     'catalogd-node')
NODE_MODULES = os.path.join(CACHE, 'node_modules')

EXPECTED = [
    'validate: exists={t} active={t} price=10.00 snapshot=1',
    'unknown: exists={f} message=Variant 00000000-0000-4000-8000-00000000dead not found',
    'batch: found=1 not_found=00000000-0000-4000-8000-00000000dead',
    'product: success={t} variants=3',
    'bad-request: INVALID_ARGUMENT fix-request',
]


def ensure_node_modules():
    if os.path.isdir(os.path.join(NODE_MODULES, '@grpc', 'grpc-js')) and \
            os.path.isdir(os.path.join(NODE_MODULES, '@grpc', 'proto-loader')):
        return True
    if shutil.which('npm') is None or shutil.which('node') is None:
        return False
    os.makedirs(CACHE, exist_ok=True)
    r = subprocess.run(['npm', 'install', '--silent', '--prefix', CACHE, '@grpc/grpc-js',
                        '@grpc/proto-loader'], capture_output=True, text=True, timeout=300)
    return r.returncode == 0


class ClientExamplesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        harness.require_binary()
        cls.srv = harness.Catalogd({'SYNC_MODE': 'demo'})
        cls.srv.wait_serving(30)

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def run_example(self, argv, env=None):
        r = subprocess.run(argv + [self.srv.target, PROTOS], capture_output=True, text=True,
                           timeout=60, env=dict(os.environ, **(env or {})))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return r.stdout.splitlines()

    def test_python_example(self):
        out = self.run_example(['/usr/bin/python3',
                                os.path.join(EXAMPLES, 'python', 'catalog_client.py')])
        self.assertEqual(out, [e.format(t='True', f='False') for e in EXPECTED])

    def test_node_example(self):
        if not ensure_node_modules():
            self.skipTest('@grpc/grpc-js and @grpc/proto-loader could not be installed')
        out = self.run_example(['node', os.path.join(EXAMPLES, 'node', 'catalog_client.js')],
                               env={'NODE_PATH': NODE_MODULES})
        self.assertEqual(out, [e.format(t='true', f='false') for e in EXPECTED])


if __name__ == '__main__':
    unittest.main()
