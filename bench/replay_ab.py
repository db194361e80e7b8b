#!/usr/bin/python3
"""Replay benchmark, A/B: catalogd binaries (or settings) replaying the same topic, alternately.

    bench/replay_ab.py [--profile full|short] [--build build] [--rounds 4] [--partitions N]
                       [--arm NAME=BINARY[,KEY=VALUE...]] ... [--perf NAME]

catalog-gen's events (bench.py's data, `events.tsv`) are produced once, zstd-compressed, into
one mock broker (tests/tools/kafka-mock-host); then every arm runs `catalogd --digest` with
SYNC_MODE=replay against it, in a rotating order each round, so that a machine shared with
other work slows every arm alike. Per run: events/s and seconds from catalogd's
`replay caught up` log line, the process's CPU (user + system, from wait4's rusage) and minor
page faults per event, each thread group's CPU (sampled from /proc/<pid>/task/*/stat every
50 ms: `rdk:broker*` is librdkafka's fetch and decompression, `catalogd` the apply thread)
and the state digest. Every arm must print the same digest (bench.py checks the replay's
digest against the warm load's; this checks the arms against each other).

An arm is a binary and optional environment (e.g. `base=../old-build/catalogd`,
`trim=build/catalogd,GLIBC_TUNABLES=glibc.malloc.trim_threshold=2000000000`, or a librdkafka
property as KAFKA_<PROPERTY>). Without --arm the build's catalogd runs alone. Ratios are
computed per round against the first arm (the median of those is the figure to quote).
--perf NAME records that arm once more under `perf record -g` (not a measured run) and
writes a flat profile by thread and symbol. Prints one JSON document on stdout.
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench  # noqa: E402  (bench/bench.py: data generation, binaries, the profiles)

CLK_TCK = os.sysconf('SC_CLK_TCK')


def thread_cpu(pid, acc, stop):
    """Samples /proc/<pid>/task/*/stat every 50 ms into acc {tid: (comm, ticks)} until stop."""
    base = '/proc/%d/task' % pid
    while not stop.is_set():
        try:
            tids = os.listdir(base)
        except OSError:
            return
        for tid in tids:
            try:
                with open('%s/%s/stat' % (base, tid)) as f:
                    s = f.read()
            except OSError:
                continue
            comm = s[s.index('(') + 1:s.rindex(')')]
            fields = s[s.rindex(')') + 2:].split()
            acc[tid] = (comm, int(fields[11]) + int(fields[12]))  # utime + stime
        stop.wait(0.05)


def run_replay(binary, bootstrap, extra_env, timeout=1800, wrap=()):
    """One `binary --digest` replay; returns a dict of its figures (raises on failure)."""
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=bootstrap, SYNC_MODE='replay',
               LOG_LEVEL='info', GRPC_PORT='0', ADMIN_PORT='0')
    for k in ('DATABASE_URL', 'KAFKA_MOCK_HOST_BIN', 'KAFKA_PRODUCE_BIN'):  # bench.py's
        env.pop(k, None)
    env.update(extra_env)
    t0 = time.monotonic()
    p = subprocess.Popen(list(wrap) + [binary, '--digest'], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    out = {}
    readers = [threading.Thread(target=lambda k=k, f=f: out.__setitem__(k, f.read()), daemon=True)
               for k, f in (('stdout', p.stdout), ('stderr', p.stderr))]
    acc, stop = {}, threading.Event()
    sampler = threading.Thread(target=thread_cpu, args=(p.pid, acc, stop), daemon=True)
    for t in readers + [sampler]:
        t.start()
    timer = threading.Timer(timeout, p.kill)
    timer.start()
    try:
        _, status, ru = os.wait4(p.pid, 0)
    finally:
        timer.cancel()
        stop.set()
    p.returncode = os.waitstatus_to_exitcode(status)
    for t in readers:
        t.join(10)
    wall = time.monotonic() - t0
    if p.returncode != 0:
        raise RuntimeError('%s --digest failed (%d):\n%s' % (binary, p.returncode,
                                                            out.get('stderr', '')[-3000:]))
    done = digest = None
    for line in (out['stdout'] + '\n' + out['stderr']).splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get('msg') == 'replay caught up':
            done = rec
        elif 'msg' not in rec and 'digest' in rec:
            digest = rec['digest']
    n = done['messages']
    groups = {}
    for comm, ticks in acc.values():
        g = ('rdk:broker' if comm.startswith('rdk:broker') else
             'catalogd' if comm.startswith('catalogd') else comm)  # (the binary's name)
        if g not in ('rdk:broker', 'catalogd') and ticks == 0:
            continue
        groups[g] = groups.get(g, 0) + ticks / CLK_TCK
    cpu = ru.ru_utime + ru.ru_stime
    return {'events_per_s': done['events_per_s'], 'seconds': done['seconds'], 'messages': n,
            'wall_s': round(wall, 3), 'cpu_s': round(cpu, 3),
            'cpu_us_per_event': round(cpu / n * 1e6, 3),
            'sys_us_per_event': round(ru.ru_stime / n * 1e6, 3),
            'minflt_per_event': round(ru.ru_minflt / n, 4), 'maxrss_mb': ru.ru_maxrss // 1024,
            'thread_cpu_s': {k: round(v, 2) for k, v in sorted(groups.items())},
            'digest': digest}


def parse_arm(spec, default_bin):
    name, _, rest = spec.partition('=')
    parts = rest.split(',') if rest else []
    binary = parts[0] if parts and '=' not in parts[0] else default_bin
    env = dict(p.split('=', 1) for p in parts if '=' in p)
    return name, os.path.abspath(binary), env


def profile(binary, bootstrap, env, path):
    data = path + '.perf'
    run_replay(binary, bootstrap, env, wrap=['perf', 'record', '-q', '-e', 'cpu-clock', '-F',
                                             '999', '-g', '-o', data, '--'])
    with open(path, 'w') as f:
        for sort, limit in (('comm,dso', '0'), ('comm,dso,symbol', '0.5')):
            rep = subprocess.run(['perf', 'report', '-i', data, '--no-children', '--sort', sort,
                                  '--stdio', '-g', 'none', '--percent-limit', limit],
                                 capture_output=True, text=True, timeout=600).stdout
            f.write('\n'.join(l.rstrip()[:160] for l in rep.splitlines()
                              if l.strip() and not l.startswith('#')) + '\n')
    return path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--profile', choices=sorted(bench.PROFILES), default='full')
    ap.add_argument('--build', default=os.path.join(bench.REPO, 'build'))
    ap.add_argument('--rounds', type=int, default=4)
    ap.add_argument('--partitions', type=int, default=0,
                    help='topic partitions (default: the profile\'s replay_partitions)')
    ap.add_argument('--arm', action='append', default=[],
                    help='NAME=BINARY[,KEY=VALUE...] (repeatable; the first is the reference)')
    ap.add_argument('--perf', default=None, help='profile this arm once more')
    a = ap.parse_args()
    # Progress lines on stderr: stdout is the JSON document's.
    bench.log = lambda *m: print('[replay-ab %s]' % time.strftime('%H:%M:%S'), *m,
                                 file=sys.stderr, flush=True)
    import harness  # noqa: F401  (cleanup registry: the mock is stopped at exit)
    import kafka
    b = bench.Bench(argparse.Namespace(profile=a.profile, build=a.build,
                                       workdir=os.path.join(os.path.abspath(a.build),
                                                            'bench-work', 'replay-ab')))
    b.generate()
    arms = {}
    for spec in a.arm or ['this=' + b.bin['catalogd']]:
        name, binary, env = parse_arm(spec, b.bin['catalogd'])
        dst = os.path.join(b.work, 'bin', 'catalogd-' + name)  # a private copy: see bench.py
        shutil.copy2(binary, dst)
        arms[name] = (dst, env)
    kafka.MOCK_BIN, kafka.PRODUCE_BIN = b.bin['mock'], b.bin['produce']
    parts = a.partitions or b.p['replay_partitions']
    mock = kafka.KafkaMock(partitions=parts)
    t = time.monotonic()
    subprocess.run([b.bin['produce'], '--bootstrap', mock.bootstrap, '--topic', kafka.TOPIC,
                    '--compression', 'zstd', '--file', os.path.join(b.data, 'events.tsv'),
                    '--timeout-ms', '120000'], check=True, capture_output=True, timeout=1800)
    wm = mock.command('watermarks ' + kafka.TOPIC)
    kept = sum(int(hi) - int(lo) for lo, hi in re.findall(r'\d+:(\d+)-(\d+)', wm))
    bench.log('produced %d events in %.1fs into %d partitions; the mock keeps %d' % (
        b.R['catalog']['events'], time.monotonic() - t, parts, kept))
    names = list(arms)
    runs = {k: [] for k in names}
    ratios = {k: [] for k in names[1:]}
    for rnd in range(a.rounds):
        for k in names[rnd % len(names):] + names[:rnd % len(names)]:
            r = run_replay(arms[k][0], mock.bootstrap, arms[k][1])
            runs[k].append(r)
            bench.log('round %d %s: %d events/s, %.2f us CPU/event, %.3f faults/event, %s' % (
                rnd + 1, k, r['events_per_s'], r['cpu_us_per_event'], r['minflt_per_event'],
                r['thread_cpu_s']))
        for k in names[1:]:
            ratios[k].append(round(runs[k][-1]['events_per_s'] / runs[names[0]][-1]['events_per_s'],
                                   3))
    med = statistics.median
    out = {'profile': a.profile, 'catalog': b.R['catalog'], 'machine': bench.machine(),
           'partitions': parts, 'events_kept_by_mock': kept,
           'arms': {k: {'binary': os.path.basename(v[0]), 'env': v[1]} for k, v in arms.items()},
           'runs': runs,
           'summary': {k: {'events_per_s_median': med([r['events_per_s'] for r in v]),
                           'events_per_s_range': [min(r['events_per_s'] for r in v),
                                                  max(r['events_per_s'] for r in v)],
                           'cpu_us_per_event_median': med([r['cpu_us_per_event'] for r in v]),
                           'minflt_per_event_median': med([r['minflt_per_event'] for r in v])}
                       for k, v in runs.items()},
           'ratio_to_%s' % names[0]: {k: {'per_round': v, 'median': med(v)}
                                      for k, v in ratios.items()}}
    digests = {r['digest'] for v in runs.values() for r in v}
    out['same_digest'] = len(digests) == 1 and None not in digests
    if a.perf:
        out['profile_file'] = profile(arms[a.perf][0], mock.bootstrap, arms[a.perf][1],
                                      os.path.join(b.work, 'replay-profile-%s.txt' % a.perf))
    mock.stop()
    print(json.dumps(out, indent=1))
    return 0 if out['same_digest'] else 1


if __name__ == '__main__':
    sys.exit(main())
