#!/usr/bin/python3
"""Start-up and freshness benchmarks (issues 13 and 14; docs/performance.md, "Checkpoints and
peers" and "Freshness"). Run through bench/run.sh (after bench.py) or alone:

  /usr/bin/python3 bench/lifecycle.py --profile short [--scenarios startup,freshness,audit]

Same catalog (catalog-gen), PostgreSQL and mock broker as bench/bench.py (its Bench class
does the data and the cleanup registry). Scenarios:

  startup    warm load vs restart from a local checkpoint (kill -9) vs a new replica from a
             peer (wall time to SERVING and the "startup source" timings); checkpoint size;
             PostgreSQL statements while 5 replicas start at once (log_statement=all,
             COPY and connection lines counted in the PostgreSQL log); event->visible p99 at
             FEED_RATE events/s on a replica writing a checkpoint every second vs one without.
  freshness  read-your-writes trials (x-catalog-min-position of the event just produced);
             PARKED calls parked at once (RSS, threads and their names before/during/after,
             other callers' p99 in interleaved rounds with and without them, BENCH_PARK_ROUNDS
             each, all answered once the offset is produced); staleness accuracy after the
             broker stops.
  audit      the consistency auditor (issue 14, part 4) at AUDIT_RATES rows/s: the sweep's
             measured rate (catalogd_audit_checks_total) and so one pass of the catalog; the
             time to report divergences injected in PostgreSQL (a row changed in place at the
             same version), measured directly where a pass is short; the auditor's cost
             (its PostgreSQL backend's CPU from /proc/<pid>/stat, catalogd's busiest thread
             and whole process while idle otherwise) and serving p99 of an open loop with and
             without it (interleaved; the other server SIGSTOPped meanwhile); rows left
             behind by a stalled feed found as lagging; and what the alternatives to a sweep
             would cost PostgreSQL (a scan for recently written rows by xmin, an md5 of the
             whole table).

Every process is stopped at exit (harness cleanup); each step has a timeout and the run a
time limit. Results: bench/results/<profile>-lifecycle.json and .md.
"""
import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench  # noqa: E402  (also puts tests/integration on sys.path)
from bench import Bench, Proc, log, scrape, FEED_RATE, REPO  # noqa: E402

TOPIC = 'catalog.changes'
PROBE_PART, FEED_PART = 0, 1         # probes alone on partition 0: their offsets are known
STARTERS = 5                         # replicas started at once
PARK_ROUNDS = int(os.environ.get('BENCH_PARK_ROUNDS', '3'))  # interleaved with/without rounds
AUDIT_RATES = (20, 1000, 10000)      # AUDIT_ROWS_PER_SECOND values measured
AUDIT_DIRECT_PASS_S = 400            # detection timed directly when a pass is this short
AUDIT_TRIALS = 4                     # divergences injected at once (independent positions)
AUDIT_STALLED_ROWS = 1000            # rows written in PostgreSQL whose events never come
AUDIT_SERVE_RATE = 2000              # open-loop ValidateVariant calls/s for the p99
DIVERGED = 'audit: snapshot diverges from postgres'
LIMITS = {'short': dict(ryw=1000, vis=200, parked=10_000, time_limit=1500),
          'full': dict(ryw=1000, vis=300, parked=10_000, time_limit=3600)}


def pct(xs, q):
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(q * len(xs)))], 2) if xs else None


def thread_names(pid):
    """{thread name: count} of pid's threads (/proc/pid/task/*/comm)."""
    names = {}
    for tid in os.listdir('/proc/%d/task' % pid):
        try:
            with open('/proc/%d/task/%s/comm' % (pid, tid)) as f:
                name = f.read().strip()
        except OSError:
            continue
        names[name] = names.get(name, 0) + 1
    return names


def proc_cpu_s(pid):
    """utime + stime of a process in seconds (/proc/pid/stat)."""
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def rss_threads(pid):
    """(RSS bytes, thread count) of pid from /proc/pid/status."""
    rss = thr = 0
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                rss = int(line.split()[1]) * 1024
            elif line.startswith('Threads:'):
                thr = int(line.split()[1])
    return rss, thr


