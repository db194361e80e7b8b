#!/usr/bin/python3
"""Production safety of the PostgreSQL warm load (issue 11): never hang, never serve
bytes a client cannot decode, never log a secret, fail loudly on what retrying cannot
fix, and show progress on a long start-up.

  BigLoadTest      a 400k-variant catalog (800k rows): SIGTERM in the middle of a COPY;
                   a PostgreSQL that stops answering mid-COPY (a TcpProxy that freezes);
                   SIGTERM while frozen and while connecting; progress logs and gauges
  EncodingTest     a LATIN1 database is read as UTF-8; a SQL_ASCII database's row with
                   invalid UTF-8 is skipped and counted
  RedactionTest    DATABASE_URL passwords in every libpq form never reach stdout/stderr
  PermanentErrorTest  wrong database, missing table, no SELECT permission, wrong
                   password, a DATABASE_URL option libpq rejects before connecting
                   (sslmode=requre, port=abc): error log (with SQLSTATE if any), /readyz names it, exit 3 after
                   PG_PERMANENT_ERROR_ATTEMPTS; PostgreSQL down keeps retrying at warn;
                   empty tables (schema only) are not served: error log naming the
                   database, condition "postgres", retried without ever exiting, served once
                   filled, or at once with ALLOW_EMPTY_CATALOG=true
"""
import json
import os
import signal
import subprocess
import threading
import time
import unittest

import grpc

import harness
import reliability_util as ru
import tcp_proxy
from harness import pb

BIG_N = 400000
BIG_ORG = 'org_big'
BIG_PRODUCT = 'c0000000-0000-4000-8000-000000000001'
GRACE_S = 4         # SHUTDOWN_GRACE_SECONDS given to catalogd
EXIT_SLACK_S = 4    # noisy shared machines: allowed on top of the grace period


def setUpModule():
    harness.require_binary()


eventually = ru.eventually


readyz, logs_with = ru.readyz, ru.logs_with


def psql_db(pg, db, sql, timeout=120, user='postgres'):
    """Run sql in database db (psql's client encoding forced to UTF8)."""
    env = dict(os.environ, PGCONNECT_TIMEOUT='10', PGCLIENTENCODING='UTF8')
    argv = ['psql', '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-d',
            'postgresql://%s@127.0.0.1:%d/%s' % (user, pg.port, db)]
    if os.path.exists(sql):
        argv += ['-f', sql]
    else:
        argv += ['-c', sql]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                         stdin=subprocess.DEVNULL)
    if res.returncode != 0:
        raise RuntimeError('psql failed: %s' % res.stderr.strip())
    return res.stdout


def pg_condition(srv):
    _, body = readyz(srv)
    return [c for c in body.get('conditions', []) if c.get('name') == 'postgres']


# ---------------------------------------------------------------------------
# Hangs and progress on a large catalog
# ---------------------------------------------------------------------------

