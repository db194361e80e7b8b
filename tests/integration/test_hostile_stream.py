#!/usr/bin/python3
"""Checkpoint format 3 against a hostile peer and an operator's old files (issue 13, breaker).

The streams here are a real replica's GET /snapshot, taken apart into its units (header,
blocks, trailer) and put back together with their CRC-32Cs recomputed, so that each one is
refused for what it says, not for a checksum.

  HostilePeerTest
    test_a  ten peers in BOOTSTRAP_PEERS before the real one, each serving one lie or one
            damage: a format-2 stream, garbage after a valid header, a trailer cut short, no
            trailer, bytes after the trailer, a trailer whose digest lies, whose record count
            of a kind lies, header and trailer that agree on a live count the records do not
            have, a block sent twice (the put stage finds the same entity twice) and a trailer
            whose digest is not hex. Each is refused with its own reason (`peer bootstrap
            failed`, naming the peer), nothing of them is served, and the replica starts from
            the real peer with its digest.
    test_b  SIGTERM while a peer holds the connection open after the header, after every
            block (before the trailer: every record handed to the put stage) and in the middle
            of the trailer: exit 0 within 2 s each, no fallback on the way out.
    test_c  a valid header claiming 2M live entities of every kind, then garbage: refused
            ("damaged block frame"), the warm load serves, and the replica's peak RSS (VmHWM)
            is within 160 MiB of the same stream with the header's honest counts. The maps
            used to be sized from those counts before a record came: +345 MiB (now ~+30).
    test_d  the same two streams as checkpoint files in CHECKPOINT_DIR: a file's counts are
            trusted at once only if its size could hold them; these cannot be, and cost no
            more than from a peer.
    test_e  the same files made 180 MiB long by a hole (a few KiB on disk): only the bytes a
            file has on disk vouch for its counts; these cost no more than from a peer.
  OldCheckpointTest
    test_a  a CHECKPOINT_DIR holding only a format-2 file (the previous build's): skipped
            with the reason ("format version 2; this build reads 3"), the warm load serves, a
            format-3 checkpoint is written beside it; restarted with PostgreSQL stopped, the
            replica starts from that one with the same digest.

Real parts: the binary, PostgreSQL (PgCluster), the mock broker over TCP; the hostile peers
are raw sockets in this file.
Run: /usr/bin/python3 tests/integration/test_hostile_stream.py -v   (about 1 min)
"""
import os
import shutil
import struct
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402
import kafka  # noqa: E402
import reliability_util as ru  # noqa: E402

ORG = 'org_hostile'
P1 = '44444444-0000-4000-8000-00000000e001'
V = ['55555555-0000-4000-8000-00000000e%03d' % i for i in range(1, 7)]
BIG_ORG = 'org_hostile_big'
BIG_ROWS = 3000  # several 64 KiB blocks
eventually, logs_with = ru.eventually, ru.logs_with
KINDS = 5  # CAT_ENTITY_KINDS: variant, product, brand, tag, collection
FORGED_LIVE = 2 << 20  # the reader's cap on a header's count per kind (put_stage.c)


def setUpModule():
    harness.require_binary()


# ---- The stream, taken apart and put back together ----

def _crc_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


