#!/usr/bin/env python3
"""Writes the hand-made seed corpora of the fuzz targets (tests/fuzz/corpus/).

Deterministic and dependency-free (protobuf requests are encoded by hand), so
the corpus can be regenerated and reviewed:  python3 tests/fuzz/gen_corpus.py
Input formats are described at the top of each fuzz_*.c file. Ids follow
tests/fixtures/seed.sql and the snapshots the harnesses build.
"""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus")


def uid(prefix, suffix):
    return "%s-0000-0000-0000-%012x" % (prefix, int(suffix, 16))


def write(target, name, data):
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


# ---------------------------------------------------------------- events
def event(etype, org, eid, version, data, mode="V", key=None, ascii=False, extra=None):
    kind = etype.split(".")[0]
    key = key if key is not None else "%s/%s/%s" % (org, kind, eid)
    env = {"event_id": "%s-%s-%s" % (kind, eid, version), "event_type": etype,
           "organization_id": org, "entity_id": eid, "version": version,
           "occurred_at": "2026-01-01T00:00:00Z", "data": data}
    env.update(extra or {})
    return mode + key + "\n" + json.dumps(env, separators=(",", ":"), ensure_ascii=ascii)


def gen_events():
    t = "fuzz_event_decode"
    a11, a1 = uid("dddddddd", "a11"), uid("aaaaaaaa", "a1")
    variant = {"id": a11, "organization_id": "org_a", "product_id": a1, "sku": "TAL-750-AZ",
               "barcode": "7790000000028", "status": "active", "sale_price": 29.99,
               "cost_price": "18.50", "tax": 21, "weight": 2.35, "dim_length": 30.5,
               "dim_width": 8.25, "dim_height": None, "lot_number": "L-2024-01",
               "stock_total": 100, "stock_available": "80", "stock_reserved": 20,
               "warehouse_id": "WH-CENTRAL", "vendor": "Acme SA", "track_inventory": True,
               "default_min_stock": 10, "default_max_stock": 200,
               "images": [{"id": uid("ffffffff", "a1103"), "url": "https://img/c.jpg",
                           "alt": "En su caja", "position": 11},
                          {"id": uid("ffffffff", "a1101"), "url": "https://img/a.jpg",
                           "alt": None, "position": 3}]}
    write(t, "variant_upsert", event("variant.upserted", "org_a", a11, 6, variant))
    minimal = {"product_id": a1, "sku": "S", "status": "inactive", "sale_price": "5",
               "warehouse_id": "WH"}
    write(t, "variant_upsert_minimal_stale",
          event("variant.upserted", "org_a", uid("dddddddd", "a12"), 1, minimal))
    moved = dict(minimal, product_id=uid("aaaaaaaa", "a2"), status="active")
    write(t, "variant_upsert_moves_product",
          event("variant.upserted", "org_a", uid("dddddddd", "a12"), "2", moved))
    # The scanner's paths (sync/codec/json_scan.c): \u escapes (ensure_ascii, so an
    # astral character becomes a surrogate pair), short escapes, and unknown
    # members of every shape in the envelope, data and an image.
    odd = dict(minimal, vendor="Caf\u00e9 \"Sur\"\\/\n\t\U0001F600", lot_number="\u20ac",
               extra={"a": [1, {"b": [True, False, None, -1.5e-3]}], "c": {}},
               images=[{"id": uid("ffffffff", "a1201"), "url": "u", "x": [[]], "position": 0}])
    write(t, "variant_upsert_escapes_unknown",
          event("variant.upserted", "org_a", uid("dddddddd", "a12"), 3, odd, ascii=True,
                extra={"meta": {"trace": [0, 1e300, "x"], "n": None}}))
    product = {"id": a1, "organization_id": "org_a", "local_id": "A-001",
               "title": "Taladro Percutor 750W", "sku": "TAL-750", "barcode": None,
               "description": "Taladro percutor con malet\u00edn", "status": "activa",
               "product_type": "herramienta", "unit_of_measure": None, "alert_stock": 5,
               "brand_id": uid("bbbbbbbb", "a1"),
               "images": [{"id": uid("eeeeeeee", "a101"), "url": "https://img/l.jpg",
                           "alt": "Vista lateral", "position": 10}],
               "tag_ids": [uid("cccccccc", "a2"), uid("cccccccc", "a1")],
               "collection_ids": [uid("0c0c0c0c", "a1")]}
    write(t, "product_upsert", event("product.upserted", "org_a", a1, 4, product))
    write(t, "brand_upsert", event("brand.upserted", "org_a", uid("bbbbbbbb", "a1"), 3,
                                   {"name": "Acme", "slug": "acme",
                                    "description": "Herramientas Acme"}))
    write(t, "tag_upsert_under_tombstone",
          event("tag.upserted", "org_a", uid("cccccccc", "a1"), 6, {"name": "ofertas"}))
    write(t, "collection_upsert",
          event("collection.upserted", "org_b", uid("0c0c0c0c", "b1"), 1,
                {"name": "Importados", "slug": "importados", "organization_id": "org_b"}))
    write(t, "variant_delete", event("variant.deleted", "org_a", a11, 9, None))
    write(t, "product_delete_upper_id",
          event("product.deleted", "org_a", a1.upper(), 9, None))
    # Kafka tombstones: mode 'T' (value NULL), key only.
    write(t, "tombstone_variant", "T" + "org_a/variant/" + a11)
    write(t, "tombstone_tag", "T" + "org_a/tag/" + uid("cccccccc", "a1"))
    # Rejections: the envelope disagrees with the key; not JSON at all.
    write(t, "reject_org_mismatch",
          event("brand.upserted", "org_b", uid("bbbbbbbb", "a1"), 3,
                {"name": "Acme", "slug": "acme"}, key="org_a/brand/" + uid("bbbbbbbb", "a1")))
    write(t, "reject_not_json", "Vorg_a/variant/" + a11 + "\n{\"event_type\":")
    # A version string beyond int64 (issue 11 #7): refused, never clamped.
    write(t, "reject_version_string_above_int64",
          event("variant.upserted", "org_a", uid("dddddddd", "a12"), "+09223372036854775808",
                minimal))