class BigLoadTest(unittest.TestCase):
    """One cluster holding 400k variants with one image each (the load reads variant
    images, then variants: ~140 MB of COPY text, a few seconds)."""

    @classmethod
    def setUpClass(cls):
        cls.pg = harness.PgCluster()
        try:
            cls.pg.psql_file(harness.SCHEMA_SQL)
            cls.pg.psql(ru.bulk_catalog_sql(BIG_ORG, BIG_PRODUCT, BIG_N), timeout=300)
            cls.pg.psql('VACUUM ANALYZE', timeout=300)  # reltuples: the progress estimate
        except BaseException:
            cls.pg.close()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.pg.close()

    def server(self, url=None, **env):
        e = {'DATABASE_URL': url or self.pg.url(), 'SHUTDOWN_GRACE_SECONDS': str(GRACE_S)}
        e.update({k: str(v) for k, v in env.items()})
        srv = harness.Catalogd(e)
        self.addCleanup(srv.close)
        return srv

    def proxy(self):
        p = tcp_proxy.TcpProxy(self.pg.port)
        self.addCleanup(p.close)
        return p

    def proxied_url(self, proxy):
        return 'postgresql://postgres@127.0.0.1:%d/postgres' % proxy.port

    def assert_exits_in_grace(self, srv, what, drain_s=0):
        """SIGTERM; exit 0 through the normal path within the grace period (plus the drain
        budget where clients are connected: the drain comes first)."""
        t0 = time.monotonic()
        srv.send_signal(signal.SIGTERM)
        try:
            rc = srv.wait_exit(GRACE_S + EXIT_SLACK_S)
        except TimeoutError:
            srv.kill()
            self.fail('%s: still running %ds after SIGTERM (grace %ds)\n%s'
                      % (what, GRACE_S + EXIT_SLACK_S, GRACE_S, srv.tail()))
        took = time.monotonic() - t0
        self.assertEqual(rc, 0, srv.tail())
        # The promise: within SHUTDOWN_GRACE_SECONDS (the slack above only bounds the wait).
        self.assertLess(took, GRACE_S + drain_s,
                        '%s: exit took longer than the drain and the grace period' % what)
        self.assertTrue(logs_with(srv, 'stopped'), 'normal exit path (the "stopped" line)')
        ru.note('%s: exited %.2fs after SIGTERM' % (what, took))
        return took

    def test_sigterm_mid_copy_exits_within_grace(self):
        """Defect 1: SIGTERM while a COPY streams used to spin in PQgetResult forever."""
        srv = self.server()
        eventually(lambda: logs_with(srv, 'table loaded', table='variant_images'), 60,
                   'the variants COPY started')
        time.sleep(0.3)
        self.assertFalse(logs_with(srv, 'warm load done'), 'SIGTERM must land mid-load')
        self.assert_exits_in_grace(srv, 'SIGTERM mid-COPY')
        self.assertFalse(logs_with(srv, 'warm load done'))
        self.assertFalse(logs_with(srv, 'snapshot published'))

    def test_sigterm_mid_copy_with_a_client_polling(self):
        """The shutdown used to drain the gRPC server first while the load went on, so a
        load finished during the drain was published and logged "serving" on the way
        out. The writer is now stopped first: the load is abandoned, never published."""
        srv = self.server(SHUTDOWN_DRAIN_MS=1000)
        eventually(lambda: logs_with(srv, 'table loaded', table='variant_images'), 60,
                   'the variants COPY started')
        stop = threading.Event()

        def poll():  # a client polling health, as a kubelet or a load balancer would
            while not stop.is_set():
                try:
                    srv.health_check(timeout=1)
                except grpc.RpcError:
                    pass
                stop.wait(0.1)
        t = threading.Thread(target=poll, daemon=True)
        t.start()
        self.addCleanup(t.join, 5)
        self.addCleanup(stop.set)
        time.sleep(0.3)
        self.assertFalse(logs_with(srv, 'warm load done'), 'SIGTERM must land mid-load')
        self.assert_exits_in_grace(srv, 'SIGTERM mid-COPY, client polling', drain_s=1)
        self.assertFalse(logs_with(srv, 'warm load done'))
        self.assertFalse(logs_with(srv, 'snapshot published'))
        self.assertFalse(logs_with(srv, 'serving'))

    def test_frozen_postgres_is_abandoned_and_retried(self):
        """Defect 2: no byte for PG_STALL_TIMEOUT_SECONDS mid-COPY -> the attempt is
        abandoned and retried with backoff; when the path heals, the full catalog is
        served."""
        proxy = self.proxy()
        proxy.freeze_after(20 * 1000 * 1000)  # well inside the variant images
        srv = self.server(self.proxied_url(proxy), PG_STALL_TIMEOUT_SECONDS=2)
        eventually(lambda: proxy.frozen, 60, 'the proxy frozen mid-COPY')
        t_freeze = time.monotonic()
        stalled = eventually(lambda: logs_with(srv, 'postgres stopped sending; abandoning the '
                                                    'connection'), 15, 'the stall detected')
        t_stall = time.monotonic()
        self.assertGreaterEqual(t_stall - t_freeze, 1.0, 'not before the timeout')
        self.assertLess(t_stall - t_freeze, 2 + 3, 'detected soon after the 2 s timeout')
        self.assertIn(stalled[0].get('table'), ('variant_images', 'variants'))
        eventually(lambda: logs_with(srv, 'warm load failed; will retry'), 10, 'a retry')
        # While still frozen, the next attempts cannot even connect: they time out too.
        eventually(lambda: len(logs_with(srv, 'warm load failed; will retry')) >= 2, 15,
                   'a second failed attempt while frozen')
        self.assertTrue(srv.alive())
        samples = ru.metrics(srv)
        self.assertGreaterEqual(samples.get('catalogd_warm_load_stalls_total', 0), 1)
        self.assertEqual(readyz(srv)[0], 503)
        self.assertTrue(pg_condition(srv), 'the stall is named in /readyz')
        proxy.forward()
        srv.wait_serving(90)
        samples = ru.metrics(srv)
        self.assertEqual(samples['catalogd_snapshot_entities{type="variant"}'], BIG_N)
        self.assertGreaterEqual(samples['catalogd_warm_load_attempts_total'], 3)
        self.assertEqual(pg_condition(srv), [], 'cleared once loaded')
        ru.note('stall detected %.1fs after the freeze (timeout 2s); served %d variants '
                'after %d attempts' % (t_stall - t_freeze, BIG_N,
                                       samples['catalogd_warm_load_attempts_total']))
        self.assertEqual(srv.stop(), 0)

    def test_sigterm_while_frozen_mid_copy(self):
        """Defect 2: SIGTERM while PostgreSQL is silent mid-COPY (before the stall
        timeout) used to block in PQcancel, which waits on the silent server."""
        proxy = self.proxy()
        proxy.freeze_after(20 * 1000 * 1000)
        srv = self.server(self.proxied_url(proxy), PG_STALL_TIMEOUT_SECONDS=120)
        eventually(lambda: proxy.frozen, 60, 'the proxy frozen mid-COPY')
        time.sleep(1.0)
        self.assert_exits_in_grace(srv, 'SIGTERM while PostgreSQL is frozen mid-COPY')

    def test_sigterm_while_connecting_to_frozen_server(self):
        """Defect 2: the connection itself never waits on the network past SIGTERM."""
        proxy = self.proxy()
        proxy.freeze()
        srv = self.server(self.proxied_url(proxy), PG_STALL_TIMEOUT_SECONDS=120)
        eventually(lambda: logs_with(srv, 'warm load starting'), 20, 'the first attempt')
        eventually(lambda: proxy.accepted >= 1, 10, 'catalogd connected to the proxy')
        time.sleep(1.0)
        self.assert_exits_in_grace(srv, 'SIGTERM while connecting to a frozen server')

    def test_progress_is_logged_and_exported(self):
        """Defect 6: a long load logs "warm load progress" (table, rows, rate, share of
        the estimate, time left) every WARM_LOAD_PROGRESS_SECONDS and exports the
        share. The load is held mid-COPY by a frozen proxy so the figures can be read
        while it runs."""
        proxy = self.proxy()
        proxy.freeze_after(30 * 1000 * 1000)
        srv = self.server(self.proxied_url(proxy), PG_STALL_TIMEOUT_SECONDS=120,
                          WARM_LOAD_PROGRESS_SECONDS=1)
        eventually(lambda: proxy.frozen, 60, 'the proxy frozen mid-COPY')
        lines = eventually(lambda: [l for l in logs_with(srv, 'warm load progress')
                                    if l.get('rows', 0) > 0], 10, 'a progress line')
        p = lines[-1]
        self.assertEqual(p['level'], 'info')
        self.assertIn(p['table'], ('variant_images', 'variants'))
        self.assertGreater(p['rows_per_s'], 0)
        # reltuples after VACUUM ANALYZE: exact or close to it.
        self.assertAlmostEqual(p['estimated_rows'], 2 * BIG_N + 1, delta=0.05 * BIG_N)
        self.assertGreater(p['ratio'], 0)
        self.assertLess(p['ratio'], 1)
        self.assertGreaterEqual(p['eta_seconds'], 0)
        n_before = len(logs_with(srv, 'warm load progress'))
        time.sleep(3.5)
        self.assertGreaterEqual(len(logs_with(srv, 'warm load progress')) - n_before, 2,
                                'a line every second, even while no row arrives')
        samples = ru.metrics(srv)
        ratio = samples['catalogd_warm_load_progress_ratio']
        self.assertGreater(ratio, 0)
        self.assertLess(ratio, 1)
        self.assertGreater(samples['catalogd_warm_load_progress_rows'], 0)
        proxy.forward()
        srv.wait_serving(90)
        samples = ru.metrics(srv)
        self.assertEqual(samples['catalogd_warm_load_progress_ratio'], 1)
        self.assertEqual(samples['catalogd_warm_load_progress_rows'], 2 * BIG_N + 1)
        ru.note('progress line: %s' % {k: p[k] for k in ('table', 'rows', 'rows_per_s', 'ratio',
                                                          'eta_seconds')})
        self.assertEqual(srv.stop(), 0)


