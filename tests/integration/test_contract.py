#!/usr/bin/python3
"""Contract tests of catalog.CatalogService (plus health, reflection, unknown methods).

One throwaway PostgreSQL loaded with docs/contract/schema.sql + tests/fixtures/seed.sql and
one catalogd for the whole module (a second catalogd with GRPC_REFLECTION=true for the
reflection tests).  Expected values are those of seed.sql (see expected.py).

Run:  CATALOGD_BIN=build/catalogd /usr/bin/python3 tests/integration/test_contract.py -v
"""

import os
import sys
import time
import unittest
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grpc  # noqa: E402
from google.protobuf import descriptor_pb2, text_format  # noqa: E402

import harness  # noqa: E402
from harness import pb, health_pb2, RPC_TIMEOUT  # noqa: E402
import expected as E  # noqa: E402

PG = None
SRV = None

StatusCode = grpc.StatusCode


def setUpModule():
    global PG, SRV
    harness.require_binary()
    PG = harness.PgCluster()
    PG.load_fixtures()
    SRV = harness.Catalogd({'DATABASE_URL': PG.url(), 'GRPC_REFLECTION': 'false'})
    SRV.wait_serving(30)


def tearDownModule():
    # atexit would clean up as well; doing it here lets us check the exit code.
    problems = []
    if SRV is not None:
        if not SRV.alive():
            problems.append('catalogd died during the tests (exit %s)\n%s'
                            % (SRV.proc.poll(), SRV.tail()))
        else:
            rc = SRV.stop(timeout=20)
            if rc != 0:
                problems.append('catalogd exited with %s after SIGTERM\n%s' % (rc, SRV.tail()))
    if PG is not None:
        PG.close()
    if problems:
        raise AssertionError('\n'.join(problems))


def upper(s):
    return s.upper()


def text(msg):
    return text_format.MessageToString(msg, as_utf8=True)


class Base(unittest.TestCase):
    maxDiff = None

    @property
    def stub(self):
        return SRV.catalog_stub()

    # -- calls returning (response, trailers) --
    def validate(self, org, vid):
        return harness.call_with_trailers(
            self.stub.ValidateVariant, pb.ValidateVariantRequest(organization_id=org,
                                                                 variant_id=vid))

    def details(self, org, pid, images=None, variants=None):
        req = pb.GetProductDetailsRequest(organization_id=org, product_id=pid)
        if images is not None:
            req.include_images = images
        if variants is not None:
            req.include_variants = variants
        return harness.call_with_trailers(self.stub.GetProductDetails, req)

    def batch(self, org, ids):
        return harness.call_with_trailers(
            self.stub.GetVariantsBatch, pb.GetVariantsBatchRequest(organization_id=org,
                                                                   variant_ids=ids))

    def vbatch(self, org, ids):
        return harness.call_with_trailers(
            self.stub.ValidateVariantsBatch,
            pb.ValidateVariantsBatchRequest(organization_id=org, variant_ids=ids))

    # -- assertions --
    def assertSnapshotVersion(self, trailers):
        self.assertIn(harness.SNAPSHOT_VERSION_KEY, trailers,
                      'trailing metadata lacks %s: %r' % (harness.SNAPSHOT_VERSION_KEY, trailers))
        value = trailers[harness.SNAPSHOT_VERSION_KEY]
        self.assertRegex(value, r'^[1-9][0-9]*$', 'snapshot version is not a positive integer')

    def assertNoOrgB(self, msg):
        t = text(msg)
        for marker in E.ORG_B_MARKERS:
            self.assertNotIn(marker, t, 'org_b data (%r) leaked into a response:\n%s'
                             % (marker, t))

    def assertNotFoundValidation(self, resp, sent_id):
        """ValidateVariant of an id that is unknown (to this tenant)."""
        self.assertFalse(resp.exists)
        self.assertFalse(resp.is_active)
        self.assertEqual(resp.message, 'Variant %s not found' % sent_id)
        # Nothing of any entity in a not-found answer.
        for f in ('product_id', 'sku', 'barcode', 'warehouse_id'):
            self.assertEqual(getattr(resp, f), '', f)
        self.assertFalse(resp.track_inventory)
        self.assertEqual((resp.default_min_stock, resp.default_max_stock, resp.price), (0, 0, 0.0))
        # Not specified whether variant_id is empty or the echoed id; never anything else.
        self.assertIn(resp.variant_id, ('', sent_id))

    def assertProductNotFound(self, resp, sent_id):
        self.assertFalse(resp.success)
        self.assertEqual(resp.message, 'Product %s not found' % sent_id)
        self.assertEqual(resp.product.ByteSize(), 0,
                         'a not-found answer carries product data: %s' % text(resp.product))

    def assertStillWorks(self, channel=None):
        stub = SRV.catalog_stub(channel)
        resp = stub.ValidateVariant(pb.ValidateVariantRequest(organization_id=E.ORG_A,
                                                              variant_id=E.V_A11),
                                    timeout=RPC_TIMEOUT)
        self.assertTrue(resp.exists)
        self.assertTrue(resp.is_active)