# ---------------------------------------------------------------- COPY rows
def row(table_char, *cols):
    def enc(c):
        if c is None:
            return "\\N"
        return (str(c).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
                .replace("\r", "\\r"))
    return table_char + "\t".join(enc(c) for c in cols) + "\n"


def gen_copy():
    t = "fuzz_copy_row"
    A = lambda s: uid("aaaaaaaa", s)
    D = lambda s: uid("dddddddd", s)
    brands = [row("b", uid("bbbbbbbb", "a1"), "org_a", "Acme", "acme", "Herramientas Acme", 1),
              row("b", uid("bbbbbbbb", "a2"), "org_a", "Sin Nombre", "sin-nombre", None, 1)]
    tags = [row("t", uid("cccccccc", "a1"), "org_a", "ofertas", None, None, 1),
            row("t", uid("cccccccc", "a2"), "org_a", "nuevo", None, None, 2)]
    cols = [row("c", uid("0c0c0c0c", "a1"), "org_a", "Herramientas", "herramientas", None, 1)]
    pimgs = [row("I", A("a1"), uid("eeeeeeee", "a103"), "https://img.example.com/a1/d.jpg",
                 None, 2),
             row("I", A("a1"), uid("eeeeeeee", "a101"), "https://img.example.com/a1/l.jpg",
                 "Vista lateral", 10)]
    ptags = [row("T", A("a1"), uid("cccccccc", "a2")), row("T", A("a1"), uid("cccccccc", "a1"))]
    pcols = [row("C", A("a1"), uid("0c0c0c0c", "a1"))]
    products = [row("p", A("a1"), "org_a", "A-001", "Taladro Percutor 750W", "TAL-750",
                    "7790000000011", "Taladro percutor\tcon malet\u00edn", "activa",
                    "herramienta", "unidad", 5, uid("bbbbbbbb", "a1"), 1),
                row("p", A("a2"), "org_a", None, "Caja de Tornillos x100", "CAJ-100", None,
                    None, "inactiva", None, "caja", 0, None, 1)]
    vimgs = [row("i", D("a11"), uid("ffffffff", "a1101"), "https://img.example.com/a11/a.jpg",
                 None, 3)]
    variants = [row("v", D("a11"), "org_a", A("a1"), "TAL-750-AZ", "7790000000028", "active",
                    "29.99", "18.50", "21.00", "2.350", "30.50", "8.25", "22.00", "L-2024-01",
                    100, 80, 20, "WH-CENTRAL", "Acme SA", "t", 10, 200, 1),
                row("v", D("a13"), "org_a", A("a1"), "TAL-750-VD", None, "active", "1234.56",
                    None, None, None, "12.00", None, None, None, 0, 0, 0, "WH-SUR", None, "t",
                    1, 9, 1),
                row("v", D("a12"), "org_a", A("a1"), "TAL-750-RJ", "7790000000035", "inactive",
                    "31.50", "19.00", "21.00", "2.400", "30.50", "8.25", "22.00", None, 0, 0, 0,
                    "WH-NORTE", None, "f", 0, 0, 2)]
    for name, rows in [("brands", brands), ("tags", tags), ("collections", cols),
                       ("product_images", pimgs), ("product_tags", ptags),
                       ("product_collections", pcols), ("products", products),
                       ("variant_images", vimgs), ("variants", variants)]:
        write(t, name, "".join(rows))
    # A whole load in the loader's table order.
    write(t, "full_load", "".join(brands + tags + cols + pimgs + ptags + pcols + products +
                                  vimgs + variants))
    # Escapes the COPY text format allows (octal, hex, \\, \N inside a field).
    write(t, "escapes", "b" + uid("bbbbbbbb", "a3") +
          "\torg_a\tA\\101\\x42\\\\c\\b\\f\\v\\r\\n\\t\\x\\9\tslug\\N\tdesc\\\\\t1\n")
    # Rows without their newline, a NULL where one is not allowed, too few fields.
    write(t, "no_newline_null_id", "p\\N\torg_a\t\\N\tT\tS\t\\N\t\\N\tactiva\t\\N\t\\N\t"
          "\\N\t\\N\t\\N")
    write(t, "short_rows", "v" + D("a11") + "\torg_a\nI" + A("a1") + "\n")