class Lifecycle(Bench):
    def __init__(self, args):
        super().__init__(args)
        self.L = LIMITS[args.profile]
        self.R['settings']['feed_partition'] = FEED_PART
        self.R['settings']['probe_partition'] = PROBE_PART

    # ------------------------------------------------------------ producers
    def start_producers(self, mock):
        """Two kafka-produce processes fed by pipes: the background feed (FEED_RATE
        events/s, all on FEED_PART) and the probes (PROBE_PART only, so the k-th probe sits
        at offset base + k). Probe events get versions far above the feed's so that no
        background event makes one stale."""
        with open(os.path.join(self.data, 'updates.tsv')) as f:
            lines = f.readlines()
        n_probe = 2 * self.L['vis'] + self.L['ryw'] + 10
        self.probe_lines = []
        for line in lines[-n_probe:]:
            k, v = line.split('\t', 1)
            ev = json.loads(v)
            ev['version'] += 1_000_000_000
            ev['data']['version'] = ev['version']
            self.probe_lines.append(k + '\t' + json.dumps(ev, separators=(',', ':')) + '\n')
        self.feed_src = lines[:-n_probe]
        wm = mock.command('watermarks ' + TOPIC)
        self.probe_next = int(re.search(r'p%d:\d+-(\d+)' % PROBE_PART, wm).group(1))
        self.probe_i = 0
        argv = [self.bin['produce'], '--bootstrap', mock.bootstrap, '--topic', TOPIC,
                '--timeout-ms', '10000', '--partition']
        self.feed = Proc(argv + [str(FEED_PART)], stdout=os.path.join(self.work, 'feed.log'),
                         stdin=subprocess.PIPE, name='kafka-produce feed')
        self.probe = Proc(argv + [str(PROBE_PART)], stdout=os.path.join(self.work, 'probe.log'),
                          stdin=subprocess.PIPE, name='kafka-produce probes')
        self.feed_stop = threading.Event()
        self.feed_sent = 0

        def pace():
            # Cycles through updates.tsv, each cycle 1,000,000 versions higher (a replayed
            # version would be stale and skip the publish), at FEED_RATE events/s.
            t0 = time.monotonic()
            i, deadline = 0, t0 + 1800
            n = len(self.feed_src)
            while not self.feed_stop.is_set() and time.monotonic() < deadline:
                due = int((time.monotonic() - t0) * FEED_RATE)
                if due > i:
                    out = []
                    for j in range(i, due):
                        line = self.feed_src[j % n]
                        if j >= n:
                            k, v = line.split('\t', 1)
                            ev = json.loads(v)
                            ev['version'] += 1_000_000 * (j // n)
                            ev['data']['version'] = ev['version']
                            line = k + '\t' + json.dumps(ev, separators=(',', ':')) + '\n'
                        out.append(line)
                    self.feed.proc.stdin.write(''.join(out).encode())
                    self.feed.proc.stdin.flush()
                    i = due
                    self.feed_sent = i
                time.sleep(0.002)
        self.feed_thread = threading.Thread(target=pace, daemon=True)
        self.feed_thread.start()

    def send_probe(self):
        """Produces the next probe event; returns (event dict, its offset on PROBE_PART)."""
        line = self.probe_lines[self.probe_i]
        self.probe_i += 1
        off = self.probe_next
        self.probe_next += 1
        self.probe.proc.stdin.write(line.encode())
        self.probe.proc.stdin.flush()
        return json.loads(line.split('\t', 1)[1]), off

    def stop_producers(self):
        self.feed_stop.set()
        self.feed_thread.join(10)
        for p in (self.feed, self.probe):
            try:
                p.proc.stdin.close()
                p.proc.wait(30)
            except (OSError, subprocess.TimeoutExpired):
                pass
            p.stop()

    # ------------------------------------------------------------ helpers
    def catalogd(self, env, name, wait=True):
        import harness
        # GLIBC_TUNABLES as the Docker image sets it (the binary then does not re-exec).
        e = {'GRPC_MAX_WORKERS': '2', 'LOG_LEVEL': 'info',
             'GLIBC_TUNABLES': 'glibc.malloc.hugetlb=1'}
        e.update(env)
        t0 = time.monotonic()
        srv = harness.Catalogd(e, binary=self.bin['catalogd'])
        srv.t_exec = t0
        if wait:
            srv.wait_serving(1800)
            srv.to_serving_s = time.monotonic() - t0
            log('%s serving on %s after %.2fs' % (name, srv.target, srv.to_serving_s))
        return srv

    @staticmethod
    def line(srv, msg):
        ls = [l for l in srv.logs() if l.get('msg') == msg]
        return ls[-1] if ls else None

    def startup_record(self, srv):
        src = self.line(srv, 'startup source') or {}
        ready = [l for l in srv.logs() if l.get('msg') == 'startup phase done'
                 and l.get('phase') == 'ready']
        keep = ('source', 'seconds', 'load_seconds', 'age_seconds', 'peer', 'bytes',
                'connect_seconds', 'transfer_seconds')
        out = {k: src[k] for k in keep if k in src}
        out['wall_to_serving_s'] = round(getattr(srv, 'to_serving_s', 0), 3)
        if ready:
            out['ready_phase_s'] = ready[-1].get('seconds')
        return out

    def visibility(self, srv, n):
        """Event -> visible on srv: produce a probe, poll ValidateVariant until its price."""
        import harness
        stub = srv.catalog_stub()
        lat, timeouts = [], 0
        for _ in range(n):
            ev, _off = self.send_probe()
            req = harness.pb.ValidateVariantRequest(organization_id=ev['organization_id'],
                                                    variant_id=ev['entity_id'])
            price = float(ev['data']['sale_price'])
            t0 = time.monotonic()
            seen = False
            while time.monotonic() - t0 < 5:
                if abs(stub.ValidateVariant(req, timeout=2).price - price) < 1e-6:
                    seen = True
                    break
                time.sleep(0.0005)
            if seen:
                lat.append((time.monotonic() - t0) * 1000)
            else:
                timeouts += 1
            time.sleep(0.02)
        return {'probes': len(lat), 'timeouts': timeouts, 'p50_ms': pct(lat, 0.5),
                'p99_ms': pct(lat, 0.99), 'max_ms': round(max(lat), 2) if lat else None}

    def pg_log_since(self, pos):
        path = os.path.join(self.pg.dir, 'postgres.log')
        with open(path, errors='replace') as f:
            f.seek(pos)
            return f.read()

    def pg_log_pos(self):
        return os.path.getsize(os.path.join(self.pg.dir, 'postgres.log'))

    # ------------------------------------------------------------ issue 13
    def startup(self, mock):
        S = self.R['scenarios']
        ck = os.path.join(self.work, 'ckpt-a')
        os.makedirs(ck)
        base = {'DATABASE_URL': self.pg.url(), 'KAFKA_BOOTSTRAP_SERVERS': mock.bootstrap}
        a_env = dict(base, CHECKPOINT_DIR=ck, CHECKPOINT_INTERVAL_SECONDS='1',
                     SNAPSHOT_SERVE='true')
        a = self.catalogd(a_env, 'A (warm load, checkpoints every 1 s)')
        warm = self.startup_record(a)
        wl = self.line(a, 'warm load done') or {}
        warm['warm_load_s'] = wl.get('seconds')
        b = self.catalogd(base, 'B (warm load, no checkpoint)')
        # The first checkpoint (written once the snapshot changed since the last one: the
        # first is the warm-loaded snapshot itself).
        self.start_producers(mock)
        import harness
        harness.wait_until(lambda: self.line(a, 'checkpoint written'), 120, 0.2,
                           'first checkpoint')
        cw = self.line(a, 'checkpoint written')
        variants = scrape(a).get('catalogd_snapshot_entities{type="variant"}', 0)
        size = {'bytes': cw['bytes'], 'write_seconds': cw['seconds'], 'variants': variants,
                'bytes_per_variant': round(cw['bytes'] / variants, 1) if variants else None}
        S['checkpoint_size'] = size
        log('checkpoint: %d bytes (%.0f B/variant), written in %.2fs' % (
            cw['bytes'], size['bytes_per_variant'] or 0, cw['seconds']))

        # event->visible with and without a checkpoint being written, interleaved in halves.
        n = self.L['vis'] // 2
        va1, vb1 = self.visibility(a, n), self.visibility(b, n)
        va2, vb2 = self.visibility(a, n), self.visibility(b, n)
        m = scrape(a)
        S['event_visible_checkpointing'] = {
            'with_checkpoint_every_1s': [va1, va2], 'without': [vb1, vb2],
            'checkpoints_written': m.get('catalogd_checkpoints_written_total'),
            'checkpoint_last_duration_s': m.get('catalogd_checkpoint_last_duration_seconds'),
            'background_events_per_s': FEED_RATE}
        log('event->visible p99: with checkpoints %s / %s ms, without %s / %s ms' % (
            va1['p99_ms'], va2['p99_ms'], vb1['p99_ms'], vb2['p99_ms']))
        self.stop_producers()
        time.sleep(1.5)  # one more checkpoint with the last events

        # PostgreSQL statements from here on (the reference: one warm load's worth).
        self.pg.psql("ALTER SYSTEM SET log_statement = 'all'")
        self.pg.psql("ALTER SYSTEM SET log_connections = on")
        self.pg.psql('SELECT pg_reload_conf()')
        time.sleep(0.5)

        # Restart A from its checkpoint after kill -9, with the default checkpoint interval:
        # the 1 s one above is for the measurement under checkpointing; kept here it would
        # write a 1M checkpoint (~2.5 s of a CPU) while A serves the peer transfer below.
        a.kill()
        pos = self.pg_log_pos()
        a2_env = {k: v for k, v in a_env.items() if k != 'CHECKPOINT_INTERVAL_SECONDS'}
        a2 = self.catalogd(a2_env, 'A restarted (kill -9, local checkpoint)')
        restart = self.startup_record(a2)
        restart['pg_copy_statements'] = len(re.findall(r'statement: COPY', self.pg_log_since(pos)))
        b.stop()
        # The reference: a warm load with statements logged.
        pos = self.pg_log_pos()
        w2 = self.catalogd(base, 'warm load (statement log on)')
        warm2 = self.startup_record(w2)
        txt = self.pg_log_since(pos)
        warm2['pg_copy_statements'] = len(re.findall(r'statement: COPY', txt))
        warm2['pg_connections'] = len(re.findall(r'connection authorized', txt))
        peer_env = dict(base, BOOTSTRAP_PEERS='127.0.0.1:%d' % a2.admin_port,
                        SNAPSHOT_SERVE='true')
        pos = self.pg_log_pos()
        c = self.catalogd(peer_env, 'C (new replica from peer A)')
        peer = self.startup_record(c)
        peer['pg_copy_statements'] = len(re.findall(r'statement: COPY', self.pg_log_since(pos)))
        S['startup'] = {'warm_load_first': warm, 'warm_load': warm2,
                        'checkpoint_restart': restart, 'peer': peer}
        log('to SERVING: warm load %.2fs, checkpoint %.2fs, peer %.2fs' % (
            warm2['wall_to_serving_s'], restart['wall_to_serving_s'], peer['wall_to_serving_s']))
        w2.stop()

        # STARTERS replicas at once: each with a copy of A's checkpoints, then each from
        # the peers (A and C serve the snapshot, at most 2 transfers each).
        res = {}
        for mode in ('checkpoint', 'peer'):
            envs = []
            for i in range(STARTERS):
                if mode == 'checkpoint':
                    d = os.path.join(self.work, 'ckpt-%d' % i)
                    shutil.rmtree(d, ignore_errors=True)
                    shutil.copytree(ck, d)
                    envs.append(dict(base, CHECKPOINT_DIR=d))
                else:
                    envs.append(dict(base, BOOTSTRAP_PEERS='127.0.0.1:%d,127.0.0.1:%d' % (
                        a2.admin_port, c.admin_port)))
            pos = self.pg_log_pos()
            t0 = time.monotonic()
            srvs = [self.catalogd(e, '%s starter %d' % (mode, i), wait=False)
                    for i, e in enumerate(envs)]
            for s in srvs:
                s.wait_serving(1800)
                s.to_serving_s = time.monotonic() - s.t_exec
            all_s = time.monotonic() - t0
            txt = self.pg_log_since(pos)
            recs = [self.startup_record(s) for s in srvs]
            res[mode] = {'replicas': STARTERS, 'all_serving_s': round(all_s, 2),
                         'sources': [r.get('source') for r in recs],
                         'to_serving_s': [r['wall_to_serving_s'] for r in recs],
                         'pg_copy_statements': len(re.findall(r'statement: COPY', txt)),
                         'pg_connections': len(re.findall(r'connection authorized', txt))}
            log('%d replicas at once from %s: %s; PostgreSQL COPY statements %d, connections '
                '%d' % (STARTERS, mode, res[mode]['sources'], res[mode]['pg_copy_statements'],
                        res[mode]['pg_connections']))
            for s in srvs:
                s.stop()
        S['simultaneous_start'] = res
        self.pg.psql("ALTER SYSTEM RESET log_statement")
        self.pg.psql("ALTER SYSTEM RESET log_connections")
        self.pg.psql('SELECT pg_reload_conf()')
        c.stop()
        a2.stop()

    # ------------------------------------------------------------ issue 14
    def read_your_writes(self, srv):
        import harness
        stub = srv.catalog_stub()
        lat, seen, errors = [], 0, []
        n = self.L['ryw']
        for _ in range(n):
            ev, off = self.send_probe()
            req = harness.pb.ValidateVariantRequest(organization_id=ev['organization_id'],
                                                    variant_id=ev['entity_id'])
            t0 = time.monotonic()
            try:
                r = stub.ValidateVariant(req, timeout=5, metadata=[
                    ('x-catalog-min-position', '%d:%d' % (PROBE_PART, off))])
                lat.append((time.monotonic() - t0) * 1000)
                if abs(r.price - float(ev['data']['sale_price'])) < 1e-6:
                    seen += 1
            except Exception as exc:  # grpc.RpcError
                errors.append(str(getattr(exc, 'details', lambda: exc)()))
            time.sleep(0.01)
        return {'trials': n, 'seen': seen, 'errors': len(errors), 'first_errors': errors[:3],
                'p50_ms': pct(lat, 0.5), 'p99_ms': pct(lat, 0.99),
                'max_ms': round(max(lat), 2) if lat else None}

    def park_batch(self, srv, n):
        """Starts n ValidateVariant calls waiting for the next probe offset (20 HTTP/2
        connections, grpc.aio, in a thread); returns once all n are parked, with
        (thread, done event, results dict, seconds to park them, the probe event)."""
        import grpc
        import harness
        ev, off = self.probe_lines[self.probe_i], self.probe_next
        evd = json.loads(ev.split('\t', 1)[1])
        results = {}
        done = threading.Event()
        base = scrape(srv).get('catalogd_parked_calls', 0)

        async def park_all():
            chans = [grpc.aio.insecure_channel(srv.target, options=[
                ('grpc.use_local_subchannel_pool', 1)]) for _ in range(20)]
            req = harness.pb.ValidateVariantRequest(organization_id=evd['organization_id'],
                                                    variant_id=evd['entity_id'])
            md = (('x-catalog-min-position', '%d:%d' % (PROBE_PART, off)),)
            calls = []
            for i in range(n):
                stub = harness.pb_grpc.CatalogServiceStub(chans[i % len(chans)])
                calls.append(stub.ValidateVariant(req, timeout=50, metadata=md))
            out = await asyncio.gather(*[c for c in calls], return_exceptions=True)
            results['ok'] = sum(1 for r in out if not isinstance(r, Exception)
                                and abs(r.price - float(evd['data']['sale_price'])) < 1e-6)
            results['failed'] = [str(r)[:200] for r in out if isinstance(r, Exception)][:3]
            results['n_failed'] = sum(1 for r in out if isinstance(r, Exception))
            for ch in chans:
                await ch.close()
            done.set()

        th = threading.Thread(target=lambda: asyncio.run(park_all()), daemon=True)
        t_park = time.monotonic()
        th.start()
        harness.wait_until(lambda: scrape(srv).get('catalogd_parked_calls', 0) >= base + n, 120,
                           0.2, '%d parked calls' % n)
        return th, done, results, time.monotonic() - t_park

    def release_batch(self, srv, th, done):
        """Produces the offset the parked calls wait for; returns seconds until all came back."""
        t_rel = time.monotonic()
        self.send_probe()
        done.wait(120)
        th.join(10)
        return time.monotonic() - t_rel

    def parked(self, srv, mock):
        """PARKED calls waiting for an offset not produced yet, while catalog-bench runs an
        open loop of ValidateVariant as the other callers; then the offset is produced.
        The other callers' latency is measured in interleaved rounds (with, without, with,
        without, ...: this machine's p99 drifts by several x between runs, so a before/after
        pair says little), each with its own batch of parked calls; medians of the rounds."""
        n, rounds, rate = self.L['parked'], PARK_ROUNDS, 2000
        pid = srv.pid
        names0 = thread_names(pid)
        rss0, thr0 = rss_threads(pid)
        with_p99, with_p50, without_p99, without_p50, errors = [], [], [], [], []
        first = {}
        for rd in range(rounds):
            th, done, results, park_s = self.park_batch(srv, n)
            time.sleep(1)
            if rd == 0:
                rss1, thr1 = rss_threads(pid)
                names1 = thread_names(pid)
            r = self.run_bench('other_callers_with_parked_%d' % rd, srv.target, 'validate', 1,
                               rate=rate, duration=5, warmup=1)
            with_p99.append(r['latency_us']['p99'])
            with_p50.append(r['latency_us']['p50'])
            errors.append(r['errors'])
            still = scrape(srv).get('catalogd_parked_calls', 0)
            release_s = self.release_batch(srv, th, done)
            if rd == 0:
                first = dict(results, park_s=park_s, release_s=release_s, still=still)
            log('round %d with %d parked: p99 %s us; answered %s, failed %s' % (
                rd, n, with_p99[-1], results.get('ok'), results.get('n_failed')))
            time.sleep(1)
            r = self.run_bench('other_callers_without_%d' % rd, srv.target, 'validate', 1,
                               rate=rate, duration=5, warmup=1)
            without_p99.append(r['latency_us']['p99'])
            without_p50.append(r['latency_us']['p50'])
            errors.append(r['errors'])
            log('round %d without: p99 %s us' % (rd, without_p99[-1]))
        names2 = thread_names(pid)
        return {'parked': n, 'seconds_to_park_all': round(first['park_s'], 2),
                'still_parked_after_other_callers': first['still'],
                'rss_bytes_before': rss0, 'rss_bytes_parked': rss1,
                'rss_bytes_per_parked_call': round((rss1 - rss0) / n, 1),
                'threads_before': thr0, 'threads_parked': thr1,
                'thread_names_before': names0, 'thread_names_parked': names1,
                'thread_names_after': names2,
                'answered_with_the_write': first.get('ok'), 'failed': first.get('n_failed'),
                'first_failures': first.get('failed'),
                'release_all_s': round(first['release_s'], 3),
                'other_callers_rate': rate, 'rounds': rounds,
                'other_callers_p99_us': {'with_parked': with_p99, 'without': without_p99,
                                         'median_with': pct(with_p99, 0.5),
                                         'median_without': pct(without_p99, 0.5)},
                'other_callers_p50_us': {'with_parked': with_p50, 'without': without_p50,
                                         'median_with': pct(with_p50, 0.5),
                                         'median_without': pct(without_p50, 0.5)},
                'other_callers_errors': errors}

    def staleness(self, srv, mock):
        """Stop the broker; sample the trailer, the metric and a max-staleness bound."""
        import grpc
        import harness
        stub = srv.catalog_stub()
        org = json.loads(self.probe_lines[0].split('\t', 1)[1])
        req = harness.pb.ValidateVariantRequest(organization_id=org['organization_id'],
                                                variant_id=org['entity_id'])
        bound = 1000
        t_stop = time.monotonic()
        mock.stop()
        trailer_err, metric_err, first_refusal = [], [], None
        while time.monotonic() - t_stop < 3.0:
            t = time.monotonic()
            try:
                _r, call = stub.ValidateVariant.with_call(req, timeout=2)
                md = dict(call.trailing_metadata())
                st = int(md.get('x-catalog-staleness-ms', '-1'))
                trailer_err.append(st - (t - t_stop) * 1000)
            except grpc.RpcError:
                pass
            tm = time.monotonic()
            ms = scrape(srv).get('catalogd_staleness_seconds', -1) * 1000
            metric_err.append(ms - (tm - t_stop) * 1000)
            if first_refusal is None:
                try:
                    stub.ValidateVariant(req, timeout=2, metadata=[
                        ('x-catalog-max-staleness-ms', str(bound))])
                except grpc.RpcError as exc:
                    if exc.code() == grpc.StatusCode.UNAVAILABLE:
                        first_refusal = (time.monotonic() - t_stop) * 1000
            time.sleep(0.05)
        # Staleness counts from the last caught-up moment, just before t_stop: a trailer a
        # little above wall time is that gap; below it would be wrong.
        return {'samples': len(trailer_err),
                'trailer_minus_wall_ms': {'min': round(min(trailer_err), 1),
                                          'max': round(max(trailer_err), 1)},
                'metric_minus_wall_ms': {'min': round(min(metric_err), 1),
                                         'max': round(max(metric_err), 1)},
                'max_staleness_bound_ms': bound,
                'first_refusal_after_stop_ms': round(first_refusal, 1) if first_refusal else None}

    def freshness(self, mock):
        S = self.R['scenarios']
        srv = self.catalogd({'DATABASE_URL': self.pg.url(),
                             'KAFKA_BOOTSTRAP_SERVERS': mock.bootstrap,
                             'MAX_WAIT_MS': '60000'}, 'catalogd (freshness)')
        self.start_producers(mock)
        time.sleep(1)
        ryw = self.read_your_writes(srv)
        vis = self.visibility(srv, self.L['vis'])
        ryw['event_visible'] = vis
        S['read_your_writes'] = ryw
        log('read-your-writes: %d of %d, p99 %s ms (event->visible p99 %s ms)' % (
            ryw['seen'], ryw['trials'], ryw['p99_ms'], vis['p99_ms']))
        self.stop_producers()
        self.probe = Proc([self.bin['produce'], '--bootstrap', mock.bootstrap, '--topic',
                           TOPIC, '--timeout-ms', '10000', '--partition', str(PROBE_PART)],
                          stdout=os.path.join(self.work, 'probe2.log'), stdin=subprocess.PIPE,
                          name='kafka-produce probes')
        S['parked'] = self.parked(srv, mock)
        log('parked: %s' % json.dumps(S['parked']))
        self.probe.proc.stdin.close()
        self.probe.proc.wait(30)
        self.probe.stop()
        time.sleep(1)
        S['staleness'] = self.staleness(srv, mock)
        log('staleness: %s' % json.dumps(S['staleness']))
        srv.stop()

    # ------------------------------------------------------------ issue 14, the auditor
    def audit_checks(self, srv):
        m = scrape(srv)
        return sum(m.get('catalogd_audit_checks_total{result="%s"}' % r, 0)
                   for r in ('equal', 'lagging', 'divergent'))

    def audit_backend(self):
        """The pid of the auditor's PostgreSQL backend (its only connection once serving)."""
        import harness
        harness.wait_until(lambda: self.pg.psql(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'catalogd'").strip(),
            30, 0.1, "the auditor's connection")
        out = self.pg.psql("SELECT pid FROM pg_stat_activity WHERE application_name = "
                           "'catalogd'").split()
        if len(out) != 1:
            raise RuntimeError('expected one catalogd connection, got %r' % out)
        return int(out[0])

    def audit_cost(self, srv, seconds):
        """Rows checked per second and the CPU spent over `seconds` with no other load."""
        be = self.audit_backend()
        c0, p0, t0 = self.audit_checks(srv), proc_cpu_s(be), time.monotonic()
        th0, s0 = bench.thread_cpu(srv.pid), proc_cpu_s(srv.pid)
        time.sleep(seconds)
        c1, p1, t1 = self.audit_checks(srv), proc_cpu_s(be), time.monotonic()
        th1, s1 = bench.thread_cpu(srv.pid), proc_cpu_s(srv.pid)
        dt = t1 - t0
        busiest = max(((th1[t][0] - th0[t][0], t) for t in th1 if t in th0), default=(0, 0))
        return {'window_s': round(dt, 1), 'rows_per_s': round((c1 - c0) / dt, 1),
                'pg_backend_cpu_pct': round(100 * (p1 - p0) / dt, 2),
                'catalogd_busiest_thread_cpu_pct': round(100 * busiest[0] / 1e9 / dt, 2),
                'catalogd_process_cpu_pct': round(100 * (s1 - s0) / dt, 2)}

    def audit_serving(self, srv, base, key):
        """ValidateVariant p99 at AUDIT_SERVE_RATE on srv (auditor on) and on base (off),
        interleaved three times; the server not measured is SIGSTOPped (no auditor running
        behind the baseline, no idle server in the way)."""
        out = {'with': [], 'without': []}
        for i in range(3):
            for name, on, off in (('without', base, srv), ('with', srv, base)):
                os.kill(off.pid, signal.SIGSTOP)
                try:
                    r = self.run_bench('audit_%s_%s_%d' % (key, name, i), on.target, 'validate',
                                       1, rate=AUDIT_SERVE_RATE, duration=5, warmup=1)
                finally:
                    os.kill(off.pid, signal.SIGCONT)
                out[name].append({'p50_us': r['latency_us']['p50'],
                                  'p99_us': r['latency_us']['p99'], 'errors': r['errors']})
        return out

    def audit_detect(self, srv, n, timeout):
        """Changes n random variants in place at the same version (a write that bypassed
        the change feed) and times the report of each."""
        ids = self.pg.psql('SELECT id FROM variants ORDER BY random() LIMIT %d' % n).split()
        self.pg.psql("UPDATE variants SET sku = sku || '-audit' WHERE id IN (%s)" %
                     ','.join("'%s'" % i for i in ids))
        t0 = time.monotonic()
        found = {}
        while len(found) < len(ids) and time.monotonic() - t0 < timeout:
            for line in srv.raw_stdout().splitlines():
                if DIVERGED not in line:
                    continue
                for i in ids:
                    if i not in found and '"id":"%s"' % i in line:
                        found[i] = round(time.monotonic() - t0, 2)
            time.sleep(0.2)
        return {'injected': len(ids), 'found': len(found), 'timeout_s': round(timeout),
                'seconds': sorted(found.values())}

    def audit_stalled(self, srv, n, timeout):
        """n variants get a newer version in PostgreSQL whose events never come (a stalled
        feed or producer): seconds to the first lagging check, and the lag age reported."""
        l0 = scrape(srv).get('catalogd_audit_checks_total{result="lagging"}', 0)
        self.pg.psql("UPDATE variants SET version = version + 1, updated_at = now() WHERE id IN "
                     "(SELECT id FROM variants ORDER BY random() LIMIT %d)" % n)
        t0 = time.monotonic()
        first, lag = None, 0.0
        while time.monotonic() - t0 < timeout:
            m = scrape(srv)
            lag = max(lag, m.get('catalogd_audit_lag_seconds', 0))
            if first is None and m.get('catalogd_audit_checks_total{result="lagging"}', 0) > l0:
                first = round(time.monotonic() - t0, 2)
            if first is not None and time.monotonic() - t0 >= first + 10:
                break
            time.sleep(0.05)
        return {'rows_stalled': n, 'first_lagging_s': first,
                'lagging_checks': scrape(srv).get(
                    'catalogd_audit_checks_total{result="lagging"}', 0) - l0,
                'max_lag_seconds_seen': round(lag, 2), 'watched_s': round(time.monotonic() - t0, 1)}

    def audit_alternatives(self):
        """What PostgreSQL would spend on the alternatives to a sweep, per statement on the
        whole variants table (median of 3, EXPLAIN ANALYZE execution time)."""
        qs = {'xmin_recent_scan': 'SELECT id FROM variants WHERE age(xmin) < 1000',
              'md5_of_all_rows': "SELECT md5(string_agg(v::text, '' ORDER BY id)) "
                                 'FROM variants v'}
        out = {}
        for k, q in qs.items():
            ms = []
            for _ in range(3):
                plan = self.pg.psql('EXPLAIN (ANALYZE, TIMING OFF) ' + q)
                ms.append(float(re.search(r'Execution Time: ([\d.]+) ms', plan).group(1)))
            out[k + '_ms'] = sorted(ms)[1]
        return out

    def audit(self):
        S = self.R['scenarios']
        res = {'rates': {}, 'serve_rate': AUDIT_SERVE_RATE}
        base = self.catalogd({'DATABASE_URL': self.pg.url(), 'AUDIT_ROWS_PER_SECOND': '0'},
                             'catalogd (auditor off)')
        m = scrape(base)
        kinds = {k.split('"')[1]: v for k, v in m.items()
                 if k.startswith('catalogd_snapshot_entities{')}
        n = sum(kinds.values())
        res['entities'] = kinds
        res['entities_total'] = n
        res['alternatives'] = self.audit_alternatives()
        log('audit: %d entities %s; alternatives %s' % (n, kinds, res['alternatives']))
        for rate in AUDIT_RATES:
            srv = self.catalogd({'DATABASE_URL': self.pg.url(),
                                 'AUDIT_ROWS_PER_SECOND': str(rate)}, 'catalogd (audit %d)' % rate)
            import harness
            harness.wait_until(lambda: self.audit_checks(srv) > 0, 60, 0.1, 'first checks')
            r = {'cost': self.audit_cost(srv, 20 if rate < 1000 else 10)}
            pass_s = n / r['cost']['rows_per_s'] if r['cost']['rows_per_s'] else None
            r['pass_s'] = round(pass_s, 1) if pass_s else None
            log('audit %d rows/s: %s; a pass of %d entities: %s s' % (rate, r['cost'], n,
                                                                      r['pass_s']))
            r['serving'] = self.audit_serving(srv, base, str(rate))
            log('audit %d rows/s: serving %s' % (rate, r['serving']))
            if pass_s and pass_s <= AUDIT_DIRECT_PASS_S:
                r['detect'] = self.audit_detect(srv, AUDIT_TRIALS, 1.5 * pass_s + 30)
                log('audit %d rows/s: detection %s' % (rate, r['detect']))
            if rate == AUDIT_RATES[0]:
                r['stalled'] = self.audit_stalled(srv, AUDIT_STALLED_ROWS, 120)
                log('audit %d rows/s: stalled feed %s' % (rate, r['stalled']))
            res['rates'][str(rate)] = r
            srv.stop()
        base.stop()
        S['audit'] = res

    # ------------------------------------------------------------ run
    def run(self):
        import kafka
        kafka.MOCK_BIN, kafka.PRODUCE_BIN = self.bin['mock'], self.bin['produce']
        t_all = time.monotonic()
        self.R['background_before'] = bench.background_cpu()
        self.generate()
        self.start_pg()
        ref = self.psql_copy_reference()
        self.R['system']['psql_copy_devnull_s'] = round(ref, 3)
        if 'startup' in self.a.scenarios:
            mock = kafka.KafkaMock(partitions=3)
            self.startup(mock)
            mock.stop()
        if 'freshness' in self.a.scenarios:
            mock = kafka.KafkaMock(partitions=3)
            self.freshness(mock)  # stops the mock
        if 'audit' in self.a.scenarios:
            self.audit()
        self.pg.stop()
        self.R['background_after'] = bench.background_cpu()
        elapsed = self.R['elapsed_s'] = round(time.monotonic() - t_all, 1)
        base = os.path.join(self.results_dir, self.a.profile + '-lifecycle')
        if self.a.scenarios != {'startup', 'freshness', 'audit'} and os.path.exists(base + '.json'):
            # A partial run keeps the other scenarios' results (from their own run).
            with open(base + '.json') as f:
                old = json.load(f)
            old['scenarios'].update(self.R['scenarios'])
            old.setdefault('partial_runs', []).append(
                {k: self.R[k] for k in ('started', 'elapsed_s', 'background_before',
                                        'background_after')})
            self.R = old
        with open(base + '.json', 'w') as f:
            json.dump(self.R, f, indent=1)
            f.write('\n')
        log('results: %s.json (%.0fs)' % (os.path.relpath(base, REPO), elapsed))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--profile', choices=sorted(LIMITS), default='short')
    ap.add_argument('--build', default=os.path.join(REPO, 'build'))
    ap.add_argument('--workdir', default=None)
    ap.add_argument('--scenarios', default='startup,freshness,audit')
    args = ap.parse_args()
    args.scenarios = set(args.scenarios.split(','))
    if args.workdir is None:
        args.workdir = os.path.join(args.build, 'bench-work', args.profile + '-lifecycle')
    import harness  # noqa: F401  (cleanup registry, SIGTERM -> SystemExit)

    def on_alarm(signum, frame):
        raise SystemExit('lifecycle: time limit reached')
    signal.signal(signal.SIGALRM, on_alarm)

    def on_int(signum, frame):
        raise SystemExit(130)
    signal.signal(signal.SIGINT, on_int)
    b = Lifecycle(args)
    signal.alarm(LIMITS[args.profile]['time_limit'])
    b.run()
    signal.alarm(0)


if __name__ == '__main__':
    main()