# ---------------------------------------------------------------------------
# Encodings (#8)
# ---------------------------------------------------------------------------

ENC_ORG = 'org_enc'
ENC_PRODUCT = 'e0000000-0000-4000-8000-000000000001'
ENC_GOOD = 'e1000000-0000-4000-8000-000000000001'
ENC_BAD = 'e1000000-0000-4000-8000-000000000002'


class EncodingTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = harness.PgCluster()

    @classmethod
    def tearDownClass(cls):
        cls.pg.close()

    def make_db(self, name, encoding):
        self.pg.psql("CREATE DATABASE %s ENCODING '%s' LC_COLLATE 'C' LC_CTYPE 'C' "
                     "TEMPLATE template0" % (name, encoding))
        psql_db(self.pg, name, harness.SCHEMA_SQL)

    def serve(self, db):
        srv = harness.Catalogd({'DATABASE_URL': self.pg.url(db)})
        self.addCleanup(srv.close)
        srv.wait_serving(30)
        return srv

    def test_latin1_database_is_served_as_utf8(self):
        self.make_db('latin1db', 'LATIN1')
        psql_db(self.pg, 'latin1db', """
          INSERT INTO products (id, organization_id, title, sku, status)
            VALUES ('%s', '%s', 'café', 'P-é', 'activa');
          INSERT INTO variants (id, organization_id, product_id, sku, status, sale_price,
                                warehouse_id)
            VALUES ('%s', '%s', '%s', 'café-1', 'active', 1, 'W');
        """ % (ENC_PRODUCT, ENC_ORG, ENC_GOOD, ENC_ORG, ENC_PRODUCT))
        self.assertEqual(psql_db(self.pg, 'latin1db',
                                 "SELECT convert_to(title, 'LATIN1') FROM products").strip(),
                         '\\x636166e9', 'stored as LATIN1 bytes')
        srv = self.serve('latin1db')
        r = srv.catalog_stub().GetProductDetails(pb.GetProductDetailsRequest(
            organization_id=ENC_ORG, product_id=ENC_PRODUCT, include_variants=True), timeout=5)
        self.assertEqual(r.product.title, 'café')
        self.assertEqual(r.product.sku, 'P-é')
        self.assertEqual([v.sku for v in r.product.variants], ['café-1'])
        self.assertEqual(srv.stop(), 0)

    def test_sql_ascii_row_with_invalid_utf8_is_skipped(self):
        self.make_db('asciidb', 'SQL_ASCII')
        psql_db(self.pg, 'asciidb', """
          INSERT INTO products (id, organization_id, title, sku, status)
            VALUES ('%(p)s', '%(o)s', 'plain', 'P', 'activa');
          INSERT INTO variants (id, organization_id, product_id, sku, status, sale_price,
                                warehouse_id) VALUES
            ('%(g)s', '%(o)s', '%(p)s', 'GOOD', 'active', 1, 'W'),
            ('%(b)s', '%(o)s', '%(p)s', E'BAD-\\x80', 'active', 1, 'W');
        """ % {'p': ENC_PRODUCT, 'o': ENC_ORG, 'g': ENC_GOOD, 'b': ENC_BAD})
        srv = self.serve('asciidb')
        stub = srv.catalog_stub()
        good = stub.ValidateVariant(pb.ValidateVariantRequest(
            organization_id=ENC_ORG, variant_id=ENC_GOOD), timeout=5)
        self.assertTrue(good.exists)
        self.assertEqual(good.sku, 'GOOD')
        bad = stub.ValidateVariant(pb.ValidateVariantRequest(
            organization_id=ENC_ORG, variant_id=ENC_BAD), timeout=5)
        self.assertFalse(bad.exists)
        self.assertEqual(ru.metric(srv, 'catalogd_warm_load_rows_skipped_total'), 1)
        skipped = logs_with(srv, 'skipping row that breaks the schema', table='variants')
        self.assertEqual(len(skipped), 1, skipped)
        self.assertIn('UTF-8', skipped[0]['why'])
        self.assertEqual(srv.stop(), 0)


