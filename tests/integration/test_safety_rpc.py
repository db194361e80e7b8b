#!/usr/bin/python3
"""Production-safety regressions of the RPC side (issue 11): each test reproduces one
defect against the real binary, the mock broker over TCP and real gRPC clients.

  #7   a version sent as a decimal string above int64 is refused (logged, counted,
       dead-lettered), never clamped to INT64_MAX: the next normal upsert applies;
       so is one with a sign, blanks or leading zeros (rpc2-2)
  #9   unknown protobuf fields with NUL bytes are skipped (forward compatibility);
       a NUL in a known string field is still INVALID_ARGUMENT
  #16  a client cancellation is counted as CANCELLED, not logged as a bad request
  rpc2-1 a call past its deadline, or cancelled after its whole request, is not counted OK
  #15  one reply larger than budget / workers is sent on an idle server
  #17  a gRPC port conflict: the first error line is the clear one
"""
import json
import re
import socket
import time
import unittest

import grpc

import expected as E
import harness
import kafka
import reliability_util as ru
from harness import pb

StatusCode = grpc.StatusCode
_PG = None


def shared_pg():
    """One PostgreSQL with schema + seed for the module (started on first use)."""
    global _PG
    if _PG is None:
        _PG = harness.PgCluster()
        _PG.load_fixtures()
    return _PG


def tearDownModule():
    if _PG is not None:
        _PG.close()

ORG = 'org_s'
P1 = '11111111-0000-4000-8000-00000000f0a1'
V1 = '22222222-0000-4000-8000-00000000f0a1'
V2 = '22222222-0000-4000-8000-00000000f0a2'


eventually = ru.eventually


def validate(srv, vid, org=ORG):
    return srv.catalog_stub().ValidateVariant(
        pb.ValidateVariantRequest(organization_id=org, variant_id=vid), timeout=5)


class VersionAboveInt64(unittest.TestCase):
    """#7: "version":"9223372036854775808" used to become INT64_MAX and freeze the entity."""

    def test_out_of_range_version_string_is_rejected_and_the_next_upsert_applies(self):
        dlq = 'catalog.dlq'
        km = kafka.KafkaMock(partitions=1)
        self.addCleanup(km.stop)
        km.command('create %s 1' % dlq)
        bad = []
        # Above int64, and (rpc2-2) loose forms strtoll would read as 50 or 60: the
        # contract's int64 is digits only, without sign, blank or leading zero; (rpc2-3)
        # a version that is not a positive integer says so, not "version missing".
        versions = ['9223372036854775808', '+09223372036854775808',
                    ' 18446744073709551616', '99999999999999999999999', ' 50', '+50', '050',
                    '\t60', -5, 0, None, 1e3]
        for i, v in enumerate(versions):
            vid = V1 if i == 0 else '22222222-0000-4000-8000-00000000f1%02d' % i
            k, env = kafka.variant(ORG, vid, P1, 1, sku='FROZEN')
            env['version'] = v
            bad.append((0, k, env))
        k, good = kafka.variant(ORG, V1, P1, 2, sku='APPLIED')
        # The history, replayed from offset 0: the product, the poisoned versions, then
        # a normal upsert of the same variant (same partition: read in this order).
        ru.produce(km, [(0,) + kafka.product(ORG, P1, 1)] + bad + [(0, k, good)])
        srv = harness.Catalogd({'KAFKA_BOOTSTRAP_SERVERS': km.bootstrap,
                                'KAFKA_DLQ_TOPIC': dlq, 'SYNC_MAX_BATCH_MS': '5'})
        self.addCleanup(srv.close)
        srv.wait_serving(30)
        ru.wait_caught_up(srv, km, 30)
        r = eventually(lambda: validate(srv, V1).exists and validate(srv, V1), what='V1')
        self.assertEqual(r.sku, 'APPLIED', 'the upsert after the out-of-range version applies')
        for _, key, _ in bad[1:]:
            vid = key.rsplit('/', 1)[1]
            self.assertFalse(validate(srv, vid).exists, vid)
        # Later upserts keep applying (the entity is not frozen).
        k3, v3 = kafka.variant(ORG, V1, P1, 3, sku='LATER')
        ru.produce(km, [(0, k3, v3)])
        eventually(lambda: validate(srv, V1).sku == 'LATER', what='a later upsert')
        m = ru.metrics(srv)
        self.assertEqual(ru.metric_sum(m, 'catalogd_events_total', result='rejected'), len(bad))
        why = [l.get('why') for l in srv.logs() if l.get('msg') == 'event rejected']
        self.assertEqual(why, ['version out of range' if isinstance(v, str) and re.fullmatch('[1-9][0-9]*', v)
                               else 'version is not a positive integer' for v in versions])
        keys = eventually(lambda: (lambda ks: ks if len(ks) >= len(bad) else None)(
            ru.kcat_keys(km.bootstrap, dlq)), 20, 'the rejected events in the dead-letter topic')
        self.assertEqual(sorted(keys), sorted(k for _, k, _ in bad))