# ---------------------------------------------------------------------------
class ValidateVariantTest(Base):

    def test_unknown_id_is_not_found_with_status_ok(self):
        resp, trailers = self.validate(E.ORG_A, E.UNKNOWN_1)
        self.assertNotFoundValidation(resp, E.UNKNOWN_1)
        self.assertSnapshotVersion(trailers)

    def check_known(self, org, vid, sent=None):
        sent = sent or vid
        resp, trailers = self.validate(org, sent)
        v = E.variant_fields(vid)
        self.assertTrue(resp.exists)
        self.assertEqual(resp.is_active, E.ACTIVE[vid], 'is_active of %s' % vid)
        # The entity's id (canonical); an echo of the sent id is tolerated for this field.
        self.assertIn(resp.variant_id, (vid, sent))
        self.assertEqual(resp.product_id, v['product_id'])
        self.assertEqual(resp.sku, v['sku'])
        self.assertEqual(resp.barcode, v['barcode'])
        self.assertEqual(resp.warehouse_id, v['warehouse_id'])
        self.assertEqual(resp.track_inventory, v['track_inventory'])
        self.assertEqual(resp.default_min_stock, v['default_min_stock'])
        self.assertEqual(resp.default_max_stock, v['default_max_stock'])
        self.assertEqual(resp.price, v['sale_price'])
        self.assertEqual(resp.message, 'Variant validated successfully')
        self.assertSnapshotVersion(trailers)
        return resp

    def test_active_variant_of_active_product(self):
        resp = self.check_known(E.ORG_A, E.V_A11)
        self.assertTrue(resp.is_active)
        self.assertEqual(resp.price, 29.99)

    def test_inactive_variant_is_not_active(self):
        self.assertFalse(self.check_known(E.ORG_A, E.V_A12).is_active)

    def test_null_columns_come_back_empty(self):
        resp = self.check_known(E.ORG_A, E.V_A13)
        self.assertEqual(resp.barcode, '')
        self.assertEqual(resp.price, 1234.56)

    def test_active_variant_of_inactive_product_is_not_active(self):
        self.assertFalse(self.check_known(E.ORG_A, E.V_A21).is_active)

    def test_active_variant_of_draft_product_is_not_active(self):
        self.assertFalse(self.check_known(E.ORG_A, E.V_A31).is_active)

    def test_other_tenant_sees_its_own_variant(self):
        self.assertTrue(self.check_known(E.ORG_B, E.V_B11).is_active)

    def test_upper_case_id_matches(self):
        for vid in E.ORG_A_VARIANTS:
            with self.subTest(vid=vid):
                self.check_known(E.ORG_A, vid, sent=upper(vid))

    def test_mixed_case_id_matches(self):
        sent = 'DDDDdddd-0000-0000-0000-000000000A11'
        self.check_known(E.ORG_A, E.V_A11, sent=sent)

    def test_unknown_upper_case_id_is_echoed_as_sent(self):
        sent = upper(E.UNKNOWN_2)
        resp, _ = self.validate(E.ORG_A, sent)
        self.assertNotFoundValidation(resp, sent)


