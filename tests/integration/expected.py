#!/usr/bin/python3
"""The content of tests/fixtures/seed.sql as the wire contract must render it.

Written by hand from seed.sql (not derived from it): NULL text -> "", NULL number -> 0,
numeric(14,2) -> the nearest double of the decimal (29.99 == float('29.99')), uuids in
PostgreSQL's canonical lower-case text form.
"""

from harness import pb

ORG_A = 'org_a'
ORG_B = 'org_b'
ORG_A_UPPER = 'ORG_A'   # differs from org_a only by case; holds nothing

# ---- ids ----
BRAND_A1 = 'bbbbbbbb-0000-0000-0000-0000000000a1'
BRAND_A2 = 'bbbbbbbb-0000-0000-0000-0000000000a2'
BRAND_B1 = 'bbbbbbbb-0000-0000-0000-0000000000b1'

P_A1 = 'aaaaaaaa-0000-0000-0000-0000000000a1'   # activa, brand, images, tags, collections
P_A2 = 'aaaaaaaa-0000-0000-0000-0000000000a2'   # inactiva, no brand, NULL columns
P_A3 = 'aaaaaaaa-0000-0000-0000-0000000000a3'   # borrador, brand without description
P_B1 = 'aaaaaaaa-0000-0000-0000-0000000000b1'   # org_b

V_A11 = 'dddddddd-0000-0000-0000-000000000a11'  # active, product activa -> active
V_A12 = 'dddddddd-0000-0000-0000-000000000a12'  # inactive variant
V_A13 = 'dddddddd-0000-0000-0000-000000000a13'  # active, NULL columns
V_A21 = 'dddddddd-0000-0000-0000-000000000a21'  # active variant of inactiva product
V_A31 = 'dddddddd-0000-0000-0000-000000000a31'  # active variant of borrador product
V_B11 = 'dddddddd-0000-0000-0000-000000000b11'  # org_b

ORG_A_VARIANTS = [V_A11, V_A12, V_A13, V_A21, V_A31]
ORG_A_PRODUCTS = [P_A1, P_A2, P_A3]

# Well-formed uuids that exist nowhere (with letters, so case matters).
UNKNOWN_1 = 'deadbeef-0000-4000-8000-00000000abcd'
UNKNOWN_2 = 'feedface-1111-4111-8111-0000000000ef'

# Every org_b text value; none of them may appear in a response to another tenant.
ORG_B_MARKERS = ['BOREAL', 'Borealis', 'importad', 'Importad', 'WH-B', '888000000',
                 'b1.jpg', '/b1/', '/b11/', 'org_b', '0000000000b1', '000000000b11',
                 '0000000b11', '00000000b101']


# ---- brands ----
def brand(bid):
    return {
        BRAND_A1: pb.Brand(brand_id=BRAND_A1, name='Acme', slug='acme',
                           description='Herramientas Acme'),
        BRAND_A2: pb.Brand(brand_id=BRAND_A2, name='Sin Nombre', slug='sin-nombre',
                           description=''),
        BRAND_B1: pb.Brand(brand_id=BRAND_B1, name='Borealis', slug='borealis',
                           description='Marca Borealis'),
    }[bid]


# ---- images, already in position order ----
PRODUCT_IMAGES = {
    P_A1: [
        pb.ProductImage(image_id='eeeeeeee-0000-0000-0000-00000000a102',
                        url='https://img.example.com/a1/frente.jpg', alt='Vista frontal',
                        position=1),
        pb.ProductImage(image_id='eeeeeeee-0000-0000-0000-00000000a103',
                        url='https://img.example.com/a1/detalle.jpg', alt='', position=2),
        pb.ProductImage(image_id='eeeeeeee-0000-0000-0000-00000000a101',
                        url='https://img.example.com/a1/lateral.jpg', alt='Vista lateral',
                        position=10),
    ],
    P_A2: [
        pb.ProductImage(image_id='eeeeeeee-0000-0000-0000-00000000a201',
                        url='https://img.example.com/a2/caja.jpg', alt='Caja', position=0),
    ],
    P_A3: [],
    P_B1: [
        pb.ProductImage(image_id='eeeeeeee-0000-0000-0000-00000000b101',
                        url='https://img.example.com/b1/BOREAL-termo.jpg', alt='BOREAL termo',
                        position=0),
    ],
}