# ---------------------------------------------------------------------------
# #9: unknown fields are skipped whatever bytes they hold
# ---------------------------------------------------------------------------

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7f
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(num, wire, payload):
    """One protobuf field: tag, then the payload (already encoded for wire 0/1/5)."""
    tag = varint(num << 3 | wire)
    if wire == 2:
        return tag + varint(len(payload)) + payload
    return tag + payload


# Unknown fields of every wire type proto3 uses, several with NUL bytes, one with a
# field number needing a multi-byte tag, one nested message full of NULs.
UNKNOWN = (field(9, 2, b'abc\x00def') + field(10, 0, varint(0)) + field(11, 1, b'\x00' * 8)
           + field(12, 5, b'\x00\x01\x00\x00') + field(13, 2, b'\x00' * 40)
           + field(1000, 2, field(1, 2, b'x\x00y') + field(2, 0, varint(300)))
           + field(536870911, 0, varint(2 ** 63)) + field(14, 2, b''))


def s(num, text):
    return field(num, 2, text.encode() if isinstance(text, str) else text)


# (method, response type, request bytes, check of a normal answer, known string field 2)
CALLS = [
    ('ValidateVariant', pb.ValidateVariantResponse,
     s(1, E.ORG_A) + s(2, E.V_A11), lambda r: r.exists and r.variant_id == E.V_A11, 'variant_id'),
    ('GetProductDetails', pb.GetProductDetailsResponse,
     s(1, E.ORG_A) + s(2, E.P_A1) + field(3, 0, varint(1)) + field(4, 0, varint(1)),
     lambda r: r.success and len(r.product.variants) > 0, 'product_id'),
    ('GetVariantsBatch', pb.GetVariantsBatchResponse,
     s(1, E.ORG_A) + s(2, E.V_A11) + s(2, E.V_A12),
     lambda r: r.success and len(r.variants) == 2, 'variant_ids'),
    ('ValidateVariantsBatch', pb.ValidateVariantsBatchResponse,
     s(1, E.ORG_A) + s(2, E.V_A11) + s(2, E.UNKNOWN_1),
     lambda r: r.success and [v.exists for v in r.validations] == [True, False], 'variant_ids'),
]