# ---------------------------------------------------------------------------
class GetProductDetailsTest(Base):

    def check_product(self, org, pid, images, variants, sent=None):
        resp, trailers = self.details(org, sent or pid, images=images, variants=variants)
        self.assertTrue(resp.success, resp.message)
        self.assertTrue(resp.HasField('product'))
        want = E.product(pid, include_images=bool(images), include_variants=bool(variants))
        self.assertEqual(text(want), text(E.normalize_product(resp.product)))
        self.assertSnapshotVersion(trailers)
        return resp.product

    def test_unknown_product(self):
        resp, trailers = self.details(E.ORG_A, E.UNKNOWN_1, images=True, variants=True)
        self.assertProductNotFound(resp, E.UNKNOWN_1)
        self.assertSnapshotVersion(trailers)

    def test_unknown_product_upper_case_is_echoed_as_sent(self):
        sent = upper(E.UNKNOWN_2)
        resp, _ = self.details(E.ORG_A, sent, images=True, variants=True)
        self.assertProductNotFound(resp, sent)

    def test_every_product_with_every_flag_combination(self):
        cases = [(E.ORG_A, p) for p in E.ORG_A_PRODUCTS] + [(E.ORG_B, E.P_B1)]
        for org, pid in cases:
            for images in (False, True):
                for variants in (False, True):
                    with self.subTest(pid=pid, include_images=images, include_variants=variants):
                        self.check_product(org, pid, images, variants)

    def test_unset_flags_mean_false(self):
        resp, _ = self.details(E.ORG_A, E.P_A1)  # include_* not set on the wire
        self.assertTrue(resp.success)
        self.assertEqual(len(resp.product.images), 0, 'images without include_images')
        self.assertEqual(len(resp.product.variants), 0, 'variants without include_variants')
        # tags and collections are always there
        self.assertEqual(len(resp.product.tags), 2)
        self.assertEqual(len(resp.product.collections), 2)
        self.assertEqual(text(E.product(E.P_A1, False, False)),
                         text(E.normalize_product(resp.product)))

    def test_product_without_brand_has_no_brand_field(self):
        p = self.check_product(E.ORG_A, E.P_A2, True, True)
        self.assertFalse(p.HasField('brand'))

    def test_product_with_brand(self):
        p = self.check_product(E.ORG_A, E.P_A1, False, False)
        self.assertTrue(p.HasField('brand'))
        self.assertEqual(p.brand.name, 'Acme')

    def test_brand_null_description_is_empty(self):
        p = self.check_product(E.ORG_A, E.P_A3, False, False)
        self.assertTrue(p.HasField('brand'))
        self.assertEqual(p.brand.description, '')

    def test_images_sorted_by_position(self):
        p = self.check_product(E.ORG_A, E.P_A1, True, False)
        self.assertEqual([i.position for i in p.images], [1, 2, 10])

    def test_variant_images_sorted_by_position(self):
        p = self.check_product(E.ORG_A, E.P_A1, False, True)
        v = {x.variant_id: x for x in p.variants}
        self.assertEqual([i.position for i in v[E.V_A11].images], [0, 3, 11])
        self.assertEqual([i.image_id for i in v[E.V_A11].images],
                         [i.image_id for i in E.VARIANT_IMAGES[E.V_A11]])

    def test_variants_have_dimensions(self):
        p = self.check_product(E.ORG_A, E.P_A1, False, True)
        v = {x.variant_id: x for x in p.variants}
        self.assertTrue(v[E.V_A11].HasField('dimensions'))
        self.assertEqual((v[E.V_A11].dimensions.length, v[E.V_A11].dimensions.width,
                          v[E.V_A11].dimensions.height), (30.50, 8.25, 22.00))
        self.assertEqual((v[E.V_A13].dimensions.length, v[E.V_A13].dimensions.width,
                          v[E.V_A13].dimensions.height), (12.0, 0.0, 0.0))

    def test_no_duplicates_in_lists(self):
        p = self.check_product(E.ORG_A, E.P_A1, True, True)
        for name, ids in (('images', [i.image_id for i in p.images]),
                          ('variants', [v.variant_id for v in p.variants]),
                          ('tags', [t.tag_id for t in p.tags]),
                          ('collections', [c.collection_id for c in p.collections])):
            self.assertEqual(len(ids), len(set(ids)), name)

    def test_upper_case_id_matches(self):
        # product_id in the Product is the entity's id (canonical), not an echo.
        for pid in E.ORG_A_PRODUCTS:
            with self.subTest(pid=pid):
                self.check_product(E.ORG_A, pid, True, True, sent=upper(pid))


# ---------------------------------------------------------------------------
class GetVariantsBatchTest(Base):

    def check_variants(self, resp, vids):
        """Found variants, exactly, in this order (images compared in their own test)."""
        got = [E.normalize_variant(v) for v in resp.variants]
        for v in got:
            del v.images[:]
        want = [E.variant(v, with_images=False) for v in vids]
        self.assertEqual([text(w) for w in want], [text(g) for g in got])

    def test_request_order_dedup_not_found(self):
        ids = [E.V_A13, E.UNKNOWN_1, E.V_A11, E.V_A12, E.V_A11, E.UNKNOWN_2, E.V_A21]
        resp, trailers = self.batch(E.ORG_A, ids)
        self.assertTrue(resp.success)
        self.check_variants(resp, [E.V_A13, E.V_A11, E.V_A12, E.V_A21])
        self.assertEqual(list(resp.not_found_ids), [E.UNKNOWN_1, E.UNKNOWN_2])
        self.assertEqual(resp.message, 'Retrieved 4 of 7 variants')
        self.assertSnapshotVersion(trailers)

    def test_reverse_order(self):
        ids = [E.V_A31, E.V_A21, E.V_A13, E.V_A12, E.V_A11]
        resp, _ = self.batch(E.ORG_A, ids)
        self.check_variants(resp, ids)
        self.assertEqual(list(resp.not_found_ids), [])
        self.assertEqual(resp.message, 'Retrieved 5 of 5 variants')

    def test_inactive_variants_are_found(self):
        # Found = exists in the tenant's catalog, whatever the status.
        resp, _ = self.batch(E.ORG_A, [E.V_A12, E.V_A21, E.V_A31])
        self.check_variants(resp, [E.V_A12, E.V_A21, E.V_A31])
        self.assertEqual(resp.message, 'Retrieved 3 of 3 variants')

    def test_upper_case_ids_match_and_not_found_ids_are_echoed(self):
        sent = [upper(E.V_A11), upper(E.UNKNOWN_1), E.V_A12, 'DeadBeef-0000-4000-8000-0000000000Ee']
        resp, _ = self.batch(E.ORG_A, sent)
        self.assertTrue(resp.success)
        self.check_variants(resp, [E.V_A11, E.V_A12])
        self.assertEqual(list(resp.not_found_ids),
                         [upper(E.UNKNOWN_1), 'DeadBeef-0000-4000-8000-0000000000Ee'])
        self.assertEqual(resp.message, 'Retrieved 2 of 4 variants')

    def test_same_variant_in_two_cases_is_returned_once(self):
        resp, _ = self.batch(E.ORG_A, [E.V_A11, upper(E.V_A11)])
        self.check_variants(resp, [E.V_A11])
        self.assertEqual(list(resp.not_found_ids), [])
        self.assertEqual(resp.message, 'Retrieved 1 of 2 variants')

    def test_nothing_found(self):
        resp, trailers = self.batch(E.ORG_A, [E.UNKNOWN_2, E.UNKNOWN_1])
        self.assertTrue(resp.success)
        self.assertEqual(len(resp.variants), 0)
        self.assertEqual(list(resp.not_found_ids), [E.UNKNOWN_2, E.UNKNOWN_1])
        self.assertEqual(resp.message, 'Retrieved 0 of 2 variants')
        self.assertSnapshotVersion(trailers)

    def test_other_tenant_batch(self):
        resp, _ = self.batch(E.ORG_B, [E.V_B11])
        self.check_variants(resp, [E.V_B11])
        self.assertEqual(resp.message, 'Retrieved 1 of 1 variants')

    def test_variant_images_sorted_by_position(self):
        # The Variant message carries its images; sorted by position as in GetProductDetails.
        resp, _ = self.batch(E.ORG_A, [E.V_A11, E.V_A13, E.V_A12])
        got = {v.variant_id: [text(i) for i in v.images] for v in resp.variants}
        for vid in (E.V_A11, E.V_A13, E.V_A12):
            self.assertEqual(got[vid], [text(i) for i in E.VARIANT_IMAGES[vid]], vid)

    def test_exactly_max_batch_is_accepted(self):
        ids = [E.V_A11] + [str(uuid.uuid4()) for _ in range(999)]
        resp, trailers = self.batch(E.ORG_A, ids)
        self.assertTrue(resp.success)
        self.check_variants(resp, [E.V_A11])
        self.assertEqual(list(resp.not_found_ids), ids[1:])
        self.assertEqual(resp.message, 'Retrieved 1 of 1000 variants')
        self.assertSnapshotVersion(trailers)