VARIANT_IMAGES = {
    V_A11: [
        pb.VariantImage(image_id='ffffffff-0000-0000-0000-0000000a1102',
                        url='https://img.example.com/a11/principal.jpg', alt='Principal',
                        position=0),
        pb.VariantImage(image_id='ffffffff-0000-0000-0000-0000000a1101',
                        url='https://img.example.com/a11/azul.jpg', alt='', position=3),
        pb.VariantImage(image_id='ffffffff-0000-0000-0000-0000000a1103',
                        url='https://img.example.com/a11/caja.jpg', alt='En su caja',
                        position=11),
    ],
    V_A12: [],
    V_A13: [
        pb.VariantImage(image_id='ffffffff-0000-0000-0000-0000000a1301',
                        url='https://img.example.com/a13/verde.jpg', alt='Verde', position=4),
    ],
    V_A21: [],
    V_A31: [],
    V_B11: [
        pb.VariantImage(image_id='ffffffff-0000-0000-0000-0000000b1102',
                        url='https://img.example.com/b11/BOREAL-a.jpg', alt='BOREAL a',
                        position=0),
        pb.VariantImage(image_id='ffffffff-0000-0000-0000-0000000b1101',
                        url='https://img.example.com/b11/BOREAL-b.jpg', alt='BOREAL b',
                        position=1),
    ],
}

# ---- variants (scalar columns) ----
# dims: None when all three dimension columns are NULL.
_VARIANTS = {
    V_A11: dict(product_id=P_A1, sku='TAL-750-AZ', barcode='7790000000028', sale_price=29.99,
                cost_price=18.50, tax=21.00, weight=2.350, dims=(30.50, 8.25, 22.00),
                lot_number='L-2024-01', stock_total=100, stock_available=80, stock_reserved=20,
                warehouse_id='WH-CENTRAL', vendor='Acme SA', track_inventory=True,
                default_min_stock=10, default_max_stock=200),
    V_A12: dict(product_id=P_A1, sku='TAL-750-RJ', barcode='7790000000035', sale_price=31.50,
                cost_price=19.00, tax=21.00, weight=2.400, dims=(30.50, 8.25, 22.00),
                lot_number='', stock_total=0, stock_available=0, stock_reserved=0,
                warehouse_id='WH-NORTE', vendor='', track_inventory=False,
                default_min_stock=0, default_max_stock=0),
    V_A13: dict(product_id=P_A1, sku='TAL-750-VD', barcode='', sale_price=1234.56,
                cost_price=0.0, tax=0.0, weight=0.0, dims=(12.00, 0.0, 0.0),
                lot_number='', stock_total=0, stock_available=0, stock_reserved=0,
                warehouse_id='WH-SUR', vendor='', track_inventory=True,
                default_min_stock=1, default_max_stock=9),
    V_A21: dict(product_id=P_A2, sku='CAJ-100-U', barcode='7790000000042', sale_price=10.00,
                cost_price=6.10, tax=10.50, weight=0.250, dims=None,
                lot_number='L-77', stock_total=50, stock_available=45, stock_reserved=5,
                warehouse_id='WH-CENTRAL', vendor='Tornillería Sur', track_inventory=True,
                default_min_stock=3, default_max_stock=30),
    V_A31: dict(product_id=P_A3, sku='LIJ-001-S', barcode='', sale_price=5.05,
                cost_price=3.00, tax=0.00, weight=1.100, dims=(20.00, 10.00, 12.50),
                lot_number='', stock_total=0, stock_available=0, stock_reserved=0,
                warehouse_id='WH-CENTRAL', vendor='', track_inventory=False,
                default_min_stock=0, default_max_stock=50),
    V_B11: dict(product_id=P_B1, sku='BOREAL-TERMO-1L', barcode='8880000000019', sale_price=99.90,
                cost_price=55.00, tax=21.00, weight=0.800, dims=(8.00, 8.00, 30.00),
                lot_number='BOREAL-LOT', stock_total=12, stock_available=12, stock_reserved=0,
                warehouse_id='WH-B', vendor='Borealis Import', track_inventory=True,
                default_min_stock=2, default_max_stock=24),
}

# is_active = variant active AND product exists AND product activa
ACTIVE = {V_A11: True, V_A12: False, V_A13: True, V_A21: False, V_A31: False, V_B11: True}
ORG_OF_VARIANT = {V_A11: ORG_A, V_A12: ORG_A, V_A13: ORG_A, V_A21: ORG_A, V_A31: ORG_A,
                  V_B11: ORG_B}


def variant_fields(vid):
    return dict(_VARIANTS[vid])


def variant(vid, with_images=True):
    v = _VARIANTS[vid]
    msg = pb.Variant(
        variant_id=vid, product_id=v['product_id'], sku=v['sku'], barcode=v['barcode'],
        sale_price=v['sale_price'], cost_price=v['cost_price'], tax=v['tax'],
        weight=v['weight'], lot_number=v['lot_number'], stock_total=v['stock_total'],
        stock_available=v['stock_available'], stock_reserved=v['stock_reserved'],
        warehouse_id=v['warehouse_id'], vendor=v['vendor'],
        track_inventory=v['track_inventory'], default_min_stock=v['default_min_stock'],
        default_max_stock=v['default_max_stock'])
    if v['dims'] is not None:
        msg.dimensions.CopyFrom(pb.Dimensions(length=v['dims'][0], width=v['dims'][1],
                                              height=v['dims'][2]))
    if with_images:
        msg.images.extend(VARIANT_IMAGES[vid])
    return msg