# ---------------------------------------------------------------- RPC requests
def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def fstr(num, s):
    b = s.encode() if isinstance(s, str) else s
    return varint(num << 3 | 2) + varint(len(b)) + b


def fbool(num, v):
    return varint(num << 3 | 0) + varint(1 if v else 0)


def gen_rpc():
    t = "fuzz_rpc"
    D = lambda s: uid("dddddddd", s)
    A = lambda s: uid("aaaaaaaa", s)
    long_org = "L" * 255
    # 0 ValidateVariant
    write(t, "validate_active", b"\x00" + fstr(1, "org_a") + fstr(2, D("a11")))
    write(t, "validate_upper_id_other_tenant",
          b"\x00" + fstr(1, "org_b") + fstr(2, D("a11").upper()))
    write(t, "validate_orphan", b"\x00" + fstr(1, "org_a") + fstr(2, D("a91")))
    write(t, "validate_deleted", b"\x00" + fstr(1, "org_a") + fstr(2, D("a14")))
    write(t, "validate_nul_in_org", b"\x00" + fstr(1, b"org_a\x00x") + fstr(2, D("a11")))
    write(t, "validate_bad_id", b"\x00" + fstr(1, "org_a") + fstr(2, "not-a-uuid"))
    # Unknown fields (a newer client's) holding NUL bytes: skipped (issue 11 #9).
    write(t, "validate_unknown_fields_with_nul",
          b"\x00" + fstr(1, "org_a") + fstr(9, b"a\x00b") + fstr(2, D("a11")) +
          varint(10 << 3 | 1) + b"\x00" * 8 + fstr(1000, b"\x00\x00"))
    # Unknown groups (wire types 3/4), nested, with a NUL inside: stripped before
    # protobuf-c (which refuses groups) unpacks the rest.
    grp = lambda n, body: varint(n << 3 | 3) + body + varint(n << 3 | 4)
    write(t, "validate_unknown_groups",
          b"\x00" + grp(9, b"") + fstr(1, "org_a") +
          grp(20, grp(21, fstr(1, b"\x00") + varint(2 << 3 | 0) + b"\x05")) + fstr(2, D("a11")) +
          grp(536870911, varint(1 << 3 | 5) + b"\x00" * 4))
    write(t, "validate_unmatched_end_group",
          b"\x00" + fstr(1, "org_a") + fstr(2, D("a11")) + varint(9 << 3 | 3) + varint(10 << 3 | 4))
    # 1 ValidateVariantsBatch
    ids = [D("a11"), D("A12").lower(), D("a11"), D("b11"), D("c1"), D("a99")]
    write(t, "validate_batch",
          b"\x01" + fstr(1, "org_a") + b"".join(fstr(2, i) for i in ids))
    # 2 GetVariantsBatch
    ids = [D("a11"), D("a11").upper(), D("a13"), D("c1"), D("b11"), D("a91"), D("a14")]
    write(t, "get_batch", b"\x02" + fstr(1, "org_a") + b"".join(fstr(2, i) for i in ids))
    write(t, "get_batch_long_org",
          b"\x02" + fstr(1, long_org) + fstr(2, D("c11")) + fstr(2, D("c1")))
    write(t, "get_batch_over_limit",
          b"\x02" + fstr(1, "org_a") + b"".join(fstr(2, D("a11")) for _ in range(65)))
    # 3 GetProductDetails
    write(t, "product_full", b"\x03" + fstr(1, "org_a") + fstr(2, A("a1")) + fbool(3, True) +
          fbool(4, True))
    write(t, "product_moved_variant",
          b"\x03" + fstr(1, "org_a") + fstr(2, A("a2")) + fbool(3, True))
    write(t, "product_dangling_brand", b"\x03" + fstr(1, "org_a") + fstr(2, A("a4")) +
          fbool(4, True))
    write(t, "product_org_b", b"\x03" + fstr(1, "org_b") + fstr(2, A("b1")) + fbool(3, True) +
          fbool(4, True))
    write(t, "product_long_org", b"\x03" + fstr(1, long_org) + fstr(2, A("c1")) +
          fbool(3, True) + fbool(4, True))


if __name__ == "__main__":
    # Seeds are (re)written in place, never wiped first: the corpus also holds seeds
    # added by hand for a regression (e.g. fuzz_copy_row/children_case_and_clear).
    gen_events()
    gen_copy()
    gen_rpc()