class UnknownFieldsWithNul(unittest.TestCase):
    """#9: "variant_id contains a NUL byte" was the answer to an unknown field 9 = "a\\0b"."""

    @classmethod
    def setUpClass(cls):
        cls.srv = harness.Catalogd({'DATABASE_URL': shared_pg().url()})
        cls.srv.wait_serving(30)

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def raw(self, method):
        return harness.raw_unary(self.srv.channel(), '/catalog.CatalogService/' + method)

    def test_unknown_fields_get_the_normal_answer(self):
        for method, rtype, req, ok, _ in CALLS:
            with self.subTest(method=method):
                plain = rtype.FromString(self.raw(method)(req, timeout=10))
                self.assertTrue(ok(plain), plain)
                head = len(s(1, E.ORG_A))
                # Unknown fields after, before and between the known ones.
                for body in (req + UNKNOWN, UNKNOWN + req, req[:head] + UNKNOWN + req[head:],
                             req + field(9, 2, b'\x00')):
                    got = rtype.FromString(self.raw(method)(body, timeout=10))
                    self.assertEqual(got, plain, 'unknown fields changed the answer')

    def test_nul_in_a_known_string_field_is_still_invalid_argument(self):
        for method, rtype, req, ok, name in CALLS:
            cases = [(s(1, 'org_a\x00evil') + req[len(s(1, E.ORG_A)):], 'organization_id'),
                     (req + s(2, E.V_A11 + '\x00x'), name),
                     (UNKNOWN + s(1, b'\x00') + req, 'organization_id')]
            for body, fname in cases:
                with self.subTest(method=method, field=fname):
                    err = harness.rpc_error(self.raw(method), body)
                    self.assertEqual(err.code(), StatusCode.INVALID_ARGUMENT)
                    self.assertEqual(err.details(), '%s contains a NUL byte' % fname)


    def test_unknown_groups_are_skipped(self):
        # rpc2-7: groups (wire types 3/4, proto2) in unknown fields are skipped by
        # proto parsers; protobuf-c refused them, so the request was INVALID_ARGUMENT.
        def group(num, body):
            return varint(num << 3 | 3) + body + varint(num << 3 | 4)
        nested = group(20, group(21, group(22, field(1, 0, varint(5)))) + s(2, b'a\x00b'))
        groups = [group(9, b''), group(9, field(10, 0, varint(1))), nested,
                  group(15, UNKNOWN + group(16, b'') + field(3, 5, b'\x00' * 4)),
                  group(2 ** 29 - 1, field(1, 1, b'\x00' * 8))]
        for method, rtype, req, ok, _ in CALLS:
            plain = rtype.FromString(self.raw(method)(req, timeout=10))
            head = len(s(1, E.ORG_A))
            for g in groups:
                for body in (req + g, g + req, req[:head] + g + req[head:], g + req + g):
                    with self.subTest(method=method, body=body.hex()):
                        got = rtype.FromString(self.raw(method)(body, timeout=10))
                        self.assertEqual(got, plain, 'an unknown group changed the answer')
            # A NUL in a known string field after a group is still refused.
            err = harness.rpc_error(self.raw(method), nested + s(1, b'org_a\x00x') + req[head:])
            self.assertEqual(err.code(), StatusCode.INVALID_ARGUMENT)
            self.assertEqual(err.details(), 'organization_id contains a NUL byte')
            # Malformed: still refused.
            deep = b''
            for i in range(200):
                deep = group(9, deep)
            for body in (req + varint(9 << 3 | 6), req + varint(9 << 3 | 7),
                         req + varint(9 << 3 | 4), req + varint(9 << 3 | 3),
                         req + varint(9 << 3 | 3) + varint(10 << 3 | 4),
                         req + varint(9 << 3 | 3) + varint(10 << 3 | 6) + varint(9 << 3 | 4),
                         req + varint(9 << 3 | 3) + field(10, 2, b'') [:-1],
                         req + deep):
                with self.subTest(method=method, malformed=body[len(req):][:16].hex()):
                    err = harness.rpc_error(self.raw(method), body)
                    self.assertEqual(err.code(), StatusCode.INVALID_ARGUMENT)

    def test_invalid_utf8_in_a_known_string_field_is_invalid_argument(self):
        # rpc2-8: proto3 string fields must be UTF-8 (what standard parsers enforce);
        # such an org used to be answered as an unknown tenant.
        bad = [b'org-\xff\xfe', b'o\xc3', b'\xe2\x9c', b'\xc0\xaf', b'\xed\xa0\x80x',
               b'\xf4\x90\x80\x80', b'\x80' * 4, b'ok\xf8\x88\x80\x80\x80']
        second = {'ValidateVariant': 'variant_id', 'GetProductDetails': 'product_id',
                  'GetVariantsBatch': 'variant_ids[1]', 'ValidateVariantsBatch': 'variant_ids[1]'}
        for method, rtype, req, ok, _ in CALLS:
            head = len(s(1, E.ORG_A))
            for b in bad:
                cases = [(s(1, b) + req[head:], 'organization_id')]
                if 'Batch' in method:
                    cases.append((s(1, E.ORG_A) + s(2, E.V_A11) + s(2, b), second[method]))
                else:
                    cases.append((s(1, E.ORG_A) + s(2, b) + req[head + 38:], second[method]))
                for body, fname in cases:
                    with self.subTest(method=method, field=fname, value=b):
                        err = harness.rpc_error(self.raw(method), body)
                        self.assertEqual(err.code(), StatusCode.INVALID_ARGUMENT)
                        self.assertEqual(err.details(), '%s is not valid UTF-8' % fname)
            # Unusual but valid UTF-8 is an (unknown) organization, not an error.
            for org in ('ok-\u00e9', '\U0001f600\u4e2d\u6587', '\u0661\u0662', '\ufeff'):
                with self.subTest(method=method, org=org):
                    body = s(1, org) + req[head:]
                    try:
                        self.raw(method)(body, timeout=10)
                    except grpc.RpcError as e:
                        self.assertNotEqual(e.code(), StatusCode.INVALID_ARGUMENT, e.details())


