#!/usr/bin/python3
"""Transport security on the gRPC port: TLS (GRPC_TLS_CERT_FILE/KEY_FILE), mutual TLS
(GRPC_TLS_CLIENT_CA_FILE, client certificate required) and certificate rotation without a
restart.  Certificates are made by the openssl CLI in a temp dir.
"""
import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest

import grpc

import harness
from harness import pb

DEMO_VARIANT = 'd2000000-0000-4000-8000-000000000001'


def openssl(*args, cwd):
    subprocess.run(['openssl'] + list(args), cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(d, name):
    openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=' + name,
            '-keyout', name + '.key', '-out', name + '.crt', cwd=d)


def make_cert(d, name, ca, server):
    openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=' + name, '-keyout',
            name + '.key', '-out', name + '.csr', cwd=d)
    ext = os.path.join(d, name + '.ext')
    with open(ext, 'w') as f:
        f.write('subjectAltName=IP:127.0.0.1,DNS:localhost\n' if server else
                'extendedKeyUsage=clientAuth\n')
    openssl('x509', '-req', '-in', name + '.csr', '-CA', ca + '.crt', '-CAkey', ca + '.key',
            '-CAcreateserial', '-days', '2', '-extfile', ext, '-out', name + '.crt', cwd=d)


def read(d, name):
    with open(os.path.join(d, name), 'rb') as f:
        return f.read()


class TlsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix='catalogd-tls-')
        for ca in ('ca1', 'ca2'):
            make_ca(cls.dir, ca)
        make_cert(cls.dir, 'server1', 'ca1', True)
        make_cert(cls.dir, 'server2', 'ca2', True)
        make_cert(cls.dir, 'client', 'ca1', False)
        make_cert(cls.dir, 'stranger', 'ca2', False)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.dir, name)

    def call(self, srv, creds):
        target = '127.0.0.1:%d' % srv.port
        ch = grpc.secure_channel(target, creds) if creds else grpc.insecure_channel(target)
        try:
            return pb_grpc_stub(ch).ValidateVariant(
                pb.ValidateVariantRequest(organization_id='demo-org', variant_id=DEMO_VARIANT),
                timeout=5)
        finally:
            ch.close()

    def creds(self, ca='ca1', client=None):
        kw = {'root_certificates': read(self.dir, ca + '.crt')}
        if client:
            kw['private_key'] = read(self.dir, client + '.key')
            kw['certificate_chain'] = read(self.dir, client + '.crt')
        return grpc.ssl_channel_credentials(**kw)

    def start(self, mutual):
        live = tempfile.mkdtemp(dir=self.dir)
        shutil.copy(self.path('server1.crt'), os.path.join(live, 'tls.crt'))
        shutil.copy(self.path('server1.key'), os.path.join(live, 'tls.key'))
        env = {'GRPC_TLS_CERT_FILE': os.path.join(live, 'tls.crt'),
               'GRPC_TLS_KEY_FILE': os.path.join(live, 'tls.key'), 'SYNC_MODE': 'demo'}
        if mutual:
            env['GRPC_TLS_CLIENT_CA_FILE'] = self.path('ca1.crt')
        srv = harness.Catalogd(env, start=True)
        srv.wait_listening(10)
        return srv, live

    def wait_ok(self, srv, creds, timeout=20):
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.call(srv, creds)
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def test_tls_refuses_plaintext_and_serves_tls(self):
        srv, _ = self.start(mutual=False)
        try:
            r = self.wait_ok(srv, self.creds())
            self.assertTrue(r.exists)
            with self.assertRaises(grpc.RpcError) as e:
                self.call(srv, None)
            self.assertEqual(e.exception.code(), grpc.StatusCode.UNAVAILABLE)
            with self.assertRaises(grpc.RpcError):  # a client that trusts another CA
                self.call(srv, self.creds(ca='ca2'))
        finally:
            self.assertEqual(srv.stop(), 0)

    def test_mutual_tls_requires_a_trusted_client_certificate(self):
        srv, _ = self.start(mutual=True)
        try:
            self.assertTrue(self.wait_ok(srv, self.creds(client='client')).exists)
            with self.assertRaises(grpc.RpcError):
                self.call(srv, self.creds())                     # no client certificate
            with self.assertRaises(grpc.RpcError):
                self.call(srv, self.creds(client='stranger'))    # signed by another CA
        finally:
            self.assertEqual(srv.stop(), 0)

    def test_certificate_rotation_without_restart(self):
        srv, live = self.start(mutual=False)
        try:
            self.wait_ok(srv, self.creds('ca1'))
            # Rotate: write the new pair aside, then rename over the live files.
            for ext in ('crt', 'key'):
                tmp = os.path.join(live, 'new.' + ext)
                shutil.copy(self.path('server2.' + ext), tmp)
                os.rename(tmp, os.path.join(live, 'tls.' + ext))
            self.assertTrue(self.wait_ok(srv, self.creds('ca2')).exists)
            with self.assertRaises(grpc.RpcError):
                self.call(srv, self.creds('ca1'))
            self.assertTrue(srv.alive())
            self.assertTrue(any(l.get('msg') == 'TLS certificates reloaded' for l in srv.logs()))
        finally:
            self.assertEqual(srv.stop(), 0)

    def test_unreadable_certificate_is_a_startup_error(self):
        srv = harness.Catalogd({'SYNC_MODE': 'demo', 'GRPC_TLS_CERT_FILE': self.path('nope.crt'),
                                'GRPC_TLS_KEY_FILE': self.path('nope.key')})
        self.assertNotEqual(srv.wait_exit(10), 0)

    # -- issue 11 #13: TLS mistakes were reported as "Address already in use", unnamed --

    def write(self, name, data):
        with open(self.path(name), 'wb') as f:
            f.write(data)
        return self.path(name)

    def start_error(self, cert, key, ca=None):
        """Starts with these files; it must exit non-zero. Returns the error log lines."""
        env = {'SYNC_MODE': 'demo', 'GRPC_TLS_CERT_FILE': cert, 'GRPC_TLS_KEY_FILE': key}
        if ca:
            env['GRPC_TLS_CLIENT_CA_FILE'] = ca
        srv = harness.Catalogd(env)
        self.addCleanup(srv.close)
        self.assertNotEqual(srv.wait_exit(20), 0)
        text = srv.raw_stdout() + srv.raw_stderr()
        self.assertNotIn('Address already in use', text)
        errors = [l for l in srv.logs() if l.get('level') == 'error']
        self.assertTrue(errors, text[-2000:])
        return errors

    def assertFirstErrorSays(self, errors, *words):
        """The first error line an operator sees names the file(s) and the reason."""
        line = json.dumps(errors[0])
        for w in words:
            self.assertIn(w, line, 'first error line: %s' % line)

    def test_startup_errors_name_the_file_and_the_reason(self):
        crt, key = self.path('server1.crt'), self.path('server1.key')
        garbage = self.write('garbage.pem', b'this is not PEM\n')
        truncated = self.write('truncated.crt', read(self.dir, 'server1.crt')[:300])
        cases = [
            ('missing certificate', (self.path('nope.crt'), key),
             [self.path('nope.crt'), 'GRPC_TLS_CERT_FILE', 'No such file']),
            ('missing key', (crt, self.path('nope.key')),
             [self.path('nope.key'), 'GRPC_TLS_KEY_FILE', 'No such file']),
            ('unreadable certificate (a directory)', (self.dir, key),
             [self.dir, 'GRPC_TLS_CERT_FILE', 'Is a directory']),
            ('key of another certificate', (crt, self.path('server2.key')),
             [crt, self.path('server2.key'), 'does not match']),
            ('garbage certificate', (garbage, key), [garbage, 'GRPC_TLS_CERT_FILE', 'PEM']),
            ('truncated certificate', (truncated, key), [truncated, 'GRPC_TLS_CERT_FILE']),
            ('garbage key', (crt, garbage), [garbage, 'GRPC_TLS_KEY_FILE', 'PEM']),
            ('a certificate given as the key', (crt, crt), [crt, 'GRPC_TLS_KEY_FILE']),
        ]
        for what, (c, k), words in cases:
            with self.subTest(what):
                self.assertFirstErrorSays(self.start_error(c, k), *words)
        with self.subTest('garbage client CA'):
            self.assertFirstErrorSays(self.start_error(crt, key, garbage), garbage,
                                      'GRPC_TLS_CLIENT_CA_FILE')
        with self.subTest('missing client CA'):
            self.assertFirstErrorSays(self.start_error(crt, key, self.path('nope-ca.crt')),
                                      self.path('nope-ca.crt'), 'GRPC_TLS_CLIENT_CA_FILE')

    def test_unusable_rotation_is_not_reloaded(self):
        srv, live = self.start(mutual=False)
        try:
            self.wait_ok(srv, self.creds('ca1'))
            bad = [('garbage', {'crt': b'not a certificate\n'}),
                   ('mismatched key', {'key': read(self.dir, 'server2.key')})]
            for what, files in bad:
                with self.subTest(what):
                    n_err = len([l for l in srv.logs() if 'reload' in l.get('msg', '')
                                 and l.get('level') in ('error', 'warn')])
                    n_ok = sum(1 for l in srv.logs() if l.get('msg') == 'TLS certificates reloaded')
                    for ext, data in files.items():
                        tmp = os.path.join(live, 'new.' + ext)
                        with open(tmp, 'wb') as f:
                            f.write(data)
                        os.rename(tmp, os.path.join(live, 'tls.' + ext))
                    # New handshakes still get the previous (good) certificate.
                    for _ in range(3):
                        self.assertTrue(self.wait_ok(srv, self.creds('ca1')).exists)
                    logs = srv.logs()
                    self.assertEqual(sum(1 for l in logs
                                         if l.get('msg') == 'TLS certificates reloaded'), n_ok,
                                     'an unusable certificate "reloaded"')
                    fails = [l for l in logs if 'reload' in l.get('msg', '')
                             and l.get('level') in ('error', 'warn')][n_err:]
                    self.assertEqual(len(fails), 1, 'logged once per change: %r' % fails)
                    self.assertIn(os.path.join(live, 'tls.'), json.dumps(fails[0]))
                    # Put the good pair back for the next case.
                    for ext in ('crt', 'key'):
                        tmp = os.path.join(live, 'new.' + ext)
                        shutil.copy(self.path('server1.' + ext), tmp)
                        os.rename(tmp, os.path.join(live, 'tls.' + ext))
                    self.assertTrue(self.wait_ok(srv, self.creds('ca1')).exists)
            self.assertTrue(srv.alive())
        finally:
            self.assertEqual(srv.stop(), 0)


def pb_grpc_stub(ch):
    return harness.pb_grpc.CatalogServiceStub(ch)


if __name__ == '__main__':
    unittest.main()