# ---------------------------------------------------------------------------
class ValidateVariantsBatchTest(Base):

    def expected_validation(self, sent, vid=None, org=E.ORG_A):
        """vid: the variant the sent id names in org (None: not found)."""
        if vid is None:
            return pb.VariantValidation(variant_id=sent, exists=False, is_active=False)
        v = E.variant_fields(vid)
        return pb.VariantValidation(
            variant_id=sent, exists=True, is_active=E.ACTIVE[vid], sku=v['sku'],
            barcode=v['barcode'], warehouse_id=v['warehouse_id'],
            track_inventory=v['track_inventory'], default_min_stock=v['default_min_stock'],
            default_max_stock=v['default_max_stock'])

    def test_order_repeats_echo_and_fields(self):
        sent = [upper(E.V_A11), E.V_A21, E.UNKNOWN_1, upper(E.V_A11), E.V_A12, E.V_B11,
                E.V_A13, E.V_A31, E.V_A11]
        names = [E.V_A11, E.V_A21, None, E.V_A11, E.V_A12, None, E.V_A13, E.V_A31, E.V_A11]
        resp, trailers = self.vbatch(E.ORG_A, sent)
        self.assertTrue(resp.success)
        want = [text(self.expected_validation(s, n)) for s, n in zip(sent, names)]
        self.assertEqual(want, [text(v) for v in resp.validations])
        self.assertEqual(resp.message, 'Validated 9 variants')
        self.assertSnapshotVersion(trailers)

    def test_active_flags(self):
        ids = E.ORG_A_VARIANTS
        resp, _ = self.vbatch(E.ORG_A, ids)
        self.assertEqual([v.is_active for v in resp.validations],
                         [E.ACTIVE[v] for v in ids])
        self.assertEqual([v.exists for v in resp.validations], [True] * len(ids))
        self.assertEqual(resp.message, 'Validated 5 variants')

    def test_other_tenant(self):
        resp, _ = self.vbatch(E.ORG_B, [E.V_B11, E.V_A11])
        want = [text(self.expected_validation(E.V_B11, E.V_B11)),
                text(self.expected_validation(E.V_A11, None))]
        self.assertEqual(want, [text(v) for v in resp.validations])
        self.assertEqual(resp.message, 'Validated 2 variants')

    def test_exactly_max_batch_is_accepted(self):
        ids = [str(uuid.uuid4()) for _ in range(999)] + [upper(E.V_A11)]
        resp, trailers = self.vbatch(E.ORG_A, ids)
        self.assertTrue(resp.success)
        self.assertEqual(len(resp.validations), 1000)
        self.assertEqual([v.variant_id for v in resp.validations], ids)
        self.assertEqual([v.exists for v in resp.validations], [False] * 999 + [True])
        self.assertTrue(resp.validations[-1].is_active)
        self.assertEqual(resp.message, 'Validated 1000 variants')
        self.assertSnapshotVersion(trailers)