# ---------------------------------------------------------------------------
# #16: client cancellations are CANCELLED, not bad requests
# ---------------------------------------------------------------------------

H2_CANCEL = 0x8


def rpc_codes(m, code):
    return ru.metric_sum(m, 'catalogd_rpc_requests_total', code=code)


class Cancellations(unittest.TestCase):
    """#16: a client that cancels a call was counted and logged as INVALID_ARGUMENT."""

    @classmethod
    def setUpClass(cls):
        cls.srv = harness.Catalogd({'DATABASE_URL': shared_pg().url(),
                                    'ACCESS_LOG_SAMPLE': '0'})
        cls.srv.wait_serving(30)

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def rst(self, raw, sid):
        raw.send(ru.h2_frame(ru.H2_RST, 0, sid, H2_CANCEL.to_bytes(4, 'big')))

    def test_cancelled_calls_are_counted_as_cancelled(self):
        m0 = ru.metrics(self.srv)
        n_rejected0 = sum(1 for l in self.srv.logs() if l.get('msg') == 'request rejected')
        req = pb.ValidateVariantRequest(organization_id=E.ORG_A, variant_id=E.V_A11)
        body = req.SerializeToString()
        path = '/catalog.CatalogService/ValidateVariant'
        n = 0
        raw = ru.RawH2(self.srv.port)
        self.addCleanup(raw.close)
        raw.settings_ack()
        for i in range(20):
            sid = raw.next_stream
            raw.next_stream += 2
            head = ru.h2_frame(ru.H2_HEADERS, 0x4, sid, ru.grpc_headers(self.srv.port, path))
            if i % 2:  # headers and half of the message, then RST_STREAM(CANCEL)
                raw.send(head + ru.h2_frame(ru.H2_DATA, 0, sid, ru.grpc_frame(body)[:7]))
            else:      # headers only, then RST_STREAM(CANCEL)
                raw.send(head)
            time.sleep(0.02)  # let the server take the call before the reset
            self.rst(raw, sid)
            n += 1
        # And through grpcio: futures cancelled right after they were sent.
        stub = self.srv.catalog_stub()
        for _ in range(20):
            f = stub.ValidateVariant.future(req, timeout=10)
            time.sleep(0.005)
            f.cancel()
        # A normal call on the raw connection afterwards still works.
        r = validate(self.srv, E.V_A11, org=E.ORG_A)
        self.assertTrue(r.exists)

        def settled():
            m = ru.metrics(self.srv)
            return m if rpc_codes(m, 'CANCELLED') - rpc_codes(m0, 'CANCELLED') >= n else None
        try:
            m = eventually(settled, 15, '%d cancellations counted as CANCELLED' % n)
        except AssertionError:
            m = ru.metrics(self.srv)
            raise AssertionError('codes counted: %r; logs: %r' % (
                {k: v - m0.get(k, 0) for k, v in m.items()
                 if k.startswith('catalogd_rpc_requests_total') and v != m0.get(k, 0)},
                [l for l in self.srv.logs() if l.get('msg') == 'request rejected'][:3]))
        self.assertEqual(rpc_codes(m, 'INVALID_ARGUMENT') - rpc_codes(m0, 'INVALID_ARGUMENT'), 0,
                         'a cancellation counted as INVALID_ARGUMENT')
        self.assertEqual(m.get('catalogd_bad_requests_total', 0)
                         - m0.get('catalogd_bad_requests_total', 0), 0)
        rejected = [l for l in self.srv.logs() if l.get('msg') == 'request rejected']
        self.assertEqual(rejected[n_rejected0:], [], 'a cancellation logged as a bad request')
        self.assertTrue(self.srv.alive())

    def vv_codes(self, m0):
        """{code: count} of ValidateVariant calls counted since m0."""
        m = ru.metrics(self.srv)
        pre = 'catalogd_rpc_requests_total{method="ValidateVariant",code="'
        return {k[len(pre):-2]: v - m0.get(k, 0) for k, v in m.items()
                if k.startswith(pre) and v != m0.get(k, 0)}

    def settled_codes(self, m0, n, timeout=10):
        """vv_codes(m0) once n calls are counted, or once the count has not moved for
        1 s (bounded by timeout)."""
        deadline = time.monotonic() + timeout
        last, since = None, time.monotonic()
        while time.monotonic() < deadline:
            got = self.vv_codes(m0)
            if sum(got.values()) >= n:
                return got
            if got != last:
                last, since = got, time.monotonic()
            elif time.monotonic() - since >= 1.0:
                return got
            time.sleep(0.05)
        return self.vv_codes(m0)

    def n_rejected(self):
        return sum(1 for l in self.srv.logs() if l.get('msg') == 'request rejected')

    def test_expired_deadlines_are_not_counted_ok(self):
        # grpc-timeout: 1n (the core rounds it up to 1 ms, from about when the request
        # arrives): most calls expire before their reply leaves, a few are answered in
        # time. The count must match what the client got: OK only for a reply received.
        m0, rej0 = ru.metrics(self.srv), self.n_rejected()
        body = pb.ValidateVariantRequest(organization_id=E.ORG_A,
                                         variant_id=E.V_A11).SerializeToString()
        path = '/catalog.CatalogService/ValidateVariant'
        raw = ru.RawH2(self.srv.port)
        self.addCleanup(raw.close)
        raw.settings_ack()
        n = 10
        for _ in range(n):
            sid = raw.next_stream
            raw.next_stream += 2
            head = ru.hpack_literal([(':method', 'POST'), (':scheme', 'http'), (':path', path),
                                     (':authority', '127.0.0.1:%d' % self.srv.port),
                                     ('content-type', 'application/grpc'), ('te', 'trailers'),
                                     ('grpc-timeout', '1n')])
            raw.send(ru.h2_frame(ru.H2_HEADERS, 0x4, sid, head)
                     + ru.h2_frame(ru.H2_DATA, 0x1, sid, ru.grpc_frame(body)))
        streams, _ = ru.h2_read_responses(raw, n, timeout=10)
        self.assertEqual(sum(1 for st in streams.values() if st['ended']), n, streams)
        answered = sum(1 for st in streams.values()
                       if ru.grpc_messages(st['data']) and st['rst'] is None)
        torn = sum(1 for st in streams.values()   # a reply, then the deadline's reset
                   if ru.grpc_messages(st['data']) and st['rst'] is not None)
        # A call the core expires before handing it to us is never counted: wait for
        # all n or for the count to settle.
        got = self.settled_codes(m0, n)
        self.assertEqual(set(got) - {'OK', 'DEADLINE_EXCEEDED'}, set(), got)
        self.assertGreaterEqual(got.get('OK', 0), answered, (got, streams))
        self.assertLessEqual(got.get('OK', 0), answered + torn,
                             'expired calls counted OK: %r, clients got %d replies'
                             % (got, answered))
        # grpcio with a 100 us deadline: its timer starts before the server's (which
        # the core rounds up to 1 ms), so a reply the server sent within its deadline
        # may reach a client that gave up: OK for the server, DEADLINE_EXCEEDED for the
        # client, inherently. Only check that every call the server counts has a
        # code of a completed or expired call and none is logged as a bad request.
        m0 = ru.metrics(self.srv)
        stub = self.srv.catalog_stub()
        for _ in range(40):
            try:
                stub.ValidateVariant(pb.ValidateVariantRequest.FromString(body), timeout=0.0001)
            except grpc.RpcError as e:
                self.assertEqual(e.code(), StatusCode.DEADLINE_EXCEEDED)
        # A control call with a sane deadline: the counting must see it, so the checks
        # below cannot pass on a server that counts nothing.
        stub.ValidateVariant(pb.ValidateVariantRequest.FromString(body), timeout=5)
        got = self.settled_codes(m0, 41)
        self.assertGreaterEqual(got.get('OK', 0), 1, 'the control call was not counted: %r' % got)
        self.assertLessEqual(sum(got.values()), 41, got)
        self.assertEqual(set(got) - {'OK', 'DEADLINE_EXCEEDED', 'CANCELLED'}, set(), got)
        self.assertEqual(self.n_rejected(), rej0, 'an expired call logged as a bad request')

    def test_a_cancel_after_the_whole_request_is_counted_cancelled(self):
        # The request arrived complete (END_STREAM), the server answered, but the reply
        # cannot leave (flow-control window 0) when the client resets the stream: the
        # client never got an answer, so the call is CANCELLED, not OK.
        m0, rej0 = ru.metrics(self.srv), self.n_rejected()
        body = pb.ValidateVariantRequest(organization_id=E.ORG_A,
                                         variant_id=E.V_A11).SerializeToString()
        raw = ru.RawH2(self.srv.port, settings={4: 0})
        self.addCleanup(raw.close)
        raw.settings_ack()
        n = 10
        sids = [raw.call('/catalog.CatalogService/ValidateVariant', body) for _ in range(n)]
        time.sleep(0.5)   # the server handles them; the replies wait for window
        for sid in sids:
            self.rst(raw, sid)
        got = eventually(lambda: (lambda c: c if sum(c.values()) >= n else None)(
            self.vv_codes(m0)), 10, '%d cancelled calls counted' % n)
        self.assertEqual(got, {'CANCELLED': n})
        self.assertEqual(self.n_rejected(), rej0)
        self.assertTrue(self.srv.alive())

    def test_a_call_without_a_message_is_still_invalid_argument(self):
        # Not a cancellation: the client half-closed without sending its message.
        m0 = ru.metrics(self.srv)
        raw = ru.RawH2(self.srv.port)
        self.addCleanup(raw.close)
        raw.settings_ack()
        path = '/catalog.CatalogService/ValidateVariant'
        raw.send(ru.h2_frame(ru.H2_HEADERS, 0x5, 1, ru.grpc_headers(self.srv.port, path)))
        streams, _ = ru.h2_read_responses(raw, 1, timeout=10)
        self.assertTrue(streams.get(1, {}).get('ended'), streams)

        def counted():
            m = ru.metrics(self.srv)
            return rpc_codes(m, 'INVALID_ARGUMENT') - rpc_codes(m0, 'INVALID_ARGUMENT') == 1
        eventually(counted, 10, 'the call without a message counted as INVALID_ARGUMENT')
        eventually(lambda: any(l.get('msg') == 'request rejected'
                               and l.get('details') == 'request message is missing'
                               for l in self.srv.logs()), 10, 'the rejection logged')



