#!/usr/bin/python3
"""catalogd benchmark driver (run it through bench/run.sh; see bench/README.md).

One run measures catalogd and its two references on the same machine, one after the
other, so that ratios are comparable even on a shared, noisy box:

  ours   catalogd (build/catalogd), warm-loaded from a throwaway PostgreSQL, tailing a
         Kafka mock broker
  noop   bench/noop_server.c: the same gRPC C core threading, a fixed reply
  orig   bench/orig_server.py: the original design, PostgreSQL queries per call

Everything started here is stopped at exit (tests/integration/harness.py cleanup
registry: atexit, exceptions, SIGTERM, SIGINT). Every wait and loop is bounded.
Results: bench/results/<profile>.json (+ .md table, latency-vs-throughput PNG);
per-run raw JSON and logs stay in the work directory (under the build dir).
"""
import argparse
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, os.pardir))
sys.path.insert(0, os.path.join(REPO, 'tests', 'integration'))

PROFILES = {
    # short: `make bench`, <= 5 minutes; a 100k-variant catalog (20k products).
    'short': dict(variants=100_000, products=20_000, duration=3, warmup=1, orig_duration=3,
                  rounds=3, round_duration=2,
                  levels=[0.25, 0.5, 0.75], profile_s=3, probes=80, publish_events=60,
                  updates=40_000, replay_partitions=16, time_limit=600),
    # full: `make bench-full`; the 1M-variant catalog of the issue (200k products).
    'full': dict(variants=1_000_000, products=200_000, duration=10, warmup=2, orig_duration=8,
                 rounds=3, round_duration=6,
                 levels=[0.1, 0.25, 0.5, 0.75, 0.9, 1.0], profile_s=8, probes=300, publish_events=300,
                 updates=60_000, replay_partitions=64, time_limit=3600),
}
ORGS = 20
OURS_CONN, OURS_INFLIGHT = 4, 16     # closed loop for catalogd and the no-op server
ORIG_CONN, ORIG_INFLIGHT = 2, 8      # the Python reference saturates its one core with fewer
FEED_RATE = 1000                     # change events per second in the feed scenarios
SYNC_CPU_SAMPLE_GAP = 0.05           # seconds between the 1-event batches

TARGETS_DOC = 'docs/performance.md'


def log(*a):
    print('[bench %s]' % time.strftime('%H:%M:%S'), *a, flush=True)