# ---------------------------------------------------------------------------
class SnapshotVersionTest(Base):

    def test_every_method_carries_the_trailer(self):
        calls = [
            ('ValidateVariant found', lambda: self.validate(E.ORG_A, E.V_A11)),
            ('ValidateVariant not found', lambda: self.validate(E.ORG_A, E.UNKNOWN_1)),
            ('GetProductDetails found', lambda: self.details(E.ORG_A, E.P_A1, True, True)),
            ('GetProductDetails not found', lambda: self.details(E.ORG_A, E.UNKNOWN_1)),
            ('GetVariantsBatch', lambda: self.batch(E.ORG_A, [E.V_A11, E.UNKNOWN_1])),
            ('ValidateVariantsBatch', lambda: self.vbatch(E.ORG_A, [E.V_A11, E.UNKNOWN_1])),
        ]
        versions = set()
        for name, fn in calls:
            with self.subTest(call=name):
                _, trailers = fn()
                self.assertSnapshotVersion(trailers)
                versions.add(trailers[harness.SNAPSHOT_VERSION_KEY])
        # Nothing changes the catalog during this test: one snapshot.
        self.assertEqual(len(versions), 1, versions)


# ---------------------------------------------------------------------------
class TenancyTest(Base):

    def test_other_tenants_variant_is_not_found(self):
        for org, vid in ((E.ORG_A, E.V_B11), (E.ORG_B, E.V_A11), (E.ORG_B, E.V_A21)):
            with self.subTest(org=org, vid=vid):
                resp, _ = self.validate(org, vid)
                self.assertNotFoundValidation(resp, vid)
                resp, _ = self.batch(org, [vid])
                self.assertEqual(len(resp.variants), 0)
                self.assertEqual(list(resp.not_found_ids), [vid])
                self.assertEqual(resp.message, 'Retrieved 0 of 1 variants')
                resp, _ = self.vbatch(org, [vid])
                self.assertEqual(text(resp.validations[0]),
                                 text(pb.VariantValidation(variant_id=vid)))

    def test_other_tenants_product_is_not_found(self):
        for org, pid in ((E.ORG_A, E.P_B1), (E.ORG_B, E.P_A1), (E.ORG_B, E.P_A2)):
            with self.subTest(org=org, pid=pid):
                resp, _ = self.details(org, pid, images=True, variants=True)
                self.assertProductNotFound(resp, pid)

    def test_org_id_is_case_sensitive(self):
        # ORG_A differs from org_a only by case and holds nothing.
        for vid in E.ORG_A_VARIANTS:
            with self.subTest(vid=vid):
                resp, _ = self.validate(E.ORG_A_UPPER, vid)
                self.assertNotFoundValidation(resp, vid)
        for pid in E.ORG_A_PRODUCTS:
            with self.subTest(pid=pid):
                resp, _ = self.details(E.ORG_A_UPPER, pid, images=True, variants=True)
                self.assertProductNotFound(resp, pid)
        resp, _ = self.batch(E.ORG_A_UPPER, E.ORG_A_VARIANTS)
        self.assertEqual(len(resp.variants), 0)
        self.assertEqual(list(resp.not_found_ids), E.ORG_A_VARIANTS)
        self.assertEqual(resp.message, 'Retrieved 0 of 5 variants')
        resp, _ = self.vbatch(E.ORG_A_UPPER, E.ORG_A_VARIANTS)
        self.assertEqual([v.exists for v in resp.validations], [False] * 5)
        self.assertEqual([text(v) for v in resp.validations],
                         [text(pb.VariantValidation(variant_id=v)) for v in E.ORG_A_VARIANTS])
        self.assertEqual(resp.message, 'Validated 5 variants')

    def test_org_id_with_nul_byte_is_another_org(self):
        # 'org_a\0evil' is not org_a: it must see nothing of org_a (rejecting the
        # request as INVALID_ARGUMENT is fine too). A C server that reads the proto
        # string up to the first NUL would answer as org_a.
        for org in ('org_a\x00', 'org_a\x00evil'):
            calls = [
                ('ValidateVariant', self.stub.ValidateVariant,
                 pb.ValidateVariantRequest(organization_id=org, variant_id=E.V_A11),
                 lambda r: not r.exists and r.sku == ''),
                ('GetProductDetails', self.stub.GetProductDetails,
                 pb.GetProductDetailsRequest(organization_id=org, product_id=E.P_A1,
                                             include_images=True, include_variants=True),
                 lambda r: not r.success and r.product.ByteSize() == 0),
                ('GetVariantsBatch', self.stub.GetVariantsBatch,
                 pb.GetVariantsBatchRequest(organization_id=org, variant_ids=[E.V_A11]),
                 lambda r: len(r.variants) == 0 and list(r.not_found_ids) == [E.V_A11]),
                ('ValidateVariantsBatch', self.stub.ValidateVariantsBatch,
                 pb.ValidateVariantsBatchRequest(organization_id=org, variant_ids=[E.V_A11]),
                 lambda r: [v.exists for v in r.validations] == [False]),
            ]
            for name, method, req, nothing_seen in calls:
                with self.subTest(org=org, method=name):
                    try:
                        resp = method(req, timeout=RPC_TIMEOUT)
                    except grpc.RpcError as e:
                        self.assertEqual(e.code(), StatusCode.INVALID_ARGUMENT, e.details())
                        continue
                    self.assertTrue(nothing_seen(resp),
                                    'organization %r sees org_a data:\n%s' % (org, text(resp)))

    def test_no_org_b_data_in_org_a_responses(self):
        # Only org_a ids are sent: answers echo sent ids, and the markers include org_b's
        # ids (org_b ids sent to org_a are covered by the not-found tests above).
        responses = []
        for vid in E.ORG_A_VARIANTS:
            responses.append(self.validate(E.ORG_A, vid)[0])
        for pid in E.ORG_A_PRODUCTS:
            responses.append(self.details(E.ORG_A, pid, images=True, variants=True)[0])
        responses.append(self.batch(E.ORG_A, E.ORG_A_VARIANTS)[0])
        responses.append(self.vbatch(E.ORG_A, E.ORG_A_VARIANTS)[0])
        for r in responses:
            self.assertNoOrgB(r)
        # Positive control: the markers do find org_b data in org_b's own answer.
        r = self.details(E.ORG_B, E.P_B1, images=True, variants=True)[0]
        self.assertIn('BOREAL', text(r))