# ---------------------------------------------------------------------------
# Secrets (#11)
# ---------------------------------------------------------------------------

class RedactionTest(unittest.TestCase):
    def run_url(self, url, secrets, until_exit=False):
        srv = harness.Catalogd({'DATABASE_URL': url, 'PG_PERMANENT_ERROR_ATTEMPTS': '2',
                                'LOG_LEVEL': 'debug'})
        self.addCleanup(srv.close)
        if until_exit:
            try:
                srv.wait_exit(30)
            except TimeoutError:
                self.fail('still running after 2 permanent failures\n' + srv.tail())
        else:
            eventually(lambda: len([l for l in srv.logs() if l.get('msg', '').startswith(
                'warm load failed')]) >= 2, 30, 'two failed attempts')
            self.assertEqual(srv.stop(), 0)
        text = srv.raw_stdout() + srv.raw_stderr()
        self.assertTrue(logs_with(srv, 'listening'), srv.tail())
        for s in secrets:
            self.assertNotIn(s, text, 'secret %r logged for %r' % (s, url))
        return srv

    def test_every_libpq_password_form_is_redacted(self):
        port = harness.free_port()  # nothing listens: connection refused, at once
        cases = [
            ('postgresql://u:s3cr?et@127.0.0.1:%d/db' % port, ['s3cr?et', 's3cr']),
            ("host=127.0.0.1 port=%d user=u password='my secret pass' dbname=db" % port,
             ['my secret pass', 'secret pass', "'my"]),
            ('host=127.0.0.1 port=%d user=u password=ab&cdefgh dbname=db' % port,
             ['ab&cdefgh', 'cdefgh']),
            ('host=127.0.0.1 port=%d user=u password = hunter22 dbname=db' % port,
             ['hunter22']),
            ('postgresql://u@127.0.0.1:%d/db?password=qsecret9' % port, ['qsecret9']),
        ]
        for i, (url, secrets) in enumerate(cases):
            with self.subTest(form=i):
                srv = self.run_url(url, secrets)
                shown = logs_with(srv, 'listening')[0]['database_url']
                self.assertIn('****', shown)
                self.assertIn('127.0.0.1', shown)

    def test_unparseable_url_error_never_quotes_it(self):
        """libpq's parse errors quote the string, password included: never logged."""
        port = harness.free_port()
        srv = self.run_url('postgresql://u:s3cr%%zzet@127.0.0.1:%d/db' % port,
                           ['s3cr', 'zzet'], until_exit=True)
        # A configuration error, said at start-up: exit 2, not attempts and exit 3.
        self.assertEqual(srv.returncode, 2, srv.tail())
        errs = [l for l in srv.logs() if l.get('level') == 'error']
        self.assertFalse(logs_with(srv, 'warm load starting'), 'no load attempt')
        self.assertTrue(any('DATABASE_URL' in json.dumps(l) for l in errs), errs)