class Proc:
    """A child process registered with the harness cleanup (stopped at exit)."""

    def __init__(self, argv, env=None, cwd=None, stdout=None, stdin=None, name=None):
        import harness
        self.name = name or os.path.basename(argv[0])
        self.log_path = stdout
        out = open(stdout, 'wb') if stdout else subprocess.DEVNULL
        self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                     stdin=stdin if stdin is not None else subprocess.DEVNULL)
        if stdout:
            out.close()
        harness._register(self)

    def wait_line(self, prefix, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError('%s exited (%s):\n%s' % (self.name, self.proc.returncode,
                                                            self.tail()))
            with open(self.log_path, 'r', errors='replace') as f:
                for line in f:
                    if line.startswith(prefix):
                        return line[len(prefix):].strip()
            time.sleep(0.05)
        raise TimeoutError('%s: no "%s" after %ss\n%s' % (self.name, prefix, timeout, self.tail()))

    def tail(self, n=20):
        try:
            with open(self.log_path, errors='replace') as f:
                return ''.join(f.readlines()[-n:])
        except (OSError, TypeError):
            return ''

    def stop(self, timeout=15):
        import harness
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        harness._unregister(self)
        return self.proc.returncode

    def _cleanup(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class Bench:
    def __init__(self, args):
        self.a = args
        self.p = PROFILES[args.profile]
        self.build = os.path.abspath(args.build)
        self.bin = {
            'catalogd': os.path.join(self.build, 'catalogd'),
            'bench': os.path.join(self.build, 'bench', 'catalog-bench'),
            'gen': os.path.join(self.build, 'bench', 'catalog-gen'),
            'noop': os.path.join(self.build, 'bench', 'noop-server'),
            'smap': os.path.join(self.build, 'bench', 'smap-lookup'),
            'mock': os.path.join(self.build, 'tests', 'tools', 'kafka-mock-host'),
            'produce': os.path.join(self.build, 'tests', 'tools', 'kafka-produce'),
        }
        self.work = os.path.abspath(args.workdir or os.path.join(self.build, 'bench-work',
                                                                 args.profile))
        # Run private copies: the build directory may be rebuilt meanwhile (a concurrent
        # `make test` relinks these binaries, and a half-written one cannot be started).
        shutil.rmtree(self.work, ignore_errors=True)
        os.makedirs(os.path.join(self.work, 'bin'))
        for k, v in self.bin.items():
            if not os.access(v, os.X_OK):
                raise SystemExit('missing %s (build first: cmake --build %s)' % (v, args.build))
            dst = os.path.join(self.work, 'bin', os.path.basename(v))
            shutil.copy2(v, dst)
            self.bin[k] = dst
        os.environ['KAFKA_MOCK_HOST_BIN'] = self.bin['mock']
        os.environ['KAFKA_PRODUCE_BIN'] = self.bin['produce']
        os.environ['CATALOGD_BIN'] = self.bin['catalogd']
        self.data = os.path.join(self.build, 'bench-data', '%s-%d' % (args.profile,
                                                                    self.p['variants']))
        self.raw = os.path.join(self.work, 'runs')
        os.makedirs(self.raw)
        self.results_dir = os.path.join(REPO, 'bench', 'results')
        os.makedirs(self.results_dir, exist_ok=True)
        self.R = {'profile': args.profile, 'started': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
                  'machine': machine(), 'catalog': None, 'settings': {
                      'ours_closed': {'connections': OURS_CONN, 'inflight': OURS_INFLIGHT},
                      'orig_closed': {'connections': ORIG_CONN, 'inflight': ORIG_INFLIGHT},
                      'duration_s': self.p['duration'], 'warmup_s': self.p['warmup'],
                      'grpc_workers': 2, 'feed_events_per_s': FEED_RATE},
                  'runs': {}, 'scenarios': {}, 'system': {}, 'targets': []}
        self.samples = os.path.join(self.data, 'samples.tsv')

    # ---------------------------------------------------------------- data + PostgreSQL
    def generate(self):
        meta = os.path.join(self.data, 'meta.json')
        want = ['--variants', str(self.p['variants']), '--products', str(self.p['products']),
                '--orgs', str(ORGS), '--updates', str(self.p['updates'])]
        stamp = os.path.join(self.data, 'args')
        if os.path.exists(meta) and os.path.exists(stamp) and open(stamp).read() == ' '.join(want):
            log('catalog data cached in', self.data)
        else:
            shutil.rmtree(self.data, ignore_errors=True)
            os.makedirs(os.path.dirname(self.data), exist_ok=True)
            t = time.monotonic()
            subprocess.run([self.bin['gen'], '--out', self.data] + want, check=True, timeout=600)
            with open(stamp, 'w') as f:
                f.write(' '.join(want))
            log('generated catalog in %.1fs' % (time.monotonic() - t))
        with open(meta) as f:
            self.R['catalog'] = json.load(f)
        os.chmod(self.data, 0o755)

    def start_pg(self):
        import harness
        self.pg = harness.PgCluster()
        self.pg.psql_file(harness.SCHEMA_SQL)
        t = time.monotonic()
        subprocess.run(['psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', self.pg.url(), '-1',
                        '-f', 'load.sql'], cwd=self.data, check=True, timeout=1800,
                       stdin=subprocess.DEVNULL)
        load_s = time.monotonic() - t
        t = time.monotonic()
        self.pg.psql('VACUUM ANALYZE', timeout=600)
        self.R['system']['pg_copy_in_s'] = round(load_s, 3)
        self.R['system']['pg_vacuum_analyze_s'] = round(time.monotonic() - t, 3)
        log('PostgreSQL loaded by COPY in %.1fs' % load_s)

    def psql_copy_reference(self):
        """psql \\copy of exactly the rows catalogd's warm load reads (sync/pg_rows.c), in
        one REPEATABLE READ transaction, to /dev/null."""
        queries = [
            'SELECT id, organization_id, name, slug, description, version FROM brands',
            'SELECT id, organization_id, name, NULL, NULL, version FROM tags',
            'SELECT id, organization_id, name, slug, NULL, version FROM collections',
            'SELECT product_id, id, url, alt, position FROM product_images',
            'SELECT product_id, tag_id FROM product_tags',
            'SELECT product_id, collection_id FROM product_collections',
            'SELECT id, organization_id, local_id, title, sku, barcode, description, status, '
            'product_type, unit_of_measure, alert_stock, brand_id, version FROM products',
            'SELECT variant_id, id, url, alt, position FROM variant_images',
            'SELECT id, organization_id, product_id, sku, barcode, status, sale_price, '
            'cost_price, tax, weight, dim_length, dim_width, dim_height, lot_number, '
            'stock_total, stock_available, stock_reserved, warehouse_id, vendor, '
            'track_inventory, default_min_stock, default_max_stock, version FROM variants']
        script = 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;\n' + ''.join(
            "\\copy (%s) TO '/dev/null'\n" % q for q in queries) + 'COMMIT;\n'
        path = os.path.join(self.work, 'copy_ref.sql')
        with open(path, 'w') as f:
            f.write(script)
        t = time.monotonic()
        subprocess.run(['psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', self.pg.url(), '-f',
                        path], check=True, timeout=900, stdin=subprocess.DEVNULL)
        return time.monotonic() - t

    def trim_experiment(self, ours):
        """How much of the RSS after the warm load is heap the load freed but glibc kept:
        call malloc_trim(0) in catalogd once (gdb), read RSS again."""
        mem = self.R['scenarios']['memory']
        if not shutil.which('gdb'):
            return
        r = subprocess.run(['gdb', '-p', str(ours.pid), '-batch', '-nx', '-ex',
                            'call (int)malloc_trim(0)'], capture_output=True, text=True,
                           timeout=120, stdin=subprocess.DEVNULL)
        rss = scrape(ours).get('process_resident_memory_bytes', 0)
        if r.returncode == 0 and rss:
            mem['rss_bytes_after_malloc_trim'] = rss
            mem['rss_bytes_per_variant_after_malloc_trim'] = round(rss / mem['variants'], 1)
            log('RSS after malloc_trim(0): %.1f MB = %.0f B/variant' % (
                rss / 1e6, rss / mem['variants']))

    def micro_lookup(self):
        r = subprocess.run([self.bin['smap'], str(self.p['variants'])], capture_output=True,
                           text=True, timeout=600)
        if r.returncode == 0:
            self.R['scenarios']['smap_lookup'] = json.loads(r.stdout)
            sl = self.R['scenarios']['smap_lookup']
            log('smap at %d entries: lookup %s ns, batched %s ns (uthash per shard: %s ns); '
                'fork + 1 put %s ns' % (self.p['variants'], sl['smap_ns'], sl['many_ns'],
                                        sl['uthash_ns'], sl['fork_put_ns']))

    # ---------------------------------------------------------------- servers
    def start_catalogd(self, name, env):
        import harness
        e = {'GRPC_MAX_WORKERS': '2', 'LOG_LEVEL': 'info'}
        e.update(env)
        srv = harness.Catalogd(e, binary=self.bin['catalogd'])
        srv.wait_serving(1800)
        log('%s serving on %s' % (name, srv.target))
        return srv

    def start_noop(self):
        import harness
        port = harness.free_port()
        env = dict(os.environ, GRPC_PORT=str(port), GRPC_MAX_WORKERS='2')
        p = Proc([self.bin['noop']], env=env, stdout=os.path.join(self.work, 'noop.log'),
                 name='noop-server')
        p.wait_line('LISTENING ', 15)
        p.target = '127.0.0.1:%d' % port
        return p

    def start_orig(self):
        import harness
        port = harness.free_port()
        env = dict(os.environ, GRPC_PORT=str(port), DATABASE_URL=self.pg.url(), POOL_SIZE='10')
        p = Proc(['/usr/bin/python3', os.path.join(HERE, 'orig_server.py')], env=env,
                 stdout=os.path.join(self.work, 'orig.log'), name='orig-server')
        p.wait_line('LISTENING ', 60)
        p.target = '127.0.0.1:%d' % port
        return p

    # ---------------------------------------------------------------- load generator
    def run_bench(self, key, target, method, batch=100, rate=0, conns=OURS_CONN,
                  inflight=OURS_INFLIGHT, duration=None, warmup=None, check=False, extra=()):
        duration = duration or self.p['duration']
        warmup = self.p['warmup'] if warmup is None else warmup
        out = os.path.join(self.raw, key + '.json')
        argv = [self.bin['bench'], '--target', target, '--samples', self.samples,
                '--method', method, '--batch', str(batch), '--connections', str(conns),
                '--inflight', str(inflight), '--duration', str(duration), '--warmup',
                str(warmup), '--json', out, '--label', key]
        if rate:
            argv += ['--rate', '%.0f' % rate]
        if check:
            argv.append('--check')
        argv += list(extra)
        r = subprocess.run(argv, capture_output=True, text=True,
                           timeout=duration + warmup + 60)
        sys.stdout.write(r.stderr)
        sys.stdout.flush()
        if r.returncode != 0:
            raise RuntimeError('catalog-bench failed (%s): %s' % (r.returncode, r.stderr))
        with open(out) as f:
            res = json.load(f)
        self.R['runs'][key] = slim(res)
        return res

    # ---------------------------------------------------------------- scenarios
    def h2load(self, key, target, path, req, extra):
        """h2load with per-request log; returns throughput and percentiles (us) computed
        from its log (h2load itself prints only min/max/mean/sd)."""
        d = self.p['duration']
        logf = os.path.join(self.raw, key + '.log')
        argv = ['h2load', '-c', str(OURS_CONN), '-t', '2', '-D', str(d),
                '--warm-up-time=%d' % self.p['warmup'], '-d', req, '--log-file', logf,
                '-H', 'content-type: application/grpc', '-H', 'te: trailers'] + extra + \
            ['http://%s%s' % (target, path)]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=d + 60)
        txt = r.stdout
        with open(os.path.join(self.raw, key + '.txt'), 'w') as f:
            f.write(' '.join(argv) + '\n' + txt + r.stderr)
        m = re.search(r'finished in [\d.]+\w+, ([\d.]+) req/s', txt)
        ok = re.search(r'(\d+) succeeded, (\d+) failed', txt)
        lat = []
        try:
            with open(logf) as f:
                for line in f:
                    parts = line.split()
                    if len(parts) >= 3 and parts[1] == '200':
                        lat.append(int(parts[2]))
        except OSError:
            pass
        lat.sort()

        def pct(q):
            return lat[min(len(lat) - 1, int(q * len(lat)))] if lat else None
        return {'throughput_rps': float(m.group(1)) if m else None,
                'succeeded': int(ok.group(1)) if ok else None,
                'failed': int(ok.group(2)) if ok else None,
                'latency_us': {'mean': round(sum(lat) / len(lat), 1) if lat else None,
                               'p50': pct(0.5), 'p90': pct(0.9), 'p99': pct(0.99),
                               'p999': pct(0.999), 'max': lat[-1] if lat else None}}

    def crosscheck_h2load(self, noop):
        """catalog-bench and h2load, same settings, same fixed request, no-op server:
        closed loop (-c4 -m16), then a fixed rate well below saturation."""
        req = os.path.join(self.work, 'validate.req')
        path = subprocess.run([self.bin['bench'], '--samples', self.samples, '--method',
                               'validate', '--dump-request', req], check=True,
                              capture_output=True, text=True).stdout.strip()
        res = {'settings': 'no-op server, ValidateVariant, one fixed request, %d connections, '
                           '2 client threads, %ss after %ss warm-up' % (
                               OURS_CONN, self.p['duration'], self.p['warmup'])}
        cb = self.run_bench('crosscheck_cb_closed', noop.target, 'validate', extra=['--fixed'])
        h2 = self.h2load('crosscheck_h2load_closed', noop.target, path, req,
                         ['-m', str(OURS_INFLIGHT)])
        res['closed'] = {'inflight': OURS_INFLIGHT, 'catalog_bench': slim(cb), 'h2load': h2}
        rate = 2000
        cb = self.run_bench('crosscheck_cb_rate', noop.target, 'validate', rate=rate,
                            extra=['--fixed'])
        h2 = self.h2load('crosscheck_h2load_rate', noop.target, path, req,
                         ['-m', '1', '--rps', str(rate // OURS_CONN)])
        res['rate'] = {'rate': rate, 'catalog_bench': slim(cb), 'h2load': h2}
        for k in ('closed', 'rate'):
            log('cross-check %s: h2load %.0f req/s p50 %s p99 %s us; catalog-bench %.0f req/s '
                'p50 %s p99 %s us' % (k, res[k]['h2load']['throughput_rps'] or 0,
                                      res[k]['h2load']['latency_us']['p50'],
                                      res[k]['h2load']['latency_us']['p99'],
                                      res[k]['catalog_bench']['throughput_rps'],
                                      res[k]['catalog_bench']['latency_us']['p50'],
                                      res[k]['catalog_bench']['latency_us']['p99']))
        self.R['scenarios']['crosscheck_h2load'] = res

    def profile(self, key, pid, target, method, batch=100):
        """perf (cpu-clock, call graphs) of one server process during an extra closed-loop
        run (not one of the measured runs); keeps the top of the flat profile."""
        if os.environ.get('BENCH_PERF', '1') == '0' or not shutil.which('perf'):
            return
        data = os.path.join(self.work, key + '.perf')
        d = self.p['profile_s']
        perf = subprocess.Popen(['perf', 'record', '-q', '-e', 'cpu-clock', '-F', '1999', '-g',
                                 '-o', data, '-p', str(pid), '--', 'sleep', str(d)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.run_bench('profile_' + key, target, method, batch, duration=d + 1, warmup=0)
        perf.wait(60)
        self.write_profile(key, data, 'perf record -e cpu-clock -g -p <%s> during a '
                           'closed-loop %s run (%d x %d)' % (key, method, OURS_CONN, OURS_INFLIGHT))

    def write_profile(self, key, data, what):
        rep = subprocess.run(['perf', 'report', '-i', data, '--no-children', '--percent-limit',
                              '0.7', '--sort', 'comm,dso,symbol', '--stdio', '-g', 'none'],
                             capture_output=True, text=True, timeout=300).stdout
        lines = [l.rstrip()[:160] for l in rep.splitlines() if l.strip() and not l.startswith('#')]
        dso = subprocess.run(['perf', 'report', '-i', data, '--no-children', '--sort', 'comm,dso',
                              '--stdio', '-g', 'none'],
                             capture_output=True, text=True, timeout=300).stdout
        dlines = [l.rstrip() for l in dso.splitlines() if l.strip() and not l.startswith('#')]
        out = os.path.join(self.results_dir, '%s-profile-%s.txt' % (self.a.profile, key))
        with open(out, 'w') as f:
            f.write('# %s, %s profile\n# by thread and shared object:\n' % (what, self.a.profile))
            f.write('\n'.join(dlines[:15]) + '\n# by symbol (>= 0.7 %):\n')
            f.write('\n'.join(lines[:60]) + '\n')
        self.R['scenarios'].setdefault('profiles', {})[key] = os.path.relpath(out, REPO)

    def profile_startup(self, key, env):
        """perf of a whole catalogd start-up (warm load or replay), in an extra run: the
        measured ones run without perf."""
        if os.environ.get('BENCH_PERF', '1') == '0' or not shutil.which('perf'):
            return
        import harness
        data = os.path.join(self.work, key + '.perf')
        wrap = os.path.join(self.work, key + '.sh')
        with open(wrap, 'w') as f:
            f.write('#!/bin/sh\nexec perf record -q -e cpu-clock -F 999 -g -o %s -- %s\n' % (
                data, self.bin['catalogd']))
        os.chmod(wrap, 0o755)
        e = {'GRPC_MAX_WORKERS': '2', 'LOG_LEVEL': 'info'}
        e.update(env)
        srv = harness.Catalogd(e, binary=wrap)
        srv.wait_serving(1800)
        done = [l for l in srv.logs() if l.get('msg') in ('warm load done', 'replay caught up')]
        srv.stop(timeout=120)
        self.write_profile(key, data, 'perf record -e cpu-clock -g of catalogd from start to '
                           'serving (%s; %s)' % (key, json.dumps(done[-1] if done else None)))

    def correctness(self, ours, orig):
        bad = {}
        for method, batch in (('validate', 1), ('product', 1), ('variants', 100),
                              ('vbatch', 100)):
            for name, srv in (('ours', ours), ('orig', orig)):
                r = self.run_bench('check_%s_%s' % (name, method), srv.target, method, batch,
                                   conns=1, inflight=2, duration=1, warmup=0, check=True)
                if r['check_mismatch'] or r['errors'] or not r['checked']:
                    bad['%s_%s' % (name, method)] = r['check_mismatch']
        self.R['scenarios']['correctness'] = {'ok': not bad, 'mismatches': bad}
        log('reply checks:', 'all replies as expected' if not bad else bad)

    def method_scenario(self, name, method, batch, ours, orig=None, noop=None, open_rate=0.5,
                        rounds=1):
        """Closed-loop max for each server, then catalogd open loop at open_rate x its max.
        With rounds > 1 the closed-loop runs alternate (ours, no-op, original, ours, ...)
        and the run with the median throughput represents each server: on a shared
        machine, background load then hits all servers alike."""
        sc = {'method': method, 'batch': batch}
        servers = [('ours', ours, {})]
        if noop is not None:
            servers.append(('noop', noop, {}))
        if orig is not None:
            servers.append(('orig', orig, dict(
                conns=ORIG_CONN, inflight=ORIG_INFLIGHT if batch < 1000 else 2,
                duration=self.p['orig_duration'], check=True)))
        runs = {k: [] for k, _, _ in servers}
        for i in range(rounds):
            for k, srv, kw in servers:
                key = '%s_%s_closed%s' % (name, k, '' if rounds == 1 else '_r%d' % (i + 1))
                kw = dict(kw)
                if rounds > 1:
                    kw['duration'] = min(kw.get('duration', 1e9), self.p['round_duration'])
                runs[k].append(slim(self.run_bench(key, srv.target, method, batch, **kw)))
        for k, rs in runs.items():
            rs_sorted = sorted(rs, key=lambda r: r['throughput_rps'])
            sc[k + '_closed'] = rs_sorted[len(rs_sorted) // 2]
            if rounds > 1:
                sc[k + '_closed_rounds_rps'] = [r['throughput_rps'] for r in rs]
        if open_rate:
            rate = open_rate * sc['ours_closed']['throughput_rps']
            sc['ours_open50'] = slim(self.run_bench(name + '_ours_open50', ours.target, method,
                                                    batch, rate=rate))
        self.R['scenarios'][name] = sc
        return sc

    def sweep(self, ours, noop, base_rps):
        """Open-loop latency vs offered load, the same absolute rates for both servers."""
        pts = []
        for lvl in self.p['levels']:
            rate = lvl * base_rps
            for name, srv in (('ours', ours), ('noop', noop)):
                key = 'sweep_%s_%03d' % (name, int(lvl * 100))
                try:
                    r = self.run_bench(key, srv.target, 'validate', rate=rate)
                except subprocess.TimeoutExpired:
                    # Far past the knee the backlog outlasts the run's time limit: that is
                    # a result (overloaded), not a reason to lose the whole run.
                    log('%s: still draining at the time limit; recorded as overloaded' % key)
                    pts.append({'server': name, 'level': lvl, 'rate': rate, 'overloaded': True})
                    continue
                pts.append({'server': name, 'level': lvl, 'rate': rate,
                            'throughput_rps': r['throughput_rps'], **r['latency_us']})
        self.R['scenarios']['validate_sweep'] = {'base_rps': base_rps, 'points': pts}
        return pts

    # ---------------------------------------------------------------- change feed
    def start_feed(self, mock):
        """kafka-produce fed from a pipe: FEED_RATE update events per second from a pacer
        thread, plus probe events injected by measure_visibility()."""
        self.feed = Proc([self.bin['produce'], '--bootstrap', mock.bootstrap, '--topic',
                          'catalog.changes', '--timeout-ms', '10000'],
                         stdout=os.path.join(self.work, 'feed.log'), stdin=subprocess.PIPE,
                         name='kafka-produce')
        with open(os.path.join(self.data, 'updates.tsv')) as f:
            lines = f.readlines()
        n_probe = self.p['probes'] + self.p['publish_events']
        self.probe_lines = lines[-n_probe:]
        self.feed_lines = lines[:-n_probe]
        self.feed_lock = threading.Lock()
        self.feed_stop = threading.Event()
        self.feed_sent = 0
        self.feed_paused = threading.Event()

        def pace():
            t0 = time.monotonic()
            i = 0
            deadline = t0 + 1800
            while not self.feed_stop.is_set() and i < len(self.feed_lines) and \
                    time.monotonic() < deadline:
                if self.feed_paused.is_set():
                    time.sleep(0.01)
                    t0 = time.monotonic() - i / FEED_RATE
                    continue
                due = int((time.monotonic() - t0) * FEED_RATE)
                if due > i:
                    chunk = self.feed_lines[i:min(due, len(self.feed_lines))]
                    with self.feed_lock:
                        self.feed.proc.stdin.write(''.join(chunk).encode())
                        self.feed.proc.stdin.flush()
                    i += len(chunk)
                    self.feed_sent = i
                time.sleep(0.002)
        self.feed_thread = threading.Thread(target=pace, daemon=True)
        self.feed_thread.start()

    def send_event(self, line):
        with self.feed_lock:
            self.feed.proc.stdin.write(line.encode())
            self.feed.proc.stdin.flush()

    def stop_feed(self):
        self.feed_stop.set()
        self.feed_thread.join(10)
        try:
            self.feed.proc.stdin.close()
        except OSError:
            pass
        try:
            self.feed.proc.wait(30)
        except subprocess.TimeoutExpired:
            pass
        self.feed.stop()

    def measure_visibility(self, ours):
        """Event -> visible: write one variant upsert with a unique price into the feed
        (while FEED_RATE events/s flow), then poll ValidateVariant until that price shows."""
        import harness
        pb = harness.pb
        stub = ours.catalog_stub()
        lat = []
        timeouts = 0
        for line in self.probe_lines[:self.p['probes']]:
            ev = json.loads(line.split('\t', 1)[1])
            org, vid, price = ev['organization_id'], ev['entity_id'], ev['data']['sale_price']
            req = pb.ValidateVariantRequest(organization_id=org, variant_id=vid)
            t0 = time.monotonic()
            self.send_event(line)
            seen = False
            while time.monotonic() - t0 < 5:
                r = stub.ValidateVariant(req, timeout=2)
                if abs(r.price - float(price)) < 1e-6:
                    seen = True
                    break
                time.sleep(0.0005)
            if seen:
                lat.append((time.monotonic() - t0) * 1000)
            else:
                timeouts += 1
            time.sleep(0.02)
        lat.sort()

        def pct(q):
            return round(lat[min(len(lat) - 1, int(q * len(lat)))], 2) if lat else None
        res = {'probes': len(lat), 'timeouts': timeouts, 'p50_ms': pct(0.5),
               'p90_ms': pct(0.9), 'p99_ms': pct(0.99), 'max_ms': round(lat[-1], 2) if lat else None,
               'background_events_per_s': FEED_RATE}
        self.R['scenarios']['event_visible'] = res
        log('event->visible: p50 %s ms, p99 %s ms (%d probes, %d timeouts)' % (
            res['p50_ms'], res['p99_ms'], len(lat), timeouts))

    def measure_publish_cpu(self, ours):
        """Writer CPU per published snapshot for 1-event batches: per-thread CPU of
        catalogd's threads (/proc/<pid>/task/*/schedstat) over N events sent one at a time,
        minus the same thread's CPU over an idle window of the same length."""
        pid = ours.pid
        n = self.p['publish_events']
        window = n * SYNC_CPU_SAMPLE_GAP
        self.feed_paused.set()
        time.sleep(0.5)
        c0, m0 = thread_cpu(pid), scrape(ours)
        time.sleep(window)
        c1, m1 = thread_cpu(pid), scrape(ours)
        for line in self.probe_lines[self.p['probes']:self.p['probes'] + n]:
            self.send_event(line)
            time.sleep(SYNC_CPU_SAMPLE_GAP)
        time.sleep(0.5)
        c2, m2 = thread_cpu(pid), scrape(ours)
        self.feed_paused.clear()
        idle = {t: c1.get(t, (0, ''))[0] - c0.get(t, (0, ''))[0] for t in c1}
        busy = {t: c2.get(t, (0, ''))[0] - c1.get(t, (0, ''))[0] for t in c2}
        # The writer is the "catalogd" thread that did the most work while events arrived
        # (workers are idle: no RPC load meanwhile). Threads inherit the process name;
        # should none carry it (a renamed binary), any thread but the main one and
        # librdkafka's; should there be none at all, the step is skipped, not the run.
        cands = [t for t in busy if c2[t][1].startswith('catalogd') and t != pid] or \
            [t for t in busy if t != pid and not c2[t][1].startswith('rdk:')]
        if not cands:
            log('publish CPU: no writer thread among %s; step skipped'
                % sorted({c[1] for c in c2.values()}))
            self.R.setdefault('skipped', []).append('publish_1event: no writer thread found')
            return
        sync_tid = max(cands, key=lambda t: busy[t] - idle.get(t, 0))
        pubs = m2.get('catalogd_snapshots_published_total', 0) - \
            m1.get('catalogd_snapshots_published_total', 0)
        applied = m2.get('catalogd_events_total{type="variant",result="applied"}', 0) - \
            m1.get('catalogd_events_total{type="variant",result="applied"}', 0)
        ps = m2.get('catalogd_snapshot_publish_duration_seconds_sum', 0) - \
            m1.get('catalogd_snapshot_publish_duration_seconds_sum', 0)
        pc = m2.get('catalogd_snapshot_publish_duration_seconds_count', 0) - \
            m1.get('catalogd_snapshot_publish_duration_seconds_count', 0)
        idle_ns = idle.get(sync_tid, 0) * (window + 0.5) / window  # same length as busy
        net = busy[sync_tid] - idle_ns
        rdk = sum(busy[t] for t in busy if c2[t][1].startswith('rdk:'))
        res = {'events': n, 'applied': applied, 'snapshots_published': pubs,
               'sync_thread_cpu_us_per_publish': round(net / max(pubs, 1) / 1000, 1),
               'sync_thread_cpu_us_per_publish_gross': round(busy[sync_tid] / max(pubs, 1) / 1000, 1),
               'sync_thread_idle_cpu_us_per_s': round(idle.get(sync_tid, 0) / window / 1000, 1),
               'librdkafka_threads_cpu_us_per_event': round(rdk / max(n, 1) / 1000, 1),
               'publish_wall_us_mean': round(ps / pc * 1e6, 1) if pc else None}
        self.R['scenarios']['publish_1event'] = res
        if os.environ.get('BENCH_PERF', '1') != '0' and shutil.which('perf'):
            data = os.path.join(self.work, 'catalogd-writer.perf')
            perf = subprocess.Popen(['perf', 'record', '-q', '-e', 'cpu-clock', '-F', '4999', '-g',
                                     '-o', data, '-t', str(sync_tid), '--', 'sleep',
                                     str(window + 1)], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            time.sleep(0.3)
            self.feed_paused.set()
            extra = self.probe_lines[self.p['probes']:self.p['probes'] + n]
            for line in extra:
                ev = json.loads(line.split('\t', 1)[1])
                ev['version'] += 1000
                ev['data']['version'] = ev['version']
                self.send_event(line.split('\t', 1)[0] + '\t' + json.dumps(
                    ev, separators=(',', ':')) + '\n')
                time.sleep(SYNC_CPU_SAMPLE_GAP)
            self.feed_paused.clear()
            perf.wait(60)
            self.write_profile('catalogd-writer', data, 'perf record -e cpu-clock -g -t <writer '
                               'thread> while %d one-event batches are applied %d ms apart' % (
                                   n, SYNC_CPU_SAMPLE_GAP * 1000))
        log('1-event publish: %s us writer CPU net (%s gross), wall %s us, %d snapshots for %d '
            'events' % (res['sync_thread_cpu_us_per_publish'],
                        res['sync_thread_cpu_us_per_publish_gross'],
                        res['publish_wall_us_mean'], pubs, n))

    # ---------------------------------------------------------------- replay
    def replay(self, warm_digest):
        import kafka
        kafka.MOCK_BIN, kafka.PRODUCE_BIN = self.bin['mock'], self.bin['produce']
        parts = self.p['replay_partitions']
        mock = kafka.KafkaMock(partitions=parts)
        t = time.monotonic()
        r = subprocess.run([self.bin['produce'], '--bootstrap', mock.bootstrap, '--topic',
                            'catalog.changes', '--compression', 'zstd', '--file',
                            os.path.join(self.data, 'events.tsv'), '--timeout-ms', '120000'],
                           capture_output=True, text=True, timeout=1800)
        if r.returncode != 0:
            raise RuntimeError('produce failed: %s' % r.stderr[-2000:])
        produce_s = time.monotonic() - t
        wm = mock.command('watermarks catalog.changes')
        kept = sum(int(hi) - int(lo) for lo, hi in re.findall(r'\d+:(\d+)-(\d+)', wm))
        log('produced %d events in %.1fs; the mock keeps %d' % (
            self.R['catalog']['events'], produce_s, kept))
        srv = self.start_catalogd('catalogd (replay)', {
            'KAFKA_BOOTSTRAP_SERVERS': mock.bootstrap, 'SYNC_MODE': 'replay'})
        line = [l for l in srv.logs() if l.get('msg') == 'replay caught up'][-1]
        m = scrape(srv)
        digest = http_json(srv, '/digest')
        res = {'events': self.R['catalog']['events'], 'events_kept_by_mock': kept,
               'partitions': parts, 'compression': 'zstd', 'produce_s': round(produce_s, 2),
               'messages': line.get('messages'), 'seconds': line.get('seconds'),
               'events_per_s': line.get('events_per_s'),
               'rss_bytes': m.get('process_resident_memory_bytes'),
               'digest_equals_warm_load': digest.get('digest') == warm_digest.get('digest'),
               'variants': m.get('catalogd_snapshot_entities{type="variant"}')}
        self.R['scenarios']['replay'] = res
        log('replay: %s events/s (%s events in %ss); digest equals warm load: %s' % (
            res['events_per_s'], res['messages'], res['seconds'], res['digest_equals_warm_load']))
        srv.stop()
        self.profile_startup('catalogd-replay', {'KAFKA_BOOTSTRAP_SERVERS': mock.bootstrap,
                                                 'SYNC_MODE': 'replay'})
        mock.stop()

    # ---------------------------------------------------------------- the run
    def run(self):
        import kafka
        kafka.MOCK_BIN, kafka.PRODUCE_BIN = self.bin['mock'], self.bin['produce']
        t_all = time.monotonic()
        self.R['background_before'] = background_cpu()
        self.micro_lookup()
        log('machine busy before the run: %s%% %s' % (self.R['background_before']['busy_pct'],
                                                      self.R['background_before']['top'][:3]))
        self.generate()
        self.start_pg()
        ref1 = self.psql_copy_reference()
        mock = kafka.KafkaMock(partitions=3)
        ours = self.start_catalogd('catalogd', {'DATABASE_URL': self.pg.url(),
                                                'KAFKA_BOOTSTRAP_SERVERS': mock.bootstrap})
        ref2 = self.psql_copy_reference()
        warm = [l for l in ours.logs() if l.get('msg') == 'warm load done'][-1]
        m = scrape(ours)
        variants = m.get('catalogd_snapshot_entities{type="variant"}', 0)
        rss = m.get('process_resident_memory_bytes', 0)
        self.R['scenarios']['warm_load'] = {
            'rows': warm['rows'], 'catalogd_s': warm['seconds'],
            'psql_copy_devnull_s': [round(ref1, 3), round(ref2, 3)],
            'ratio': round(warm['seconds'] / min(ref1, ref2), 3)}
        self.R['scenarios']['memory'] = {
            'rss_bytes': rss, 'variants': variants,
            'entities': {k.split('"')[1]: v for k, v in m.items()
                         if k.startswith('catalogd_snapshot_entities')},
            'rss_bytes_per_variant': round(rss / variants, 1) if variants else None}
        log('warm load %.2fs vs psql \\copy %.2fs / %.2fs; RSS %.1f MB = %.0f B/variant' % (
            warm['seconds'], ref1, ref2, rss / 1e6, rss / max(variants, 1)))
        self.trim_experiment(ours)
        warm_digest = http_json(ours, '/digest')

        noop = self.start_noop()
        orig = self.start_orig()
        self.crosscheck_h2load(noop)
        self.correctness(ours, orig)

        vv = self.method_scenario('validate', 'validate', 1, ours, orig, noop,
                                  rounds=self.p['rounds'])
        self.sweep(ours, noop, vv['ours_closed']['throughput_rps'])
        self.profile('catalogd-validate', ours.pid, ours.target, 'validate')
        self.profile('noop-validate', noop.proc.pid, noop.target, 'validate')
        noop.stop()
        self.method_scenario('vbatch100', 'vbatch', 100, ours, orig, rounds=self.p['rounds'])
        self.profile('catalogd-vbatch100', ours.pid, ours.target, 'vbatch', 100)
        self.method_scenario('vbatch1000', 'vbatch', 1000, ours,
                             orig if self.a.profile == 'full' else None)
        self.method_scenario('variants100', 'variants', 100, ours, orig)
        self.method_scenario('product', 'product', 1, ours, orig)
        mix = self.method_scenario('mixed', 'mix', 100, ours, orig)
        orig.stop()

        # The same mixed open-loop load while the change feed applies FEED_RATE events/s.
        applied0 = scrape(ours).get('catalogd_events_total{type="variant",result="applied"}', 0)
        self.start_feed(mock)
        time.sleep(1)
        rate = 0.5 * mix['ours_closed']['throughput_rps']
        t0 = time.monotonic()
        r = self.run_bench('mixed_feed_ours_open50', ours.target, 'mix', 100, rate=rate)
        secs = time.monotonic() - t0
        applied1 = scrape(ours).get('catalogd_events_total{type="variant",result="applied"}', 0)
        self.R['scenarios']['mixed_feed'] = {
            'ours_open50': slim(r), 'events_applied': applied1 - applied0,
            'events_per_s_applied': round((applied1 - applied0) / (secs + 1), 1)}
        self.measure_visibility(ours)
        self.measure_publish_cpu(ours)
        self.stop_feed()
        ours.stop()
        mock.stop()
        self.replay(warm_digest)
        self.profile_startup('catalogd-warmload', {'DATABASE_URL': self.pg.url()})
        self.pg.stop()
        self.R['background_after'] = background_cpu()
        self.R['elapsed_s'] = round(time.monotonic() - t_all, 1)
        self.finish()

    # ---------------------------------------------------------------- report
    def finish(self):
        self.R['targets'] = evaluate(self.R)
        base = os.path.join(self.results_dir, self.a.profile)
        with open(base + '.json', 'w') as f:
            json.dump(self.R, f, indent=1, sort_keys=False)
            f.write('\n')
        md = render_markdown(self.R)
        with open(base + '.md', 'w') as f:
            f.write(md)
        plot(self.R, base, self.work)
        print()
        print(md)
        log('results: bench/results/%s.json, .md, -latency.png (%.0fs)' % (
            self.a.profile, self.R['elapsed_s']))


# -------------------------------------------------------------------- helpers

def slim(r):
    keep = ('label', 'method', 'batch', 'mode', 'connections', 'inflight', 'rate_target',
            'duration_s', 'requests', 'errors', 'throughput_rps', 'ids_per_s', 'client_cpu_s',
            'late_sends', 'max_send_lag_us', 'check_mismatch', 'status', 'latency_us')
    out = {k: r[k] for k in keep if k in r}
    if r.get('method') == 'mix':
        out['per_method'] = r.get('per_method')
    return out


def machine():
    model = ''
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    model = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    mem = 0
    try:
        with open('/proc/meminfo') as f:
            mem = int(f.readline().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass

    def ver(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout \
                .splitlines()[0].strip()
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return None
    return {'nproc': os.cpu_count(), 'cpu_model': model, 'mem_bytes': mem,
            'kernel': platform.release(), 'grpc_core': ver(['pkg-config', '--modversion', 'grpc']),
            'postgresql': ver(['psql', '--version']), 'h2load': ver(['h2load', '--version'])}


def background_cpu(seconds=2.0):
    """CPU used by every process on the machine over a short window (before and after the
    run, when none of ours is running): busy fraction and the top consumers."""
    def ticks():
        out = {}
        for pid in os.listdir('/proc'):
            if not pid.isdigit():
                continue
            try:
                with open('/proc/%s/stat' % pid) as f:
                    st = f.read()
                comm = st[st.index('(') + 1:st.rindex(')')]
                fields = st[st.rindex(')') + 2:].split()
                out[int(pid)] = (comm, int(fields[11]) + int(fields[12]))
            except (OSError, ValueError, IndexError):
                pass
        return out

    def busy():
        with open('/proc/stat') as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v) - v[3] - v[4], sum(v)
    a, (b0, t0) = ticks(), busy()
    time.sleep(seconds)
    b, (b1, t1) = ticks(), busy()
    hz = os.sysconf('SC_CLK_TCK')
    top = sorted(((b[p][1] - a[p][1], b[p][0]) for p in b if p in a and p != os.getpid()),
                 reverse=True)[:5]
    return {'busy_pct': round(100.0 * (b1 - b0) / max(t1 - t0, 1), 1),
            'top': [{'comm': c, 'cpu_pct': round(100.0 * d / hz / seconds, 1)}
                    for d, c in top if d > 0]}


def scrape(srv):
    body = urllib.request.urlopen('http://127.0.0.1:%d/metrics' % srv.admin_port,
                                  timeout=10).read().decode()
    out = {}
    for line in body.splitlines():
        if line.startswith('#') or ' ' not in line:
            continue
        k, v = line.rsplit(' ', 1)
        try:
            out[k] = float(v)
        except ValueError:
            pass
    return out


def http_json(srv, path):
    return json.loads(urllib.request.urlopen('http://127.0.0.1:%d%s' % (srv.admin_port, path),
                                             timeout=120).read().decode())


def thread_cpu(pid):
    """{tid: (cpu_ns, comm)} for every thread of pid."""
    out = {}
    for tid in os.listdir('/proc/%d/task' % pid):
        try:
            with open('/proc/%d/task/%s/schedstat' % (pid, tid)) as f:
                ns = int(f.read().split()[0])
            with open('/proc/%d/task/%s/comm' % (pid, tid)) as f:
                comm = f.read().strip()
            out[int(tid)] = (ns, comm)
        except (OSError, ValueError):
            pass
    return out


def _get(R, *path):
    x = R
    for p in path:
        if not isinstance(x, dict) or p not in x:
            return None
        x = x[p]
    return x


def evaluate(R):
    S = R['scenarios']
    t = []

    def add(name, value, limit, ok, unit=''):
        t.append({'target': name, 'value': value, 'limit': limit, 'unit': unit,
                  'met': bool(ok) if value is not None else None})

    def ratio(a, b):
        return round(a / b, 3) if a and b else None
    vv_o = _get(S, 'validate', 'ours_closed', 'throughput_rps')
    vv_n = _get(S, 'validate', 'noop_closed', 'throughput_rps')
    vv_g = _get(S, 'validate', 'orig_closed', 'throughput_rps')
    r = ratio(vv_o, vv_n)
    add('ValidateVariant throughput >= 0.9 x no-op', r, 0.9, r is not None and r >= 0.9, 'x')
    p99 = _get(S, 'validate', 'ours_open50', 'latency_us', 'p99')
    add('ValidateVariant p99 <= 1 ms (open loop, 50% of max)', p99, 1000,
        p99 is not None and p99 <= 1000, 'us')
    p999 = _get(S, 'validate', 'ours_open50', 'latency_us', 'p999')
    add('ValidateVariant p99.9 <= 2 ms (open loop, 50% of max)', p999, 2000,
        p999 is not None and p999 <= 2000, 'us')
    for key, name, lim in (('vbatch1000', 'ValidateVariantsBatch(1000)', 2000),
                           ('variants100', 'GetVariantsBatch(100)', 1000),
                           ('product', 'GetProductDetails', 1000)):
        v = _get(S, key, 'ours_open50', 'latency_us', 'p99')
        add('%s p99 <= %g ms (open loop, 50%% of max)' % (name, lim / 1000), v, lim,
            v is not None and v <= lim, 'us')
    r = ratio(vv_o, vv_g)
    add('ValidateVariant >= 50 x original design', r, 50, r is not None and r >= 50, 'x')
    r = ratio(_get(S, 'vbatch100', 'ours_closed', 'throughput_rps'),
              _get(S, 'vbatch100', 'orig_closed', 'throughput_rps'))
    add('ValidateVariantsBatch(100) >= 200 x original design', r, 200,
        r is not None and r >= 200, 'x')
    r = _get(S, 'warm_load', 'ratio')
    add('warm load <= 1.5 x psql \\copy', r, 1.5, r is not None and r <= 1.5, 'x')
    v = _get(S, 'memory', 'rss_bytes_per_variant')
    add('RSS <= 600 B/variant', v, 600, v is not None and v <= 600, 'B')
    v = _get(S, 'replay', 'events_per_s')
    add('replay >= 200k events/s', v, 200000, v is not None and v >= 200000, 'events/s')
    v = _get(S, 'event_visible', 'p99_ms')
    add('event->visible p99 <= 50 ms at 1000 events/s', v, 50, v is not None and v <= 50, 'ms')
    v = _get(S, 'publish_1event', 'sync_thread_cpu_us_per_publish')
    add('1-event publish <= 1 ms writer CPU', v, 1000, v is not None and v <= 1000, 'us')
    return t


def fmt_lat(r):
    if not r:
        return '| – | – | – | – | – |'
    L = r['latency_us']
    return '| %d | %d | %d | %d | %d |' % (L['p50'], L['p90'], L['p99'], L['p999'], L['max'])


def render_markdown(R):
    S = R['scenarios']
    c = R['catalog']
    M = R['machine']
    out = ['## Results: `%s` profile (%s)' % (R['profile'], R['started']), '',
           'Machine: %s CPUs (%s), %.0f GB RAM, kernel %s; gRPC core %s. Catalog: %d variants, '
           '%d products, %d organizations. Client, servers, PostgreSQL and the broker share the '
           'machine.' % (M['nproc'], M['cpu_model'], M['mem_bytes'] / 2**30, M['kernel'],
                         M['grpc_core'], c['variants'], c['products'], c['organizations']), '',
           'Closed loop: catalogd and no-op %d connections x %d in flight; original design %d x '
           '%d. Open loop "50%%": a fixed rate of half of catalogd\'s closed-loop maximum for '
           'that method, latency measured from the intended send time. Latencies in '
           'microseconds.' % (OURS_CONN, OURS_INFLIGHT, ORIG_CONN, ORIG_INFLIGHT), '']
    rows = [('validate', 'ValidateVariant'), ('vbatch100', 'ValidateVariantsBatch(100)'),
            ('vbatch1000', 'ValidateVariantsBatch(1000)'), ('variants100', 'GetVariantsBatch(100)'),
            ('product', 'GetProductDetails (variants + images)'),
            ('mixed', 'mixed 70/10/10/10 (batches of 100)')]
    out += ['| scenario | server | mode | req/s | ids/s | p50 | p90 | p99 | p99.9 | max | ratio |',
            '|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|']
    for key, title in rows:
        sc = S.get(key)
        if not sc:
            continue
        ours = sc['ours_closed']['throughput_rps']
        for sk, srv, mode in (('ours_closed', 'catalogd', 'closed'),
                              ('noop_closed', 'no-op', 'closed'),
                              ('orig_closed', 'original', 'closed'),
                              ('ours_open50', 'catalogd', 'open 50%')):
            r = sc.get(sk)
            if not r:
                continue
            rat = ''
            rr = sc.get(sk + '_rounds_rps')
            if rr:
                mode = 'closed, median of %s' % '/'.join('%.0f' % x for x in rr)
            if sk == 'noop_closed':
                rat = 'catalogd/no-op = %.2f' % (ours / r['throughput_rps'])
            elif sk == 'orig_closed' and r['throughput_rps']:
                rat = 'catalogd/original = %.0fx' % (ours / r['throughput_rps'])
            if r.get('errors'):
                rat = (rat + '; ' if rat else '') + '%d errors' % r['errors']
            out.append('| %s | %s | %s | %.0f | %.0f %s %s |' % (
                title, srv, mode, r['throughput_rps'], r['ids_per_s'], fmt_lat(r)[:-2],
                ('| ' + rat) if rat else '|'))
    mf = S.get('mixed_feed')
    if mf:
        r = mf['ours_open50']
        out.append('| mixed + change feed %d events/s | catalogd | open 50%% | %.0f | %.0f %s '
                   '| %.0f events/s applied%s |' % (
                       FEED_RATE, r['throughput_rps'], r['ids_per_s'], fmt_lat(r)[:-2],
                       mf['events_per_s_applied'],
                       '; %d calls unanswered after the drain' % r['errors'] if r['errors'] else ''))
    sw = S.get('validate_sweep')
    if sw:
        out += ['', 'ValidateVariant, open loop, latency vs offered load (same rates for both):',
                '', '| offered req/s | server | achieved req/s | p50 | p90 | p99 | p99.9 | max |',
                '|---:|---|---:|---:|---:|---:|---:|---:|']
        for p in sw['points']:
            if p.get('overloaded'):
                out.append('| %.0f | %s | overloaded: backlog still draining at the time limit '
                           '| | | | | |' % (p['rate'], p['server']))
                continue
            out.append('| %.0f | %s | %.0f | %d | %d | %d | %d | %d |' % (
                p['rate'], p['server'], p['throughput_rps'], p['p50'], p['p90'], p['p99'],
                p['p999'], p['max']))
    wl, mem, rp = S.get('warm_load'), S.get('memory'), S.get('replay')
    ev, pub = S.get('event_visible'), S.get('publish_1event')
    out += ['', '| measurement | value |', '|---|---|']
    if wl:
        out.append('| warm load, catalogd (%d rows) | %.2f s |' % (wl['rows'], wl['catalogd_s']))
        out.append('| psql `\\copy` of the same rows to /dev/null | %s s |' % ' / '.join(
            '%.2f' % x for x in wl['psql_copy_devnull_s']))
        out.append('| ratio (best psql) | %.2f |' % wl['ratio'])
    if mem:
        out.append('| RSS after load | %.1f MB = %.0f B/variant |' % (
            mem['rss_bytes'] / 1e6, mem['rss_bytes_per_variant']))
    if rp:
        out.append('| replay from the mock broker (%d events, %d partitions, zstd) | %.0f events/s '
                   '(%.2f s); digest = warm load: %s |' % (
                       rp['messages'] or 0, rp['partitions'], rp['events_per_s'] or 0,
                       rp['seconds'] or 0, rp['digest_equals_warm_load']))
    if ev:
        out.append('| event -> visible at %d events/s (%d probes) | p50 %s ms, p99 %s ms, max %s ms |'
                   % (FEED_RATE, ev['probes'], ev['p50_ms'], ev['p99_ms'], ev['max_ms']))
    if pub:
        out.append('| 1-event batch: writer thread CPU per publish | %s us (gross %s us; '
                   'commit wall time %s us; %d snapshots for %d events) |' % (
                       pub['sync_thread_cpu_us_per_publish'],
                       pub['sync_thread_cpu_us_per_publish_gross'], pub['publish_wall_us_mean'],
                       pub['snapshots_published'], pub['events']))
    cc = S.get('crosscheck_h2load')
    if cc:
        for k, what in (('closed', 'closed loop -m%d' % OURS_INFLIGHT),
                        ('rate', 'fixed rate %s req/s' % cc['rate']['rate'])):
            h, b = cc[k]['h2load'], cc[k]['catalog_bench']
            out.append('| cross-check vs h2load (no-op, fixed request, %s) | h2load %.0f req/s, '
                       'p50/p99 %s/%s us; catalog-bench %.0f req/s, p50/p99 %s/%s us |' % (
                           what, h['throughput_rps'] or 0, h['latency_us']['p50'],
                           h['latency_us']['p99'], b['throughput_rps'], b['latency_us']['p50'],
                           b['latency_us']['p99']))
    co = S.get('correctness')
    if co:
        out.append('| reply checks (catalogd and original, every method) | %s |' % (
            'as expected' if co['ok'] else 'MISMATCH %s' % co['mismatches']))
    for k in ('background_before', 'background_after'):
        bg = R.get(k)
        if bg:
            out.append('| other load on the machine, %s the run | %s%% busy; %s |' % (
                k.split('_')[1], bg['busy_pct'], ', '.join(
                    '%s %s%%' % (t['comm'], t['cpu_pct']) for t in bg['top'][:3]) or '–'))
    out += ['', '| target | measured | met |', '|---|---|---|']
    for t in R['targets']:
        out.append('| %s | %s %s | %s |' % (t['target'], t['value'], t['unit'],
                                            {True: 'yes', False: '**no**', None: '–'}[t['met']]))
    return '\n'.join(out) + '\n'


def plot(R, base, work):
    sw = R['scenarios'].get('validate_sweep')
    if not sw or not shutil.which('gnuplot'):
        return
    dat = os.path.join(work, 'sweep.dat')
    with open(dat, 'w') as f:
        for server in ('ours', 'noop'):
            f.write('# %s: achieved_rps p50 p99 p999\n' % server)
            for p in sw['points']:
                if p['server'] == server and not p.get('overloaded'):
                    f.write('%.0f %d %d %d\n' % (p['throughput_rps'], max(p['p50'], 1),
                                                 max(p['p99'], 1), max(p['p999'], 1)))
            f.write('\n\n')
    png = base + '-latency.png'
    subprocess.run(['gnuplot', '-e', 'datafile="%s"; outfile="%s"; title_="%s"' % (
        dat, png, 'ValidateVariant, open loop, %s profile (%d variants), %d CPUs' % (
            R['profile'], R['catalog']['variants'], R['machine']['nproc'])),
        os.path.join(HERE, 'plot.gp')], check=True, timeout=60)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--profile', choices=sorted(PROFILES), default='short')
    ap.add_argument('--build', default=os.path.join(REPO, 'build'))
    ap.add_argument('--workdir', default=None)
    ap.add_argument('--render-only', action='store_true',
                    help='rewrite bench/results/<profile>.md and the plot from its .json')
    args = ap.parse_args()
    if args.render_only:
        import tempfile
        base = os.path.join(REPO, 'bench', 'results', args.profile)
        with open(base + '.json') as f:
            R = json.load(f)
        with open(base + '.md', 'w') as f:
            f.write(render_markdown(R))
        with tempfile.TemporaryDirectory() as tmp:
            plot(R, base, tmp)
        return
    import harness  # noqa: F401  (cleanup registry, SIGTERM -> SystemExit)

    def on_alarm(signum, frame):
        raise SystemExit('bench: time limit reached')
    def on_int(signum, frame):
        raise SystemExit(130)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGINT, on_int)
    b = Bench(args)
    signal.alarm(b.p['time_limit'])
    b.run()
    signal.alarm(0)


if __name__ == '__main__':
    main()