# ---------------------------------------------------------------------------
class BadInputTest(Base):

    @classmethod
    def setUpClass(cls):
        cls.abuse_channel = SRV.new_channel()

    @classmethod
    def tearDownClass(cls):
        cls.abuse_channel.close()

    def abuse_stub(self):
        return SRV.catalog_stub(self.abuse_channel)

    def assertInvalid(self, method, request, field, code=StatusCode.INVALID_ARGUMENT):
        err = harness.rpc_error(method, request)
        self.assertEqual(err.code(), code, 'details: %r' % err.details())
        if field:
            self.assertIn(field, err.details() or '',
                          'the error does not name the field %r' % field)
        return err

    def tearDown(self):
        # After every kind of abuse a normal call still works, on both channels.
        self.assertStillWorks(self.abuse_channel)
        self.assertStillWorks()

    def test_empty_organization_id(self):
        s = self.abuse_stub()
        cases = [
            (s.ValidateVariant, pb.ValidateVariantRequest(variant_id=E.V_A11)),
            (s.GetProductDetails, pb.GetProductDetailsRequest(product_id=E.P_A1)),
            (s.GetVariantsBatch, pb.GetVariantsBatchRequest(variant_ids=[E.V_A11])),
            (s.ValidateVariantsBatch, pb.ValidateVariantsBatchRequest(variant_ids=[E.V_A11])),
        ]
        for method, req in cases:
            with self.subTest(method=type(req).__name__):
                self.assertInvalid(method, req, 'organization_id')

    def test_empty_id(self):
        s = self.abuse_stub()
        self.assertInvalid(s.ValidateVariant,
                           pb.ValidateVariantRequest(organization_id=E.ORG_A), 'variant_id')
        self.assertInvalid(s.GetProductDetails,
                           pb.GetProductDetailsRequest(organization_id=E.ORG_A), 'product_id')
        self.assertInvalid(s.GetVariantsBatch,
                           pb.GetVariantsBatchRequest(organization_id=E.ORG_A,
                                                      variant_ids=[E.V_A11, '']),
                           'variant_ids')
        self.assertInvalid(s.ValidateVariantsBatch,
                           pb.ValidateVariantsBatchRequest(organization_id=E.ORG_A,
                                                           variant_ids=['', E.V_A11]),
                           'variant_ids')

    NOT_UUIDS = ['not-a-uuid', '12345', 'dddddddd-0000-0000-0000-000000000a1',
                 'gggggggg-0000-0000-0000-000000000000', E.V_A11 + '0',
                 "' OR 1=1 --",
                 # A valid uuid followed by a NUL byte and more: still not a uuid (proto3
                 # strings may contain U+0000; a C server must not stop reading at it).
                 E.V_A11 + '\x00', E.V_A11 + '\x00junk']

    def test_id_not_a_uuid(self):
        s = self.abuse_stub()
        for bad in self.NOT_UUIDS:
            cases = [
                (s.ValidateVariant,
                 pb.ValidateVariantRequest(organization_id=E.ORG_A, variant_id=bad),
                 'variant_id'),
                (s.GetProductDetails,
                 pb.GetProductDetailsRequest(organization_id=E.ORG_A, product_id=bad),
                 'product_id'),
                (s.GetVariantsBatch,
                 pb.GetVariantsBatchRequest(organization_id=E.ORG_A, variant_ids=[E.V_A11, bad]),
                 'variant_ids'),
                (s.ValidateVariantsBatch,
                 pb.ValidateVariantsBatchRequest(organization_id=E.ORG_A, variant_ids=[bad]),
                 'variant_ids'),
            ]
            for method, req, field in cases:
                with self.subTest(id=bad, request=type(req).__name__):
                    self.assertInvalid(method, req, field)

    def test_batch_over_limit(self):
        s = self.abuse_stub()
        ids = [str(uuid.uuid4()) for _ in range(1001)]
        self.assertInvalid(s.GetVariantsBatch,
                           pb.GetVariantsBatchRequest(organization_id=E.ORG_A, variant_ids=ids),
                           'variant_ids')
        self.assertInvalid(s.ValidateVariantsBatch,
                           pb.ValidateVariantsBatchRequest(organization_id=E.ORG_A,
                                                           variant_ids=ids),
                           'variant_ids')

    def test_undecodable_message(self):
        for method in ('ValidateVariant', 'GetProductDetails', 'GetVariantsBatch',
                       'ValidateVariantsBatch'):
            with self.subTest(method=method):
                call = harness.raw_unary(self.abuse_channel, '/catalog.CatalogService/' + method)
                err = harness.rpc_error(call, b'\xff\xff\xff')
                self.assertEqual(err.code(), StatusCode.INVALID_ARGUMENT,
                                 'details: %r' % err.details())

    def test_oversized_message(self):
        s = self.abuse_stub()
        huge = 'a' * (5 * 1024 * 1024)
        err = harness.rpc_error(s.GetVariantsBatch,
                                pb.GetVariantsBatchRequest(organization_id=E.ORG_A,
                                                           variant_ids=[huge]))
        self.assertEqual(err.code(), StatusCode.RESOURCE_EXHAUSTED, 'details: %r' % err.details())