# ---- tags / collections (sorted by id; order is not part of the contract) ----
_TAGS = {
    P_A1: [pb.Tag(tag_id='cccccccc-0000-0000-0000-0000000000a1', name='ofertas'),
           pb.Tag(tag_id='cccccccc-0000-0000-0000-0000000000a2', name='nuevo')],
    P_A2: [pb.Tag(tag_id='cccccccc-0000-0000-0000-0000000000a1', name='ofertas')],
    P_A3: [],
    P_B1: [pb.Tag(tag_id='cccccccc-0000-0000-0000-0000000000b1', name='importado')],
}
_COLLECTIONS = {
    P_A1: [pb.Collection(collection_id='0c0c0c0c-0000-0000-0000-0000000000a1',
                         name='Herramientas', slug='herramientas'),
           pb.Collection(collection_id='0c0c0c0c-0000-0000-0000-0000000000a2',
                         name='Verano 2024', slug='verano-2024')],
    P_A2: [],
    P_A3: [],
    P_B1: [pb.Collection(collection_id='0c0c0c0c-0000-0000-0000-0000000000b1',
                         name='Importados', slug='importados')],
}
_PRODUCT_VARIANTS = {
    P_A1: [V_A11, V_A12, V_A13],
    P_A2: [V_A21],
    P_A3: [V_A31],
    P_B1: [V_B11],
}

_PRODUCTS = {
    P_A1: dict(organization_id=ORG_A, local_id='A-001', title='Taladro Percutor 750W',
               sku='TAL-750', barcode='7790000000011',
               description='Taladro percutor con maletín', status='activa',
               product_type='herramienta', unit_of_measure='unidad', alert_stock=5,
               brand=BRAND_A1),
    P_A2: dict(organization_id=ORG_A, local_id='', title='Caja de Tornillos x100',
               sku='CAJ-100', barcode='', description='', status='inactiva',
               product_type='', unit_of_measure='caja', alert_stock=0, brand=None),
    P_A3: dict(organization_id=ORG_A, local_id='A-003', title='Lijadora (borrador)',
               sku='LIJ-001', barcode='', description='Pendiente de revisión',
               status='borrador', product_type='herramienta', unit_of_measure='unidad',
               alert_stock=2, brand=BRAND_A2),
    P_B1: dict(organization_id=ORG_B, local_id='B-001', title='BOREAL Termo 1L',
               sku='BOREAL-TERMO', barcode='8880000000002', description='Termo importado',
               status='activa', product_type='hogar', unit_of_measure='unidad',
               alert_stock=3, brand=BRAND_B1),
}


def product(pid, include_images, include_variants):
    """Expected Product; variants, tags and collections sorted by id (see normalize)."""
    p = _PRODUCTS[pid]
    msg = pb.Product(product_id=pid, organization_id=p['organization_id'],
                     local_id=p['local_id'], title=p['title'], sku=p['sku'],
                     barcode=p['barcode'], description=p['description'], status=p['status'],
                     product_type=p['product_type'], unit_of_measure=p['unit_of_measure'],
                     alert_stock=p['alert_stock'])
    if p['brand']:
        msg.brand.CopyFrom(brand(p['brand']))
    if include_images:
        msg.images.extend(PRODUCT_IMAGES[pid])
    if include_variants:
        msg.variants.extend(variant(v) for v in sorted(_PRODUCT_VARIANTS[pid]))
    msg.tags.extend(sorted(_TAGS[pid], key=lambda t: t.tag_id))
    msg.collections.extend(sorted(_COLLECTIONS[pid], key=lambda c: c.collection_id))
    return msg


def normalize_product(msg):
    """Copy of a received Product with the unordered lists sorted by id, and an all-zero
    `dimensions` cleared (a variant whose three dimensions are NULL may carry either an
    absent or an all-zero Dimensions: both read as 0,0,0)."""
    out = pb.Product()
    out.CopyFrom(msg)
    variants = sorted(out.variants, key=lambda v: v.variant_id)
    variants = [normalize_variant(v) for v in variants]
    del out.variants[:]
    out.variants.extend(variants)
    tags = sorted(out.tags, key=lambda t: t.tag_id)
    del out.tags[:]
    out.tags.extend(tags)
    cols = sorted(out.collections, key=lambda c: c.collection_id)
    del out.collections[:]
    out.collections.extend(cols)
    return out


def normalize_variant(msg):
    out = pb.Variant()
    out.CopyFrom(msg)
    if out.HasField('dimensions') and out.dimensions.ByteSize() == 0:
        out.ClearField('dimensions')
    return out