# ---------------------------------------------------------------------------
# Permanent and transient errors (#12, PostgreSQL part)
# ---------------------------------------------------------------------------

class PermanentErrorTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = pg = harness.PgCluster()
        try:
            pg.load_fixtures()
            pg.psql('CREATE DATABASE missing_table')
            psql_db(pg, 'missing_table', harness.SCHEMA_SQL)
            psql_db(pg, 'missing_table', 'DROP TABLE product_collections')
            pg.psql('CREATE DATABASE schema_only')
            psql_db(pg, 'schema_only', harness.SCHEMA_SQL)
            pg.psql("CREATE ROLE noselect LOGIN")
            pg.psql("SET password_encryption = 'scram-sha-256'; "
                    "CREATE ROLE pwuser LOGIN SUPERUSER PASSWORD 'right-pass-1'")
            hba = os.path.join(pg.datadir, 'pg_hba.conf')
            with open(hba) as f:
                old = f.read()
            with open(hba, 'w') as f:
                f.write('host all pwuser 127.0.0.1/32 scram-sha-256\n' + old)
            pg.psql('SELECT pg_reload_conf()')
            time.sleep(0.5)
        except BaseException:
            pg.close()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.pg.close()

    def base(self, user='postgres', db='postgres', password=None):
        auth = user if password is None else '%s:%s' % (user, password)
        return 'postgresql://%s@127.0.0.1:%d/%s' % (auth, self.pg.port, db)

    def check_permanent(self, url, sqlstate, words):
        # Many attempts allowed: /readyz and the log while it keeps failing.
        srv = harness.Catalogd({'DATABASE_URL': url, 'PG_PERMANENT_ERROR_ATTEMPTS': '1000'})
        self.addCleanup(srv.close)
        errs = eventually(lambda: [l for l in srv.logs() if l.get('level') == 'error'
                                   and l.get('sqlstate') == sqlstate], 20,
                          'an error-level log with SQLSTATE %s' % sqlstate)
        self.assertTrue(any(w in errs[0].get('error', '') for w in words), errs[0])
        status, body = readyz(srv)
        self.assertEqual(status, 503)
        conds = [c for c in body['conditions'] if c['name'] == 'postgres']
        self.assertEqual(len(conds), 1, body)
        self.assertEqual(conds[0]['level'], 'error')
        self.assertIn(sqlstate, conds[0]['message'])
        self.assertFalse([l for l in srv.logs() if 'right-pass' in json.dumps(l)])
        self.assertEqual(srv.stop(), 0)
        # Two attempts allowed: exits non-zero on its own.
        srv = harness.Catalogd({'DATABASE_URL': url, 'PG_PERMANENT_ERROR_ATTEMPTS': '2'})
        self.addCleanup(srv.close)
        try:
            rc = srv.wait_exit(30)
        except TimeoutError:
            self.fail('still running after 2 permanent failures\n' + srv.tail())
        self.assertEqual(rc, 3, srv.tail())
        failed = [l for l in srv.logs() if l.get('level') == 'error'
                  and l.get('sqlstate') == sqlstate and l.get('msg', '').startswith('warm load')]
        self.assertGreaterEqual(len(failed), 2, srv.tail())
        ru.note('%s: %s' % (sqlstate, errs[0].get('error')))

    def test_wrong_database(self):
        self.check_permanent(self.base(db='no_such_db'), '3D000', ['no_such_db'])

    def test_missing_table(self):
        self.check_permanent(self.base(db='missing_table'), '42P01', ['product_collections'])

    def test_no_select_permission(self):
        self.check_permanent(self.base(user='noselect'), '42501', ['permission denied'])

    def test_wrong_password(self):
        self.check_permanent(self.base(user='pwuser', password='wrong-pass-1'), '28P01',
                             ['password authentication failed'])

    def test_right_password_loads(self):
        srv = harness.Catalogd({'DATABASE_URL': self.base(user='pwuser',
                                                          password='right-pass-1')})
        self.addCleanup(srv.close)
        srv.wait_serving(30)
        self.assertNotIn('right-pass-1', srv.raw_stdout() + srv.raw_stderr())
        self.assertEqual(srv.stop(), 0)

    def test_option_rejected_before_connecting_is_permanent(self):
        # libpq parses these URLs but refuses them before any network activity: retrying
        # cannot help. (Before: warn, retried for ever, never exit 3.)
        for url, word in ((self.base(password='right-pass-1') + '?sslmode=requre', 'sslmode'),
                          ('host=127.0.0.1 port=abc dbname=postgres user=postgres', 'port')):
            srv = harness.Catalogd({'DATABASE_URL': url, 'PG_PERMANENT_ERROR_ATTEMPTS': '2',
                                    'PG_RETRY_MAX_SECONDS': '1'})
            self.addCleanup(srv.close)
            try:
                rc = srv.wait_exit(30)
            except TimeoutError:
                self.fail('%s: still running after 2 permanent failures\n%s' % (url, srv.tail()))
            self.assertEqual(rc, 3, srv.tail())
            self.assertFalse(logs_with(srv, 'warm load failed; will retry'), srv.tail())
            failed = logs_with(srv, 'warm load failed: postgres refuses it; giving up')
            self.assertEqual(len(failed), 1, srv.tail())
            self.assertEqual(failed[0]['level'], 'error')
            self.assertIn(word, failed[0]['error'])
            self.assertNotIn('right-pass-1', srv.raw_stdout() + srv.raw_stderr())
        # Failures libpq also reports before polling, but from the network (name
        # resolution, a missing Unix socket), stay transient.
        for url in ('postgresql://postgres@nonexistent-host.invalid/x',
                    'host=/nonexistent-socket-dir dbname=x user=postgres'):
            srv = harness.Catalogd({'DATABASE_URL': url, 'PG_PERMANENT_ERROR_ATTEMPTS': '2',
                                    'PG_RETRY_MAX_SECONDS': '1'})
            self.addCleanup(srv.close)
            eventually(lambda: len(logs_with(srv, 'warm load failed; will retry')) >= 3, 30,
                       '%s: three transient failures' % url)
            self.assertTrue(srv.alive(), srv.tail())
            self.assertEqual(pg_condition(srv)[0]['level'], 'warn')
            self.assertEqual(srv.stop(), 0)

    def test_empty_tables_are_not_served_until_filled(self):
        url = self.base(user='pwuser', password='right-pass-1', db='schema_only')
        # Expected empty: served at once.
        srv = harness.Catalogd({'DATABASE_URL': url, 'ALLOW_EMPTY_CATALOG': 'true'})
        self.addCleanup(srv.close)
        srv.wait_serving(30)
        self.assertEqual(pg_condition(srv), [])
        self.assertEqual(srv.stop(), 0)
        # Not expected: retried (more attempts than PG_PERMANENT_ERROR_ATTEMPTS, no exit).
        srv = harness.Catalogd({'DATABASE_URL': url, 'PG_PERMANENT_ERROR_ATTEMPTS': '2',
                                'PG_RETRY_MAX_SECONDS': '1'})
        self.addCleanup(srv.close)
        msg = 'warm load found an empty catalog; will retry'
        eventually(lambda: len(logs_with(srv, msg)) >= 4, 30, 'four empty loads')
        self.assertTrue(srv.alive(), srv.tail())
        self.assertEqual(srv.health_check(), harness.NOT_SERVING)
        line = logs_with(srv, msg)[0]
        self.assertEqual(line['level'], 'error')
        self.assertIn("dbname='schema_only'", line['database'])
        self.assertNotIn('right-pass-1', srv.raw_stdout() + srv.raw_stderr())
        status, _ = readyz(srv)
        self.assertEqual(status, 503)
        conds = pg_condition(srv)
        self.assertEqual(len(conds), 1)
        self.assertEqual(conds[0]['level'], 'error')
        self.assertIn('empty', conds[0]['message'])
        self.assertIn('ALLOW_EMPTY_CATALOG', conds[0]['message'])
        self.assertFalse(logs_with(srv, 'warm load failed: postgres refuses it; giving up'))
        # Filled later: served, condition cleared.
        psql_db(self.pg, 'schema_only', harness.SEED_SQL)
        srv.wait_serving(30)
        self.assertEqual(pg_condition(srv), [])
        self.assertEqual(srv.stop(), 0)

    def test_postgres_down_keeps_retrying_at_warn(self):
        port = harness.free_port()
        srv = harness.Catalogd({'DATABASE_URL': 'postgresql://postgres@127.0.0.1:%d/x' % port,
                                'PG_PERMANENT_ERROR_ATTEMPTS': '2'})
        self.addCleanup(srv.close)
        eventually(lambda: len(logs_with(srv, 'warm load failed; will retry')) >= 4, 30,
                   'four failed attempts')
        self.assertTrue(srv.alive())
        failed = logs_with(srv, 'warm load failed; will retry')
        self.assertTrue(all(l['level'] == 'warn' for l in failed))
        self.assertFalse([l for l in srv.logs() if l.get('level') == 'error'])
        conds = pg_condition(srv)
        self.assertEqual(len(conds), 1)
        self.assertEqual(conds[0]['level'], 'warn')
        self.assertEqual(srv.stop(), 0)


if __name__ == '__main__':
    unittest.main()