# ---------------------------------------------------------------------------
class UnknownMethodTest(Base):

    def test_unknown_methods_are_unimplemented_promptly(self):
        for path in ('/catalog.CatalogService/Nope', '/other.Svc/X'):
            with self.subTest(path=path):
                t0 = time.monotonic()
                err = harness.rpc_error(harness.raw_unary(SRV.channel(), path), b'',
                                        timeout=5)
                self.assertEqual(err.code(), StatusCode.UNIMPLEMENTED,
                                 'details: %r' % err.details())
                self.assertLess(time.monotonic() - t0, 4.5)
        self.assertStillWorks()


# ---------------------------------------------------------------------------
class HealthTest(Base):

    def test_check_serving(self):
        for service in ('', 'catalog.CatalogService'):
            with self.subTest(service=service):
                self.assertEqual(SRV.health_check(service), harness.SERVING)

    def test_check_unknown_service_is_not_found(self):
        err = harness.rpc_error(SRV.health_stub().Check,
                                health_pb2.HealthCheckRequest(service='no.such.Service'))
        self.assertEqual(err.code(), StatusCode.NOT_FOUND)

    def _first_watch_status(self, service):
        stream = SRV.health_stub().Watch(health_pb2.HealthCheckRequest(service=service),
                                         timeout=RPC_TIMEOUT)
        try:
            return next(stream).status
        finally:
            stream.cancel()

    def test_watch_sends_serving_first(self):
        self.assertEqual(self._first_watch_status(''), harness.SERVING)
        self.assertEqual(self._first_watch_status('catalog.CatalogService'), harness.SERVING)

    def test_watch_unknown_service_sends_service_unknown(self):
        # Standard grpc.health.v1 semantics: Watch does not fail, it reports SERVICE_UNKNOWN.
        self.assertEqual(self._first_watch_status('no.such.Service'), harness.SERVICE_UNKNOWN)


# ---------------------------------------------------------------------------
class LogFormatTest(Base):

    def test_stdout_is_json_lines(self):
        self.assertTrue(SRV.logs(), 'catalogd logged nothing on stdout')
        self.assertEqual(SRV.bad_log_lines()[:5], [], 'stdout lines that are not JSON objects')


# ---------------------------------------------------------------------------
def reflect(channel, version, requests, timeout=RPC_TIMEOUT):
    """Send reflection requests on one stream; return the responses."""
    rpb, rgrpc = harness.reflection_modules(version)
    stub = rgrpc.ServerReflectionStub(channel)
    responses = stub.ServerReflectionInfo(iter(requests), timeout=timeout)
    return list(responses)


class ReflectionDisabledTest(Base):

    def test_reflection_is_unimplemented_when_disabled(self):
        if harness.refl_v1_pb2 is None:
            self.skipTest('reflection protos not found')
        for version in ('v1', 'v1alpha'):
            with self.subTest(version=version):
                rpb, _ = harness.reflection_modules(version)
                with self.assertRaises(grpc.RpcError) as cm:
                    reflect(SRV.channel(), version,
                            [rpb.ServerReflectionRequest(list_services='')])
                self.assertEqual(cm.exception.code(), StatusCode.UNIMPLEMENTED)


