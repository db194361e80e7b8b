#!/usr/bin/python3
"""`buf lint` passes on the wire contract (protos/catalog.proto with protos/buf.yaml,
whose exceptions are each justified there), and the contract names its packages for
other languages without changing the wire (package `catalog`). buf comes from npm
(@bufbuild/buf) as in test_buf_curl.py; skips only if it cannot be had.
"""
import os
import re
import subprocess
import unittest

import harness
from test_buf_curl import BUF, ensure_buf

PROTOS = os.path.join(harness.REPO, 'protos')


class BufLintTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not ensure_buf():
            raise unittest.SkipTest('buf (npm @bufbuild/buf) could not be installed')

    def test_contract_lints_clean(self):
        r = subprocess.run([BUF, 'lint', '--path', 'catalog.proto'], cwd=PROTOS,
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_language_options_and_package(self):
        with open(os.path.join(PROTOS, 'catalog.proto')) as f:
            text = f.read()
        self.assertRegex(text, re.compile(r'^package catalog;$', re.M))
        for opt in ('go_package', 'java_package', 'java_multiple_files', 'csharp_namespace'):
            self.assertRegex(text, re.compile(r'^option %s = ' % opt, re.M))


if __name__ == '__main__':
    unittest.main()
