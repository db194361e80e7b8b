#!/usr/bin/python3
"""Transport security on the gRPC port: TLS (GRPC_TLS_CERT_FILE/KEY_FILE), mutual TLS
(GRPC_TLS_CLIENT_CA_FILE, client certificate required) and certificate rotation without a
restart.  Certificates are made by the openssl CLI in a temp dir.
"""
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


def pb_grpc_stub(ch):
    return harness.pb_grpc.CatalogServiceStub(ch)


if __name__ == '__main__':
    unittest.main()