class ReflectionTest(unittest.TestCase):
    srv = None

    @classmethod
    def setUpClass(cls):
        if harness.refl_v1_pb2 is None:
            raise unittest.SkipTest('reflection protos not found')
        cls.srv = harness.Catalogd({'DATABASE_URL': PG.url(), 'GRPC_REFLECTION': 'true'})
        cls.srv.wait_serving(30)

    @classmethod
    def tearDownClass(cls):
        if cls.srv is not None:
            rc = cls.srv.stop(timeout=20)
            cls.srv.close()
            if rc != 0:
                raise AssertionError('reflection catalogd exited with %s' % rc)

    def check_version(self, version):
        rpb, _ = harness.reflection_modules(version)
        reqs = [rpb.ServerReflectionRequest(list_services=''),
                rpb.ServerReflectionRequest(file_containing_symbol='catalog.CatalogService'),
                rpb.ServerReflectionRequest(file_containing_symbol='no.such.Symbol'),
                # a message type, as `grpcurl describe catalog.Product` asks
                rpb.ServerReflectionRequest(file_containing_symbol='catalog.Product')]
        res = reflect(self.srv.channel(), version, reqs)
        self.assertEqual(len(res), 4)

        # list_services
        self.assertEqual(res[0].WhichOneof('message_response'), 'list_services_response',
                         str(res[0]))
        names = [s.name for s in res[0].list_services_response.service]
        self.assertIn('catalog.CatalogService', names)
        self.assertIn('grpc.health.v1.Health', names)

        # file_containing_symbol
        self.assertEqual(res[1].WhichOneof('message_response'), 'file_descriptor_response',
                         str(res[1]))
        blobs = res[1].file_descriptor_response.file_descriptor_proto
        self.assertGreaterEqual(len(blobs), 1)
        fdp = descriptor_pb2.FileDescriptorProto()
        fdp.ParseFromString(blobs[0])
        self.assertEqual(fdp.name, 'catalog.proto')
        self.assertEqual(fdp.package, 'catalog')
        services = {s.name: [m.name for m in s.method] for s in fdp.service}
        self.assertEqual(services.get('CatalogService'),
                         ['ValidateVariant', 'GetProductDetails', 'GetVariantsBatch',
                          'ValidateVariantsBatch'])

        # unknown symbol
        self.assertEqual(res[2].WhichOneof('message_response'), 'error_response', str(res[2]))
        self.assertEqual(res[2].error_response.error_code, 5)  # NOT_FOUND

        # message symbol
        self.assertEqual(res[3].WhichOneof('message_response'), 'file_descriptor_response',
                         str(res[3]))
        fdp = descriptor_pb2.FileDescriptorProto()
        fdp.ParseFromString(res[3].file_descriptor_response.file_descriptor_proto[0])
        self.assertEqual(fdp.name, 'catalog.proto')

    def test_v1(self):
        self.check_version('v1')

    def test_v1alpha(self):
        self.check_version('v1alpha')

    def test_catalog_still_served(self):
        stub = self.srv.catalog_stub()
        resp = stub.ValidateVariant(pb.ValidateVariantRequest(organization_id=E.ORG_A,
                                                              variant_id=E.V_A11),
                                    timeout=RPC_TIMEOUT)
        self.assertTrue(resp.is_active)


class MaxBatchIdsSettingTest(unittest.TestCase):
    """MAX_BATCH_IDS (default 1000, tested above) is configurable."""
    srv = None

    @classmethod
    def setUpClass(cls):
        cls.srv = harness.Catalogd({'DATABASE_URL': PG.url(), 'MAX_BATCH_IDS': '3'})
        cls.srv.wait_serving(30)

    @classmethod
    def tearDownClass(cls):
        if cls.srv is not None:
            rc = cls.srv.stop(timeout=20)
            cls.srv.close()
            if rc != 0:
                raise AssertionError('MAX_BATCH_IDS catalogd exited with %s' % rc)

    def test_limit_applies(self):
        stub = self.srv.catalog_stub()
        three = [E.V_A11, E.V_A12, E.UNKNOWN_1]
        resp = stub.GetVariantsBatch(pb.GetVariantsBatchRequest(organization_id=E.ORG_A,
                                                                variant_ids=three),
                                     timeout=RPC_TIMEOUT)
        self.assertEqual(resp.message, 'Retrieved 2 of 3 variants')
        resp = stub.ValidateVariantsBatch(pb.ValidateVariantsBatchRequest(
            organization_id=E.ORG_A, variant_ids=three), timeout=RPC_TIMEOUT)
        self.assertEqual(resp.message, 'Validated 3 variants')
        four = three + [E.V_A13]
        for method, req in ((stub.GetVariantsBatch,
                             pb.GetVariantsBatchRequest(organization_id=E.ORG_A,
                                                        variant_ids=four)),
                            (stub.ValidateVariantsBatch,
                             pb.ValidateVariantsBatchRequest(organization_id=E.ORG_A,
                                                             variant_ids=four))):
            with self.subTest(request=type(req).__name__):
                err = harness.rpc_error(method, req)
                self.assertEqual(err.code(), StatusCode.INVALID_ARGUMENT)
                self.assertIn('variant_ids', err.details() or '')


if __name__ == '__main__':
    unittest.main()