# ---------------------------------------------------------------------------
# #15: the reply budget is not split into per-worker walls
# ---------------------------------------------------------------------------

BIG_ORG = 'org_big'
BIG_P = 'aaaaaaaa-0000-4000-8000-00000000bf01'    # 2,000 variants: ~0.6 MB of details
HUGE_P = 'aaaaaaaa-0000-4000-8000-00000000bf02'   # 4,000 variants: > 1 MiB of details


def big_product_sql(pid, first, n):
    """One product of BIG_ORG with variants first..first+n-1 (each with an image)."""
    return """
INSERT INTO products (id, organization_id, title, sku, status)
  VALUES ('%(p)s', '%(o)s', 'Big', 'B', 'activa');
INSERT INTO variants (id, organization_id, product_id, sku, status, sale_price, warehouse_id)
  SELECT ('dddddddd-0000-4000-8000-' || lpad(to_hex(g), 12, '0'))::uuid, '%(o)s', '%(p)s',
         'SKU-' || g, 'active', 10.5, 'WH-' || g FROM generate_series(%(a)d, %(b)d) g;
INSERT INTO variant_images (id, variant_id, url, alt, position)
  SELECT ('ffffffff-0000-4000-8000-' || lpad(to_hex(g), 12, '0'))::uuid,
         ('dddddddd-0000-4000-8000-' || lpad(to_hex(g), 12, '0'))::uuid,
         'https://img.test/' || repeat('x', 100) || g, 'alt ' || g, 0
  FROM generate_series(%(a)d, %(b)d) g;""" % {'p': pid, 'o': BIG_ORG, 'a': first,
                                               'b': first + n - 1}


