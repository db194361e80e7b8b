#!/usr/bin/python3
"""Warm-load benchmark: catalogd's start-up load from PostgreSQL against psql \\copy of the
same tables' raw rows, on one throwaway PostgreSQL, in one run.

    bench/warm_load.py [--profile full|short] [--build build] [--rounds 3]
                       [--binary OTHER_CATALOGD ...] [--perf]

Each round runs, in a rotating order, bench.py's psql_copy_reference (the honest baseline,
unchanged) and `catalogd --digest` of the build's binary and of every --binary given (say a
build of an earlier commit), reading the `warm load done` seconds from its log, and the CPU
seconds (user + system) of each whole `catalogd --digest` process, which a shared machine
disturbs much less than the wall time (it includes the start-up and the digest). All binaries
must report the same state digest: a faster load that loads something else is a failure.
--perf records the build's catalogd once more under `perf record -g` and writes a flat
profile next to the results. Prints one JSON document on stdout; builds nothing.
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench  # noqa: E402  (bench/bench.py: data generation, PostgreSQL, the reference)


def warm_load(binary, url, timeout=1800, wrap=()):
    """Runs `binary --digest` against url; returns (seconds, rows, skipped, digest, cpu):
    cpu = user + system seconds of the process (children are run one at a time)."""
    env = dict(os.environ, DATABASE_URL=url, LOG_LEVEL='info', GRPC_PORT='0',
               ADMIN_PORT='0')
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run(list(wrap) + [binary, '--digest'], env=env, capture_output=True,
                       text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    if r.returncode != 0:
        raise RuntimeError('%s --digest failed (%d):\n%s' % (binary, r.returncode,
                                                            r.stderr[-3000:]))
    done = digest = None
    for line in (r.stdout + "\n" + r.stderr).splitlines():  # older builds log on stdout
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get('msg') == 'warm load done':
            done = rec
        elif 'msg' not in rec and 'digest' in rec:
            digest = rec['digest']
    return done['seconds'], done['rows'], done['skipped'], digest, cpu


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--profile', choices=sorted(bench.PROFILES), default='full')
    ap.add_argument('--build', default=os.path.join(bench.REPO, 'build'))
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--binary', action='append', default=[],
                    help='another catalogd to time on the same data (repeatable)')
    ap.add_argument('--perf', action='store_true')
    a = ap.parse_args()
    import harness  # noqa: F401  (cleanup registry: PostgreSQL is stopped at exit)
    b = bench.Bench(argparse.Namespace(profile=a.profile, build=a.build,
                                       workdir=os.path.join(os.path.abspath(a.build),
                                                            'bench-work', 'warm-load')))
    b.generate()
    b.start_pg()
    bins = {'this': b.bin['catalogd']}
    for i, path in enumerate(a.binary):
        dst = os.path.join(b.work, 'bin', 'catalogd-other-%d' % i)
        shutil.copy2(path, dst)
        bins['other-%d' % i] = dst
    runs = {k: [] for k in ['psql_copy'] + list(bins)}
    cpu = {k: [] for k in bins}
    digests, rows = {}, {}
    order = ['psql_copy'] + list(bins)
    for rnd in range(a.rounds):
        for k in order[rnd % len(order):] + order[:rnd % len(order)]:
            if k == 'psql_copy':
                runs[k].append(round(b.psql_copy_reference(), 3))
            else:
                s, n, skipped, d, c = warm_load(bins[k], b.pg.url())
                runs[k].append(s)
                cpu[k].append(round(c, 3))
                digests[k], rows[k] = d, (n, skipped)
            bench.log('round %d %s: %.2fs' % (rnd + 1, k, runs[k][-1]))
    out = {'profile': a.profile, 'catalog': b.R['catalog'], 'machine': bench.machine(),
           'seconds': runs, 'cpu_seconds': cpu, 'rows_skipped': rows, 'digests': digests,
           'binaries': {k: os.path.basename(v) for k, v in bins.items()},
           'best': {k: min(v) for k, v in runs.items()}}
    out['ratio_to_psql'] = {k: round(min(v) / out['best']['psql_copy'], 3)
                            for k, v in runs.items() if k != 'psql_copy'}
    out['same_digest'] = len(set(digests.values())) == 1
    if a.perf and shutil.which('perf'):
        data = os.path.join(b.work, 'warm-load.perf')
        warm_load(bins['this'], b.pg.url(),
                  wrap=['perf', 'record', '-q', '-e', 'cpu-clock', '-F', '999', '-g', '-o', data,
                        '--'])
        rep = subprocess.run(['perf', 'report', '-i', data, '--no-children', '--stdio',
                              '--percent-limit', '0.7', '-g', 'none'], capture_output=True,
                             text=True, timeout=600)
        path = os.path.join(b.work, 'warm-load-profile.txt')
        with open(path, 'w') as f:
            f.write(rep.stdout)
        out['profile_file'] = path
    print(json.dumps(out, indent=1))
    return 0 if out['same_digest'] else 1


if __name__ == '__main__':
    sys.exit(main())