_T = _crc_table()


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = _T[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def parse(body):
    """(version, header body, [[tag, nrec, payload], ...]) of a checkpoint stream; checks every
    CRC on the way so that a wrong parse cannot pass for a lie."""
    assert body[:8] == b'CATDCKPT'
    ver, hl = struct.unpack_from('<II', body, 8)
    hb = body[16:16 + hl]
    assert struct.unpack_from('<I', body, 16 + hl)[0] == crc32c(body[:16 + hl])
    at, units = 20 + hl, []
    while at < len(body):
        tag, ln, nrec = struct.unpack_from('<BII', body, at)
        payload = body[at + 9:at + 9 + ln]
        assert struct.unpack_from('<I', body, at + 9 + ln)[0] == crc32c(body[at:at + 9 + ln])
        units.append([bytes([tag]), nrec, payload])
        at += 13 + ln
    assert units[-1][0] == b'E' and len(units[-1][2]) == 8 + KINDS * 16 + 32
    return ver, hb, units


def unit(tag, nrec, payload):
    f = tag + struct.pack('<II', len(payload), nrec) + payload
    return f + struct.pack('<I', crc32c(f))


def build(ver, hb, units):
    h = b'CATDCKPT' + struct.pack('<II', ver, len(hb)) + hb
    return h + struct.pack('<I', crc32c(h)) + b''.join(unit(*u) for u in units)


def trailer_with(payload, total=None, records=None, live=None, digest=None):
    """The trailer's payload with some fields replaced (records/live: {kind: value})."""
    p = bytearray(payload)
    if total is not None:
        struct.pack_into('<Q', p, 0, total)
    for k, v in (records or {}).items():
        struct.pack_into('<Q', p, 8 + 16 * k, v)
    for k, v in (live or {}).items():
        struct.pack_into('<Q', p, 16 + 16 * k, v)
    if digest is not None:
        p[8 + KINDS * 16:] = digest
    return bytes(p)


def _varint(b, at):
    v, sh = 0, 0
    while True:
        x = b[at]
        at += 1
        v |= (x & 0x7f) << sh
        sh += 7
        if not x & 0x80:
            return v, at


def _put_varint(v):
    out = bytearray()
    while True:
        out.append((v & 0x7f) | (0x80 if v > 0x7f else 0))
        v >>= 7
        if not v:
            return bytes(out)


def header_with_live(hb, kind, value):
    """The header body with live count kind set to value."""
    tl, at = _varint(hb, 0)
    at += tl
    nparts, at = _varint(hb, at)
    for _ in range(2 * nparts):
        _, at = _varint(hb, at)
    for k in range(KINDS):
        start = at
        _, at = _varint(hb, at)
        if k == kind:
            return hb[:start] + _put_varint(value) + hb[at:]
    raise AssertionError('no live counts in the header')


def lies(body):
    """[(name, bytes, what the refusal says)]: one damage or lie each."""
    ver, hb, units = parse(body)
    blocks, tr = units[:-1], units[-1][2]
    total = sum(u[1] for u in blocks)
    whole = build(ver, hb, units)
    assert whole == body, 'the stream put back together is not the one taken apart'
    head = build(ver, hb, [])
    k0_records = struct.unpack_from('<Q', tr, 8)[0]
    k0_live = struct.unpack_from('<Q', tr, 16)[0]
    return [
        ('format 2', build(2, hb, units), 'format version 2; this build reads 3'),
        ('garbage after the header', head + bytes(range(256)) * 4, 'damaged block frame'),
        ('trailer cut short', whole[:-20], 'truncated'),
        ('no trailer', build(ver, hb, blocks), 'truncated'),
        ('bytes after the trailer', whole + b'\0', 'bytes after the trailer'),
        ('digest lies', build(ver, hb, blocks + [[b'E', 0, trailer_with(tr, digest=b'0' * 32)]]),
         "differs from the trailer's 00000000000000000000000000000000"),
        ('record count lies',
         build(ver, hb, blocks + [[b'E', 0, trailer_with(tr, records={0: k0_records + 1})]]),
         'variant count differs from the trailer'),
        ('live count lies in header and trailer',
         build(ver, header_with_live(hb, 0, k0_live + 1),
               blocks + [[b'E', 0, trailer_with(tr, records={0: k0_records + 1},
                                                live={0: k0_live + 1})]]),
         'variant count differs from the trailer'),
        ('a block twice',
         build(ver, hb, [blocks[0]] + blocks + [[b'E', 0, trailer_with(
             tr, total=total + blocks[0][1])]]),
         'record %d: the same entity twice' % blocks[0][1]),
        ('digest not hex',
         build(ver, hb, blocks + [[b'E', 0, trailer_with(tr, digest=b'g' * 32)]]),
         'malformed trailer'),
    ]


class ScriptedPeer(ru.RawPeer):
    """A hostile peer on 127.0.0.1: answers any request with 200 and body, then closes, or
    (hold) keeps the connection open, sending nothing more, until closed."""

    def __init__(self, body, hold=False):
        self.body, self.hold = body, hold
        self.served = 0
        super().__init__()

    def send_body(self, c):
        c.sendall(self.body)
        self.served += 1
        if self.hold:
            self.stop_ev.wait(60)


class Base(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = harness.PgCluster()
        cls.pg.load_fixtures()
        cls.pg.psql(ru.padded_catalog_sql(BIG_ORG, BIG_ROWS, vendor_pad=100))

    @classmethod
    def tearDownClass(cls):
        cls.pg.stop()

    def setUp(self):
        if not self.pg._postmaster_pid():
            self.pg.start()
        self.km = kafka.KafkaMock(partitions=2)
        self.addCleanup(self.km.stop)

    def server(self, **extra):
        env = {'DATABASE_URL': self.pg.url(), 'KAFKA_BOOTSTRAP_SERVERS': self.km.bootstrap,
               'SYNC_MAX_BATCH_MS': '5', 'PG_RETRY_MAX_SECONDS': '1',
               'BOOTSTRAP_PEER_TIMEOUT_MS': '3000', 'AUDIT_ROWS_PER_SECOND': '0'}
        env.update(extra)
        srv = harness.Catalogd(env)
        self.addCleanup(srv.close)
        return srv

    def peer(self):
        """A serving replica with ORG's events applied."""
        a = self.server(SNAPSHOT_SERVE='true')
        a.wait_serving(60)
        ru.produce(self.km, ru.product_events(ORG, P1, 1, V))
        ru.wait_caught_up(a, self.km)
        return a

    def scripted(self, body, hold=False):
        p = ScriptedPeer(body, hold)
        self.addCleanup(p.close)
        return p


class HostilePeerTest(Base):

    def test_a_lies_and_damage_are_refused_then_the_real_peer_is_used(self):
        a = self.peer()
        body = ru.snapshot_bytes(a)
        self.assertGreater(len(parse(body)[2]), 3, 'several blocks')
        cases = lies(body)
        peers = [self.scripted(b) for _, b, _ in cases]
        b = self.server(BOOTSTRAP_PEERS=','.join(['127.0.0.1:%d' % p.port for p in peers] +
                                                 ['127.0.0.1:%d' % a.admin_port]))
        b.wait_serving(60)
        src = ru.startup_source(b)
        self.assertEqual(src['source'], 'peer', b.tail())
        self.assertIn(':%d' % a.admin_port, src['peer'])
        failed = logs_with(b, 'peer bootstrap failed')
        for (name, _, why), p in zip(cases, peers):
            self.assertEqual(p.served, 1, name)
            mine = [r for r in failed if r['peer'].split()[0] == '127.0.0.1:%d' % p.port]
            self.assertEqual(len(mine), 1, '%s: %s' % (name, b.tail()))
            self.assertEqual(mine[0]['level'], 'warn')
            self.assertIn(why, mine[0]['why'], name)
        self.assertEqual(len(failed), len(cases), b.tail())
        ru.wait_caught_up(b, self.km)
        self.assertEqual(ru.digest(b)['digest'], ru.digest(a)['digest'])
        self.assertEqual(b.stop(), 0)

    def test_b_sigterm_while_the_peer_holds_the_stream(self):
        a = self.peer()
        ver, hb, units = parse(ru.snapshot_bytes(a))
        blocks = units[:-1]
        whole = build(ver, hb, units)
        held = [('after the header', build(ver, hb, [])),
                ('after every block', build(ver, hb, blocks)),
                ('mid-trailer', whole[:-60])]
        for name, body in held:
            p = self.scripted(body, hold=True)
            b = self.server(BOOTSTRAP_PEERS='127.0.0.1:%d' % p.port, SHUTDOWN_DRAIN_MS='0',
                            SHUTDOWN_GRACE_SECONDS='2', BOOTSTRAP_PEER_TIMEOUT_MS='20000',
                            BOOTSTRAP_PEER_MIN_BYTES_PER_SECOND='0')
            eventually(lambda: p.served == 1, 15, '%s: the stream sent' % name)
            time.sleep(0.3)  # the replica reads what was sent and waits for the rest
            t0 = time.monotonic()
            b.send_signal(15)
            code = b.wait_exit(10)
            took = time.monotonic() - t0
            ru.note('%s: exit %d %.2f s after SIGTERM' % (name, code, took))
            self.assertEqual(code, 0, '%s: %s' % (name, b.tail()))
            self.assertLess(took, 2.0, name)
            self.assertFalse(logs_with(b, 'startup source'), '%s: %s' % (name, b.tail()))
            self.assertFalse(logs_with(b, 'warm load starting'), name)


    def test_c_a_forged_header_count_does_not_size_the_maps(self):
        growth = self.forged_count_growth(self.from_peer, 'peer bootstrap failed')
        self.assertLess(growth, 160 * 2**20, 'a forged header count sized the maps')

    def test_d_a_forged_file_count_does_not_size_the_maps(self):
        """A file's counts within what its size can hold size the maps at once; these
        cannot be (10M records in a few KiB): sized as a peer's, as the records come."""
        growth = self.forged_count_growth(self.from_file, 'checkpoint skipped')
        self.assertLess(growth, 160 * 2**20, 'a forged file header count sized the maps')

    def test_e_a_sparse_file_does_not_size_the_maps(self):
        """The same forged file made 180 MiB long by a hole (truncate: a few KiB on disk,
        enough bytes on paper for 10M records of 18 bytes): its holes vouch for nothing, so
        it is sized as a peer's stream too."""
        growth = self.forged_count_growth(self.from_sparse_file, 'checkpoint skipped')
        self.assertLess(growth, 160 * 2**20, 'a sparse file\'s size sized the maps')

    def from_sparse_file(self, stream):
        d = tempfile.mkdtemp(prefix='catalogd-hostile-')
        self.addCleanup(shutil.rmtree, d, True)
        path = os.path.join(d, 'checkpoint-%020d.ckpt' % time.time_ns())
        with open(path, 'wb') as f:
            f.write(stream)
            f.truncate(len(stream) + KINDS * FORGED_LIVE * 18)  # PUT_STAGE_MIN_RECORD each
        self.assertLess(os.stat(path).st_blocks * 512, 2**20, 'setup: the file is sparse')
        return self.server(CHECKPOINT_DIR=d)

    def from_peer(self, stream):
        p = self.scripted(stream)
        return self.server(BOOTSTRAP_PEERS='127.0.0.1:%d' % p.port)

    def from_file(self, stream):
        d = tempfile.mkdtemp(prefix='catalogd-hostile-')
        self.addCleanup(shutil.rmtree, d, True)
        with open(os.path.join(d, 'checkpoint-%020d.ckpt' % time.time_ns()), 'wb') as f:
            f.write(stream)
        return self.server(CHECKPOINT_DIR=d)

    def forged_count_growth(self, start, failed_msg):
        """A real replica's header, then garbage, once with its honest live counts and once
        claiming 2M of every kind, each to a new replica started by start(stream): refused
        ("damaged block frame"), the warm load serves. Returns the growth of the replica's
        peak RSS (VmHWM) from the honest to the forged counts."""
        a = self.peer()
        ver, hb, units = parse(ru.snapshot_bytes(a))
        forged = hb
        for k in range(KINDS):
            forged = header_with_live(forged, k, FORGED_LIVE)
        garbage = bytes(range(256)) * 4
        peaks = {}
        for name, h in (('honest counts', hb), ('2M of every kind', forged)):
            b = start(build(ver, h, []) + garbage)
            b.wait_serving(60)
            failed = logs_with(b, failed_msg)
            self.assertEqual(len(failed), 1, '%s: %s' % (name, b.tail()))
            self.assertIn('damaged block frame', failed[0]['why'], name)
            self.assertEqual(ru.startup_source(b)['source'], 'postgres', b.tail())
            self.assertGreater(ru.digest(b)['counts']['variants'], 0, name)  # it serves
            peaks[name] = vm_hwm(b.pid)
            self.assertEqual(b.stop(), 0)
        ru.note('peak RSS %.1f MiB with honest counts, %.1f MiB with 2M of every kind' %
                (peaks['honest counts'] / 2**20, peaks['2M of every kind'] / 2**20))
        return peaks['2M of every kind'] - peaks['honest counts']


def vm_hwm(pid):
    """The process's peak resident set (VmHWM), in bytes."""
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) * 1024
    raise AssertionError('no VmHWM for %d' % pid)


class OldCheckpointTest(Base):

    def setUp(self):
        super().setUp()
        self.dir = tempfile.mkdtemp(prefix='catalogd-hostile-')
        self.addCleanup(shutil.rmtree, self.dir, True)

    def test_a_a_format_2_file_alone_is_skipped_then_replaced(self):
        a = self.peer()
        ver, hb, units = parse(ru.snapshot_bytes(a))
        old = os.path.join(self.dir, 'checkpoint-%020d.ckpt' % (time.time_ns() - 10 ** 9))
        with open(old, 'wb') as f:
            f.write(build(2, hb, units))
        env = {'CHECKPOINT_DIR': self.dir, 'CHECKPOINT_INTERVAL_SECONDS': '1'}
        b = self.server(**env)
        b.wait_serving(60)
        skipped = logs_with(b, 'checkpoint skipped')
        self.assertEqual(len(skipped), 1, b.tail())
        self.assertEqual(skipped[0]['path'], old)
        self.assertIn('format version 2; this build reads 3', skipped[0]['why'])
        self.assertEqual(ru.startup_source(b)['source'], 'postgres', b.tail())
        ru.wait_caught_up(b, self.km)
        want = ru.digest(b)['digest']  # a warm load starts at the topic's end: not a's
        eventually(lambda: logs_with(b, 'checkpoint written'), 20, 'a checkpoint written')
        self.assertEqual(b.stop(), 0)
        names = sorted(n for n in os.listdir(self.dir) if n.endswith('.ckpt'))
        self.assertGreater(len(names), 1, names)
        with open(os.path.join(self.dir, names[-1]), 'rb') as f:
            self.assertEqual(struct.unpack_from('<I', f.read(12), 8)[0], 3)
        self.pg.stop()
        c = self.server(**env)
        c.wait_serving(60)
        self.assertEqual(ru.startup_source(c)['source'], 'checkpoint', c.tail())
        ru.wait_caught_up(c, self.km)
        self.assertEqual(ru.digest(c)['digest'], want)
        self.assertEqual(c.stop(), 0)


if __name__ == '__main__':
    unittest.main()