def big_ids(first, n):
    return ['dddddddd-0000-4000-8000-%012x' % g for g in range(first, first + n)]


class ReplyBudget(unittest.TestCase):
    """#15: with GRPC_MAX_PENDING_REPLY_MB=1 and 4 workers, a 0.3-0.6 MB reply was refused
    forever ("retry later") on an idle server: each worker had a 256 KiB wall."""

    @classmethod
    def setUpClass(cls):
        pg = shared_pg()
        pg.psql(big_product_sql(BIG_P, 0x100000, 2000) + big_product_sql(HUGE_P, 0x200000, 4000))
        cls.srv = harness.Catalogd({'DATABASE_URL': pg.url(), 'GRPC_MAX_PENDING_REPLY_MB': '1',
                                    'GRPC_MAX_WORKERS': '4'})
        cls.srv.wait_serving(60)

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def test_one_big_reply_on_an_idle_server_is_sent(self):
        stub = self.srv.catalog_stub()

        def idle_call(method, req):
            """A reply's bytes are counted until its call is closed, which the worker may
            learn just after the client's next call arrives: that call can meet the
            previous reply still counted ("retry later"), as the message says. Retried
            twice, 0.1 s apart; a server that never sends the reply still fails."""
            for attempt in range(3):
                try:
                    return method(req, timeout=30)
                except grpc.RpcError as e:
                    if (attempt == 2 or e.code() != grpc.StatusCode.RESOURCE_EXHAUSTED
                            or 'retry later' not in e.details()):
                        raise
                    time.sleep(0.1)
        for _ in range(3):  # any worker may take it: each must send it
            r = idle_call(stub.GetProductDetails, pb.GetProductDetailsRequest(
                organization_id=BIG_ORG, product_id=BIG_P, include_variants=True,
                include_images=True))
            self.assertTrue(r.success)
            self.assertEqual(len(r.product.variants), 2000)
            self.assertGreater(r.ByteSize(), 300 * 1024)   # above 1 MiB / 4 workers
            b = idle_call(stub.GetVariantsBatch, pb.GetVariantsBatchRequest(
                organization_id=BIG_ORG, variant_ids=big_ids(0x100000, 1000)))
            self.assertEqual(len(b.variants), 1000)
            self.assertGreater(b.ByteSize(), 256 * 1024)
        # Concurrent ones, from several connections: all answered (each worker alone).
        chans = [self.srv.new_channel() for _ in range(4)]
        self.addCleanup(lambda: [c.close() for c in chans])
        futs = [harness.pb_grpc.CatalogServiceStub(c).GetVariantsBatch.future(
            pb.GetVariantsBatchRequest(organization_id=BIG_ORG,
                                       variant_ids=big_ids(0x100000, 1000)), timeout=30)
                for c in chans]
        codes = []
        for f in futs:
            try:
                codes.append(len(f.result().variants))
            except grpc.RpcError as e:
                # Several replies at once may truly exceed the 1 MiB: then the message says so.
                self.assertEqual(e.code(), StatusCode.RESOURCE_EXHAUSTED)
                self.assertIn('GRPC_MAX_PENDING_REPLY_MB', e.details())
                codes.append(e.code())
        self.assertIn(1000, codes)

    def test_a_reply_above_the_whole_budget_names_the_limit(self):
        err = harness.rpc_error(self.srv.catalog_stub().GetProductDetails,
                                pb.GetProductDetailsRequest(
                                    organization_id=BIG_ORG, product_id=HUGE_P,
                                    include_variants=True, include_images=True), timeout=30)
        self.assertEqual(err.code(), StatusCode.RESOURCE_EXHAUSTED)
        self.assertIn('GRPC_MAX_PENDING_REPLY_MB', err.details())
        self.assertNotIn('retry later', err.details())  # retrying cannot help



