#!/usr/bin/python3
"""Helpers shared by the reliability tests (test_convergence, test_tenancy, test_faults,
test_abuse).  They build on harness.py and kafka.py without changing them:

  admin_get / admin_status / metrics / metric / metric_sum / digest   admin HTTP
  watermarks(km)                 the mock broker's low/high watermarks per partition
  produce(km, items)             many messages in one kafka-produce run, each with its
                                 own partition (cross-partition ordering under test control)
  AsyncProduce(km, items)        the same in the background (delivered after an outage)
  wait_caught_up(srv, km)        catalogd's next offsets reached the high watermarks
  offline_digest(env)            `catalogd --digest` with a clean environment
  PsqlSession                    a long-lived psql (hold locks, commit later)
  PsqlPipe                       a long-lived psql that runs scripts and returns their output
  RssWatcher                     samples the server's RSS (/metrics and /proc) in a thread
  kcat_keys(bootstrap, topic)    keys of every message of a topic (kcat)
  seeded_rng(env_name)           (seed, random.Random), seed printed, env override
  scale()                        RELIABILITY_SCALE (default 1): soak-length runs

Everything talks to 127.0.0.1 only and every wait is bounded.
"""
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import harness
import kafka


def eventually(fn, timeout=15, what='condition', interval=0.05):
    """Polls fn until it returns a truthy value and returns that value; AssertionError
    naming what (and fn's last value) after timeout seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError('timed out after %.0fs waiting for %s (last: %r)' % (timeout, what, last))


def scale():
    """RELIABILITY_SCALE (float, default 1): multiplies counts and durations of soak knobs."""
    try:
        return max(0.01, float(os.environ.get('RELIABILITY_SCALE', '1')))
    except ValueError:
        return 1.0


def env_float(name, default):
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return float(default)


def seeded_rng(env_name):
    """A random.Random seeded from env_name if set, else from the clock; the seed is
    printed on stderr so that any failure can be replayed."""
    raw = os.environ.get(env_name)
    seed = int(raw) if raw else int.from_bytes(os.urandom(4), 'big')
    sys.stderr.write('[%s=%d] ' % (env_name, seed))
    sys.stderr.flush()
    return seed, random.Random(seed)


def note(msg):
    """A figure for the test report (stderr, so it shows next to unittest's -v lines)."""
    sys.stderr.write('\n    [%s]' % msg)
    sys.stderr.flush()


# ---------------------------------------------------------------------------
# Admin HTTP
# ---------------------------------------------------------------------------

def admin_status(srv, path, timeout=10):
    """(HTTP status, body) of an admin endpoint."""
    try:
        with urllib.request.urlopen('http://127.0.0.1:%d%s' % (srv.admin_port, path),
                                    timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def admin_get(srv, path, timeout=10):
    status, body = admin_status(srv, path, timeout)
    if status != 200:
        raise AssertionError('GET %s -> %d: %s' % (path, status, body[:200]))
    return body


def readyz(srv):
    """(HTTP status, parsed JSON body) of /readyz."""
    status, body = admin_status(srv, '/readyz')
    return status, json.loads(body)


def condition(srv, name):
    """The /readyz condition named name (a dict: name, level, message), or None."""
    for c in readyz(srv)[1].get('conditions', []):
        if c.get('name') == name:
            return c
    return None


def logs_with(srv, msg, **fields):
    """The server's log records with this msg and these field values."""
    return [rec for rec in srv.logs() if rec.get('msg') == msg
            and all(rec.get(k) == v for k, v in fields.items())]


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$')


def metrics(srv):
    """{'name{labels}': value} of one /metrics scrape."""
    out = {}
    for line in admin_get(srv, '/metrics').splitlines():
        if not line or line.startswith('#'):
            continue
        m = _SAMPLE.match(line)
        if m:
            try:
                out[m.group(1) + (m.group(2) or '')] = float(m.group(3))
            except ValueError:
                pass
    return out


def metric(srv, name, default=None):
    v = metrics(srv).get(name, default)
    if v is None:
        raise AssertionError('metric %s not found' % name)
    return v


def metric_sum(samples, prefix, **labels):
    """Sum of the samples named prefix (any labels) whose labels include labels."""
    total = 0.0
    for k, v in samples.items():
        name = k.split('{', 1)[0]
        if name != prefix:
            continue
        if all(('%s="%s"' % (lk, lv)) in k for lk, lv in labels.items()):
            total += v
    return total


def digest(srv):
    return json.loads(admin_get(srv, '/digest'))


# ---------------------------------------------------------------------------
# Kafka
# ---------------------------------------------------------------------------

def watermarks(km, topic=kafka.TOPIC):
    """{partition: (low, high)} from the mock host."""
    ans = km.command('watermarks %s' % topic)
    out = {}
    for part in ans.split():
        p, rng = part.split(':', 1)
        lo, hi = rng.split('-', 1)
        out[int(p.lstrip('p'))] = (int(lo), int(hi))
    return out


def product_events(org, pid, version, variants, sku='S'):
    """(partition, key, value) of a product and its variants at version, the variants spread
    over partitions 0 and 1 (skus '<sku><i>-<version>')."""
    msgs = [(0,) + kafka.product(org, pid, version)]
    for i, v in enumerate(variants):
        msgs.append((i % 2,) + kafka.variant(org, v, pid, version,
                                             sku='%s%d-%d' % (sku, i, version)))
    return msgs


def startup_source(srv):
    """The server's "startup source" log line, or None before it."""
    recs = logs_with(srv, 'startup source')
    return recs[0] if recs else None


def snapshot_bytes(srv):
    """The whole body of the server's GET /snapshot."""
    with urllib.request.urlopen('http://127.0.0.1:%d/snapshot' % srv.admin_port,
                                timeout=30) as r:
        return r.read()


def next_offset(km, partition=0, topic=kafka.TOPIC):
    """The offset the next event produced to partition gets (its high watermark)."""
    return watermarks(km, topic)[partition][1]


def wait_parked(srv, n, timeout=10):
    """Waits until exactly n calls are parked (waiting for a fresher snapshot)."""
    harness.wait_until(lambda: metric(srv, 'catalogd_parked_calls', 0) == n, timeout,
                       interval=0.02, what='%d parked calls' % n)


def _value_text(value):
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, separators=(',', ':'))


def _produce_input(items):
    lines, cur = [], 'unset'
    for part, key, value in items:
        want = 'auto' if part is None else str(int(part))
        if want != cur:
            lines.append('@partition %s' % want)
            cur = want
        v = _value_text(value)
        if '\n' in key or (v is not None and '\n' in v):
            raise ValueError('a message must fit on one line')
        lines.append(key + ('\t' + v if v is not None else ''))
    return '\n'.join(lines) + '\n'


def _produce_argv(km, topic, compression, timeout_ms):
    return [kafka.PRODUCE_BIN, '--bootstrap', km.bootstrap, '--topic', topic,
            '--compression', compression, '--timeout-ms', str(int(timeout_ms))]


def produce(km, items, topic=kafka.TOPIC, compression='none', timeout_ms=30000, check=True):
    """Produces items = [(partition or None, key, value)] in one kafka-produce run, in order
    (so within a partition, in list order). value None is a Kafka tombstone; a dict is
    JSON-encoded. Returns the number of messages delivered."""
    r = subprocess.run(_produce_argv(km, topic, compression, timeout_ms),
                       input=_produce_input(items), capture_output=True, text=True,
                       timeout=timeout_ms / 1000.0 + 30)
    if check and r.returncode != 0:
        raise RuntimeError('kafka-produce failed (%d): %s %s'
                           % (r.returncode, r.stdout.strip(), r.stderr.strip()[-2000:]))
    m = re.search(r'PRODUCED (\d+)', r.stdout)
    return int(m.group(1)) if m else 0


class AsyncProduce:
    """kafka-produce running in the background (e.g. while the broker is down: librdkafka
    delivers once it is back, within timeout_ms). wait() returns the delivered count."""

    def __init__(self, km, items, topic=kafka.TOPIC, compression='none', timeout_ms=120000):
        self.timeout_ms = timeout_ms
        self.n = len(items)
        self.proc = subprocess.Popen(_produce_argv(km, topic, compression, timeout_ms),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        harness._register(self)
        self._out = []
        data = _produce_input(items)
        self._th = threading.Thread(target=self._talk, args=(data,), daemon=True)
        self._th.start()

    def _talk(self, data):
        self._out.extend(self.proc.communicate(data))

    def done(self):
        return self.proc.poll() is not None

    def wait(self, check=True):
        self._th.join(self.timeout_ms / 1000.0 + 30)
        harness._unregister(self)
        if self._th.is_alive():
            self.proc.kill()
            raise RuntimeError('kafka-produce did not finish')
        out, err = self._out if self._out else ('', '')
        if check and self.proc.returncode != 0:
            raise RuntimeError('kafka-produce failed (%d): %s %s'
                               % (self.proc.returncode, out.strip(), err.strip()[-2000:]))
        m = re.search(r'PRODUCED (\d+)', out)
        return int(m.group(1)) if m else 0

    def _cleanup(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def wait_digest(srv, want, timeout):
    """Polls /digest until it equals want (a digest string) or timeout; returns the last."""
    deadline = time.monotonic() + timeout
    while True:
        d = digest(srv)
        if d['digest'] == want or time.monotonic() > deadline:
            return d
        time.sleep(0.2)


def offsets(srv):
    """{partition: next_offset} of a running catalogd (from /digest)."""
    return {o['partition']: o['next_offset'] for o in digest(srv).get('offsets', [])}


def wait_caught_up(srv, km, timeout=60, topic=kafka.TOPIC):
    """Waits until catalogd's next offset reached the high watermark of every partition."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        hw = watermarks(km, topic)
        off = offsets(srv)
        behind = {p: (off.get(p), hi) for p, (lo, hi) in hw.items()
                  if hi > 0 and (off.get(p) is None or off[p] < hi)}
        if not behind:
            return hw
        last = behind
        if time.monotonic() > deadline:
            raise AssertionError('catalogd not caught up after %ss: partition -> (next, high) %r'
                                 % (timeout, last))
        time.sleep(0.1)


def kcat_keys(bootstrap, topic, timeout=30):
    """Keys of every message in topic (kcat -C ... -e), in partition order."""
    kcat = shutil.which('kcat') or shutil.which('kafkacat')
    if kcat is None:
        raise RuntimeError('kcat is not installed')
    r = subprocess.run([kcat, '-C', '-b', bootstrap, '-t', topic, '-e', '-q',
                        '-f', '%p\t%k\n'], capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError('kcat failed (%d): %s' % (r.returncode, r.stderr.strip()[-500:]))
    return [line.split('\t', 1)[1] for line in r.stdout.splitlines() if '\t' in line]


# ---------------------------------------------------------------------------
# catalogd --digest
# ---------------------------------------------------------------------------

def clean_server_env(extra):
    """The environment harness.Catalogd gives the server, for one-shot runs."""
    env = {k: v for k, v in os.environ.items()
           if k in harness._KEEP_ENV or not k.startswith(harness._SERVER_ENV_PREFIXES)}
    env.update({'PG_RETRY_MAX_SECONDS': '1', 'LOG_LEVEL': 'warn',
                'GRPC_LISTEN_ADDRESS': '127.0.0.1', 'GRPC_PORT': '0', 'ADMIN_PORT': '0'})
    env.update({k: str(v) for k, v in extra.items()})
    return env


def offline_digest(extra_env, timeout=120):
    """Runs `catalogd --digest` (a fresh load as configured) and returns its JSON."""
    r = subprocess.run([harness.CATALOGD_BIN, '--digest'], env=clean_server_env(extra_env),
                       capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise RuntimeError('catalogd --digest failed (%d): %s %s'
                           % (r.returncode, r.stdout[-1000:], r.stderr[-1000:]))
    for line in reversed(r.stdout.splitlines()):
        line = line.strip()
        if line.startswith('{') and '"digest"' in line:
            return json.loads(line)
    raise RuntimeError('no digest in output: %r' % r.stdout[-1000:])


# ---------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------

class PsqlSession:
    """A psql process kept open (e.g. to hold a lock); statements go through stdin."""

    def __init__(self, pg):
        self.proc = subprocess.Popen(['psql', '-X', '-q', '-v', 'ON_ERROR_STOP=0', pg.url()],
                                     stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, text=True)
        harness._register(self)

    def send(self, sql):
        self.proc.stdin.write(sql.rstrip() + '\n')
        self.proc.stdin.flush()

    def close(self, timeout=10):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout)
            except Exception:
                self.proc.kill()
                self.proc.wait()
        harness._unregister(self)

    def _cleanup(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class PsqlPipe:
    """One psql connection kept for many scripts (a new connection per script costs
    ~0.1-0.3 s here: process start, backend start, cold catalog caches).

    run(sql) sends a script and returns its output lines (unaligned, tuples only); any
    error ends the session (ON_ERROR_STOP) and raises with psql's stderr."""

    def __init__(self, pg):
        self.proc = subprocess.Popen(['psql', '-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1',
                                      '-d', pg.url()], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     bufsize=1, env=dict(os.environ, PGCONNECT_TIMEOUT='10'))
        self.n = 0
        harness._register(self)

    def run(self, sql, timeout=120):
        self.n += 1
        marker = '__psqlpipe_end_%d__' % self.n
        out = []
        try:
            self.proc.stdin.write(sql.rstrip() + '\n\\echo %s\n' % marker)
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        timer = threading.Timer(timeout, self.proc.kill)
        timer.start()
        try:
            while True:
                line = self.proc.stdout.readline()
                if not line:
                    self.proc.wait(10)
                    raise RuntimeError('psql session ended (%s): %s'
                                       % (self.proc.returncode, self.proc.stderr.read()[-2000:]))
                if line.rstrip('\n') == marker:
                    return out
                out.append(line.rstrip('\n'))
        finally:
            timer.cancel()

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(10)
            except Exception:
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except Exception:
                pass
        harness._unregister(self)

    _cleanup = close


def pg_stop_immediate(pg, timeout=30):
    """A crash of PostgreSQL: `pg_ctl stop -m immediate` (every backend dies at once,
    clients see their connection drop; recovery runs at the next start)."""
    pg._as_pg([os.path.join(pg.bindir, 'pg_ctl'), '-D', pg.datadir, '-m', 'immediate', '-w',
               '-t', str(int(timeout)), 'stop'], timeout=timeout + 10, check=False)
    pg.running = False


# ---------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------

def proc_rss(pid):
    try:
        with open('/proc/%d/status' % pid) as f:
            for line in f:
                if line.startswith('VmRSS:'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


class RssWatcher:
    """Samples the server's RSS every interval: /metrics process_resident_memory_bytes when
    the admin port answers, /proc/<pid>/status otherwise. peak, samples."""

    def __init__(self, srv, interval=0.2):
        self.srv, self.interval = srv, interval
        self.peak = 0
        self.peak_metrics = 0
        self.samples = 0
        self._stop = threading.Event()
        self._th = threading.Thread(target=self._run, daemon=True)
        self._th.start()

    def _run(self):
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self):
        v = proc_rss(self.srv.pid) if self.srv.alive() else None
        if v:
            self.peak = max(self.peak, v)
            self.samples += 1
        try:
            status, body = admin_status(self.srv, '/metrics', timeout=2)
            if status == 200:
                for line in body.splitlines():
                    if line.startswith('process_resident_memory_bytes '):
                        m = float(line.split()[1])
                        self.peak_metrics = max(self.peak_metrics, m)
                        self.peak = max(self.peak, int(m))
        except Exception:
            pass

    def stop(self):
        self._stop.set()
        self._th.join(5)
        return self.peak


# ---------------------------------------------------------------------------
# A client that keeps calling and records every outcome
# ---------------------------------------------------------------------------

class ClientLoop:
    """Threads, each on its own channel, calling probes in a loop until stop().

    probes: [(name, fn)] where fn(stub) makes one call and returns (ok, detail): ok False
    means a wrong answer. Every call is recorded as (t_start, t_end, name, code, ok, detail)
    with code a grpc.StatusCode (OK when fn returned)."""

    def __init__(self, srv, probes, threads=3, timeout=10.0, pause=0.0):
        import grpc
        self._grpc = grpc
        self.srv, self.probes, self.timeout, self.pause = srv, probes, timeout, pause
        self.records = []
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True)
                         for n in range(threads)]
        for t in self._threads:
            t.start()

    def _run(self, n):
        grpc = self._grpc
        channel = self.srv.new_channel()
        stub = self.srv.catalog_stub(channel)
        i = n
        try:
            while not self._stop.is_set():
                name, fn = self.probes[i % len(self.probes)]
                i += 1
                t0 = time.monotonic()
                try:
                    ok, detail = fn(stub)
                    code = grpc.StatusCode.OK
                except grpc.RpcError as e:
                    ok, detail, code = None, e.details(), e.code()
                with self.lock:
                    self.records.append((t0, time.monotonic(), name, code, ok, detail))
                if self.pause:
                    self._stop.wait(self.pause)
        finally:
            channel.close()

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(self.timeout + 10)
        return self.records

    def between(self, t0, t1):
        with self.lock:
            return [r for r in self.records if r[0] >= t0 and r[1] <= t1]

    def failures(self, records=None):
        recs = self.records if records is None else records
        return [r for r in recs if r[3] != self._grpc.StatusCode.OK or not r[4]]

    @staticmethod
    def show(recs, n=5):
        return ['%s %s %s' % (r[2], getattr(r[3], 'name', r[3]), r[5]) for r in recs[:n]]


# ---------------------------------------------------------------------------
# A raw HTTP/2 client (no flow control, no reading unless asked): for abuse tests
# ---------------------------------------------------------------------------

H2_PREFACE = b'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'
H2_DATA, H2_HEADERS, H2_RST, H2_SETTINGS, H2_PING, H2_GOAWAY, H2_WINDOW = 0, 1, 3, 4, 6, 7, 8


def h2_frame(ftype, flags, stream_id, payload):
    import struct
    n = len(payload)
    return struct.pack('>BHBBI', n >> 16, n & 0xffff, ftype, flags, stream_id & 0x7fffffff) \
        + payload


def _hpack_int(value, prefix_bits, first=0):
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = [first | limit]
    value -= limit
    while value >= 128:
        out.append((value & 0x7f) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_literal(headers):
    """HPACK block of literal fields without indexing, no Huffman (always valid)."""
    out = b''
    for name, value in headers:
        name, value = name.encode(), value.encode()
        out += b'\x00' + _hpack_int(len(name), 7) + name + _hpack_int(len(value), 7) + value
    return out


def grpc_frame(message):
    import struct
    return b'\x00' + struct.pack('>I', len(message)) + message


def grpc_headers(port, path):
    return hpack_literal([(':method', 'POST'), (':scheme', 'http'), (':path', path),
                          (':authority', '127.0.0.1:%d' % port),
                          ('content-type', 'application/grpc'), ('te', 'trailers')])


class RawH2:
    """One TCP connection speaking just enough HTTP/2 to start gRPC calls; never reads
    unless read_some() is called. rcvbuf shrinks the kernel receive buffer."""

    def __init__(self, port, settings=None, rcvbuf=None, timeout=5):
        import socket
        import struct
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(('127.0.0.1', port))
        self.next_stream = 1
        payload = b''.join(struct.pack('>HI', k, v) for k, v in (settings or {}).items())
        self.send(H2_PREFACE + h2_frame(H2_SETTINGS, 0, 0, payload))

    def send(self, data):
        self.sock.sendall(data)

    def settings_ack(self):
        self.send(h2_frame(H2_SETTINGS, 1, 0, b''))

    def call(self, path, message, end_stream=True):
        """Starts a unary call (HEADERS + DATA); returns its stream id."""
        sid = self.next_stream
        self.next_stream += 2
        self.send(h2_frame(H2_HEADERS, 0x4, sid, grpc_headers(self.port, path))
                  + h2_frame(H2_DATA, 0x1 if end_stream else 0, sid, grpc_frame(message)))
        return sid

    def read_some(self, n=65536):
        try:
            return self.sock.recv(n)
        except OSError:
            return b''

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def bulk_catalog_sql(org, product_id, n):
    """SQL for one product of org with n variants, each with one image (ids
    dddddddd-0000-4000-8000-<12 hex of 1..n>): big answers from small requests."""
    return """
INSERT INTO products (id, organization_id, title, sku, status)
  VALUES ('%(p)s', '%(o)s', 'Bulk', 'B', 'activa');
INSERT INTO variants (id, organization_id, product_id, sku, status, sale_price, warehouse_id)
  SELECT ('dddddddd-0000-4000-8000-' || lpad(to_hex(g), 12, '0'))::uuid, '%(o)s', '%(p)s',
         'SKU-' || g, 'active', 10.5, 'WH-' || g FROM generate_series(1, %(n)d) g;
INSERT INTO variant_images (id, variant_id, url, alt, position)
  SELECT ('ffffffff-0000-4000-8000-' || lpad(to_hex(g), 12, '0'))::uuid,
         ('dddddddd-0000-4000-8000-' || lpad(to_hex(g), 12, '0'))::uuid,
         'https://img.test/' || repeat('x', 100) || g, 'alt ' || g, 0
  FROM generate_series(1, %(n)d) g;""" % {'p': product_id, 'o': org, 'n': n}


def padded_catalog_sql(org, n, products=1, vendor_pad=0):
    """SQL for n variants of org spread over `products` products (variant g under product
    g % products), each variant's vendor vendor_pad bytes of padding then its number: a
    snapshot of a chosen size, quickly. Ids eeeeeeee-0000-4000-9000-<12 hex of 0..products-1>
    (products) and eeeeeeee-0000-4000-8000-<12 hex of 1..n> (variants)."""
    return """
INSERT INTO products (id, organization_id, title, sku, status)
  SELECT ('eeeeeeee-0000-4000-9000-' || lpad(to_hex(g), 12, '0'))::uuid, '%(o)s', 'Big', 'B',
         'activa' FROM generate_series(0, %(p)d - 1) g;
INSERT INTO variants (id, organization_id, product_id, sku, status, sale_price, warehouse_id,
                      vendor)
  SELECT ('eeeeeeee-0000-4000-8000-' || lpad(to_hex(g), 12, '0'))::uuid, '%(o)s',
         ('eeeeeeee-0000-4000-9000-' || lpad(to_hex(g %% %(p)d), 12, '0'))::uuid, 'SKU-' || g,
         'active', 10.5, 'WH', repeat('v', %(pad)d) || g
  FROM generate_series(1, %(n)d) g;""" % {'o': org, 'p': products, 'n': n, 'pad': vendor_pad}


def bulk_ids(n):
    return ['dddddddd-0000-4000-8000-%012x' % g for g in range(1, n + 1)]


def h2_read_responses(raw, n_streams, timeout=30):
    """Reads frames from a RawH2 until n_streams streams ended (END_STREAM or RST_STREAM)
    or timeout; returns {stream: {'data': bytes, 'ended': bool, 'rst': code or None}} and
    the GOAWAY error code (or None)."""
    import struct
    raw.sock.settimeout(0.5)
    buf, streams, goaway = b'', {}, None
    deadline = time.monotonic() + timeout
    ended = 0
    while ended < n_streams and time.monotonic() < deadline and goaway is None:
        try:
            d = raw.sock.recv(1 << 20)
        except OSError:
            d = None
        if d == b'':
            break
        if d:
            buf += d
        while len(buf) >= 9:
            n = (buf[0] << 16) | (buf[1] << 8) | buf[2]
            if len(buf) < 9 + n:
                break
            ftype, flags = buf[3], buf[4]
            sid = struct.unpack('>I', buf[5:9])[0] & 0x7fffffff
            payload = buf[9:9 + n]
            buf = buf[9 + n:]
            if sid:
                st = streams.setdefault(sid, {'data': b'', 'ended': False, 'rst': None})
            if ftype == H2_DATA:
                st['data'] += payload[1 + payload[0]:] if flags & 0x8 else payload
            elif ftype == H2_RST:
                st['rst'] = struct.unpack('>I', payload[:4])[0]
            elif ftype == H2_GOAWAY:
                goaway = struct.unpack('>I', payload[4:8])[0]
            elif ftype == H2_PING and not flags & 1:
                raw.send(h2_frame(H2_PING, 1, 0, payload))
            if sid and not st['ended'] and ((ftype in (H2_DATA, H2_HEADERS) and flags & 1)
                                           or ftype == H2_RST):
                st['ended'] = True
                ended += 1
    return streams, goaway


def grpc_messages(data):
    """The gRPC length-prefixed messages in a DATA payload."""
    import struct
    out, i = [], 0
    while i + 5 <= len(data):
        n = struct.unpack('>I', data[i + 1:i + 5])[0]
        out.append(data[i + 5:i + 5 + n])
        i += 5 + n
    return out


def raw_unary_future(channel, path, payload, timeout=30):
    """A unary call of raw bytes on any path, as a future."""
    return channel.unary_unary(path, request_serializer=None,
                               response_deserializer=None).future(payload, timeout=timeout)


def sku_of(srv, vid, org):
    """The sku srv holds for variant vid of org, or None if it holds none."""
    r = srv.catalog_stub().ValidateVariant(
        harness.pb.ValidateVariantRequest(organization_id=org, variant_id=vid), timeout=5)
    return r.sku if r.exists else None


def padding(partition, product, mib=6.0):
    """(partition, key, value) messages totalling about mib MiB: variants (of product) of an
    organisation nobody asks about, so that the mock's 5 MiB cap per partition drops the
    partition's oldest data (retention overtaking a position)."""
    pad = 'x' * 1000
    n = int(mib * 1024 * 1024 / 1100)
    return [(partition,) + kafka.variant('org_pad', '33333333-0000-4000-8000-%012x' % i, product,
                                         1, sku='PAD', vendor=pad) for i in range(n)]


class RawPeer:
    """A raw HTTP/1.0 peer on 127.0.0.1 for hostile-peer tests: reads each request's head,
    answers 200 with an octet-stream head, then hands the socket to send_body(c), which a
    subclass writes (trickle, hold, lie). close() stops it; stop_ev tells send_body to stop."""

    def __init__(self):
        self.stop_ev = threading.Event()
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(('127.0.0.1', 0))
        self.lsock.listen(8)
        self.lsock.settimeout(0.2)
        self.port = self.lsock.getsockname()[1]
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop_ev.is_set():
            try:
                c, _ = self.lsock.accept()
            except OSError:  # socket.timeout included
                continue
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        try:
            c.settimeout(5)
            req = b''
            while b'\r\n\r\n' not in req and len(req) < 8192:
                chunk = c.recv(1024)
                if not chunk:
                    return
                req += chunk
            c.sendall(b'HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n')
            self.send_body(c)
        except OSError:
            pass  # the replica gave up on us: what these tests want
        finally:
            c.close()

    def send_body(self, c):
        raise NotImplementedError

    def close(self):
        self.stop_ev.set()
        self.thread.join(5)
        self.lsock.close()