# ---------------------------------------------------------------------------
# #17 (part): a gRPC port conflict says so first, without the core's blob
# ---------------------------------------------------------------------------

class ListenErrors(unittest.TestCase):
    """#17: the first line was a 1.5 kB gRPC core error tree, the clear one came after."""

    def start_on(self, port, env=None):
        srv = harness.Catalogd(dict({'SYNC_MODE': 'demo'}, **(env or {})), start=False)
        srv.port = port
        srv.env['GRPC_PORT'] = str(port)
        self.addCleanup(srv.close)
        srv.start()
        self.assertNotEqual(srv.wait_exit(20), 0)
        errors = [l for l in srv.logs() if l.get('level') == 'error']
        self.assertTrue(errors, srv.raw_stdout()[-2000:])
        return srv, errors

    def test_port_in_use_is_the_first_error(self):
        busy = socket.socket()
        self.addCleanup(busy.close)
        busy.bind(('127.0.0.1', 0))
        busy.listen()
        port = busy.getsockname()[1]
        srv, errors = self.start_on(port)
        first = json.dumps(errors[0])
        self.assertIn('127.0.0.1:%d' % port, first)
        self.assertIn('Address already in use', first)
        self.assertIn('GRPC_PORT', first)
        self.assertLess(len(first), 500, 'the first error line is a blob: %s' % first)
        self.assertNotIn('No address added', srv.raw_stdout() + srv.raw_stderr())

    def test_an_address_not_on_this_host_is_named(self):
        srv, errors = self.start_on(harness.free_port(), {'GRPC_LISTEN_ADDRESS': '192.0.2.1'})
        first = json.dumps(errors[0])
        self.assertIn('192.0.2.1', first)
        self.assertIn('Cannot assign requested address', first)
        self.assertNotIn('Address already in use', srv.raw_stdout())


if __name__ == '__main__':
    harness.require_binary()
    unittest.main()
