#!/usr/bin/python3
"""The original design, as a benchmark reference: catalog.CatalogService answered
with PostgreSQL queries on every call (Python, grpcio's asyncio server + asyncpg,
both from Debian: python3-grpcio, python3-asyncpg, python3-grpc-tools).

What it does per call, like the service catalogd replaces:
  ValidateVariant        1 variant query, then 1 product query (is it sellable?)
  ValidateVariantsBatch  1 query for the variants (= ANY), then 1 product query
                         PER VARIANT found (the original's N+1)
  GetVariantsBatch       1 query for the variants, 1 for their images
  GetProductDetails      product, brand, images, variants, variant images, tags,
                         collections: 7 queries

Same data (the benchmark's PostgreSQL), same contract (protos/catalog.proto), same
replies for the benchmark's requests (catalog-bench --check compares them with the
sample classes). Not a faithful port of every edge case of the contract (bad input is
answered INVALID_ARGUMENT without the exact messages).

Environment: DATABASE_URL (required), GRPC_PORT (default 50054), POOL_SIZE (10).
Prints "LISTENING <port>" when serving; SIGTERM/SIGINT stop it.
"""
import asyncio
import os
import signal
import sys
import tempfile
import uuid

import asyncpg
import grpc
from grpc_tools import protoc

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_DIR = os.path.join(HERE, os.pardir, 'protos')


def load_stubs():
    out = tempfile.mkdtemp(prefix='orig-stubs-')
    rc = protoc.main(['protoc', '-I' + PROTO_DIR, '--python_out=' + out,
                      '--grpc_python_out=' + out, os.path.join(PROTO_DIR, 'catalog.proto')])
    if rc != 0:
        raise RuntimeError('protoc failed')
    sys.path.insert(0, out)
    import catalog_pb2
    import catalog_pb2_grpc
    return out, catalog_pb2, catalog_pb2_grpc


STUB_DIR, pb, pb_grpc = load_stubs()

VARIANT_COLS = ('id, product_id, sku, barcode, status, sale_price, cost_price, tax, weight, '
                'dim_length, dim_width, dim_height, lot_number, stock_total, stock_available, '
                'stock_reserved, warehouse_id, vendor, track_inventory, default_min_stock, '
                'default_max_stock')


def s(x):
    return '' if x is None else str(x)


def f(x):
    return 0.0 if x is None else float(x)


def parse_uuid(text):
    try:
        return uuid.UUID(text)
    except (ValueError, AttributeError, TypeError):
        return None


def variant_msg(r, images):
    return pb.Variant(
        variant_id=str(r['id']), product_id=str(r['product_id']), sku=r['sku'],
        barcode=s(r['barcode']), sale_price=f(r['sale_price']), cost_price=f(r['cost_price']),
        tax=f(r['tax']), weight=f(r['weight']),
        dimensions=pb.Dimensions(length=f(r['dim_length']), width=f(r['dim_width']),
                                 height=f(r['dim_height'])),
        lot_number=s(r['lot_number']), stock_total=r['stock_total'],
        stock_available=r['stock_available'], stock_reserved=r['stock_reserved'],
        warehouse_id=r['warehouse_id'], vendor=s(r['vendor']),
        track_inventory=r['track_inventory'], default_min_stock=r['default_min_stock'],
        default_max_stock=r['default_max_stock'],
        images=[pb.VariantImage(image_id=str(i['id']), url=i['url'], alt=s(i['alt']),
                                position=i['position']) for i in images])


class Catalog(pb_grpc.CatalogServiceServicer):
    def __init__(self, pool):
        self.pool = pool

    async def _ids(self, context, texts):
        ids = []
        for t in texts:
            u = parse_uuid(t)
            if u is None:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, 'variant_ids: not a UUID')
            ids.append(u)
        return ids

    async def ValidateVariant(self, req, context):
        vid = parse_uuid(req.variant_id)
        if not req.organization_id or vid is None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, 'bad organization_id or variant_id')
        async with self.pool.acquire() as db:
            v = await db.fetchrow(
                'SELECT id, product_id, sku, barcode, status, sale_price, warehouse_id, '
                'track_inventory, default_min_stock, default_max_stock FROM variants '
                'WHERE id = $1 AND organization_id = $2', vid, req.organization_id)
            if v is None:
                return pb.ValidateVariantResponse(
                    exists=False, variant_id=req.variant_id,
                    message='Variant %s not found' % req.variant_id)
            p = await db.fetchrow('SELECT status FROM products WHERE id = $1 AND organization_id = $2',
                                  v['product_id'], req.organization_id)
        return pb.ValidateVariantResponse(
            exists=True, is_active=v['status'] == 'active' and p is not None and p['status'] == 'activa',
            variant_id=req.variant_id, product_id=str(v['product_id']), sku=v['sku'],
            barcode=s(v['barcode']), warehouse_id=v['warehouse_id'],
            track_inventory=v['track_inventory'], default_min_stock=v['default_min_stock'],
            default_max_stock=v['default_max_stock'], price=f(v['sale_price']),
            message='Variant validated successfully')

    async def ValidateVariantsBatch(self, req, context):
        ids = await self._ids(context, req.variant_ids)
        out = []
        async with self.pool.acquire() as db:
            rows = await db.fetch(
                'SELECT id, product_id, sku, barcode, status, warehouse_id, track_inventory, '
                'default_min_stock, default_max_stock FROM variants '
                'WHERE id = ANY($1::uuid[]) AND organization_id = $2', ids, req.organization_id)
            by_id = {r['id']: r for r in rows}
            for text, u in zip(req.variant_ids, ids):
                v = by_id.get(u)
                if v is None:
                    out.append(pb.VariantValidation(variant_id=text, exists=False))
                    continue
                # The original looked the product up for every variant.
                p = await db.fetchrow('SELECT status FROM products WHERE id = $1 AND organization_id = $2',
                                      v['product_id'], req.organization_id)
                out.append(pb.VariantValidation(
                    variant_id=text, exists=True,
                    is_active=v['status'] == 'active' and p is not None and p['status'] == 'activa',
                    sku=v['sku'], barcode=s(v['barcode']), warehouse_id=v['warehouse_id'],
                    track_inventory=v['track_inventory'], default_min_stock=v['default_min_stock'],
                    default_max_stock=v['default_max_stock']))
        return pb.ValidateVariantsBatchResponse(success=True, validations=out,
                                                message='Validated %d variants' % len(out))

    async def GetVariantsBatch(self, req, context):
        ids = await self._ids(context, req.variant_ids)
        async with self.pool.acquire() as db:
            rows = await db.fetch('SELECT ' + VARIANT_COLS + ' FROM variants '
                                  'WHERE id = ANY($1::uuid[]) AND organization_id = $2',
                                  ids, req.organization_id)
            imgs = await db.fetch('SELECT id, variant_id, url, alt, position FROM variant_images '
                                  'WHERE variant_id = ANY($1::uuid[]) ORDER BY position',
                                  [r['id'] for r in rows])
        by_id = {r['id']: r for r in rows}
        images = {}
        for i in imgs:
            images.setdefault(i['variant_id'], []).append(i)
        found, missing, seen = [], [], set()
        for text, u in zip(req.variant_ids, ids):
            if u in by_id:
                if u not in seen:
                    seen.add(u)
                    found.append(variant_msg(by_id[u], images.get(u, [])))
            else:
                missing.append(text)
        return pb.GetVariantsBatchResponse(
            success=True, variants=found, not_found_ids=missing,
            message='Retrieved %d of %d variants' % (len(found), len(req.variant_ids)))

    async def GetProductDetails(self, req, context):
        pid = parse_uuid(req.product_id)
        if not req.organization_id or pid is None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, 'bad organization_id or product_id')
        org = req.organization_id
        async with self.pool.acquire() as db:
            p = await db.fetchrow('SELECT * FROM products WHERE id = $1 AND organization_id = $2',
                                  pid, org)
            if p is None:
                return pb.GetProductDetailsResponse(success=False,
                                                    message='Product %s not found' % req.product_id)
            brand = None
            if p['brand_id'] is not None:
                brand = await db.fetchrow('SELECT * FROM brands WHERE id = $1 AND organization_id = $2',
                                          p['brand_id'], org)
            images = []
            if req.include_images:
                images = await db.fetch('SELECT * FROM product_images WHERE product_id = $1 '
                                        'ORDER BY position', pid)
            variants, vimages = [], {}
            if req.include_variants:
                variants = await db.fetch('SELECT ' + VARIANT_COLS + ' FROM variants WHERE '
                                          'product_id = $1 AND organization_id = $2 ORDER BY sku',
                                          pid, org)
                for i in await db.fetch('SELECT * FROM variant_images WHERE variant_id = '
                                        'ANY($1::uuid[]) ORDER BY position',
                                        [v['id'] for v in variants]):
                    vimages.setdefault(i['variant_id'], []).append(i)
            tags = await db.fetch('SELECT t.id, t.name FROM tags t JOIN product_tags pt ON '
                                  'pt.tag_id = t.id WHERE pt.product_id = $1 AND '
                                  't.organization_id = $2 ORDER BY t.name', pid, org)
            cols = await db.fetch('SELECT c.id, c.name, c.slug FROM collections c JOIN '
                                  'product_collections pc ON pc.collection_id = c.id WHERE '
                                  'pc.product_id = $1 AND c.organization_id = $2 ORDER BY c.name',
                                  pid, org)
        msg = pb.Product(
            product_id=str(p['id']), organization_id=org, local_id=s(p['local_id']),
            title=p['title'], sku=p['sku'], barcode=s(p['barcode']),
            description=s(p['description']), status=p['status'],
            product_type=s(p['product_type']), unit_of_measure=p['unit_of_measure'],
            alert_stock=p['alert_stock'],
            images=[pb.ProductImage(image_id=str(i['id']), url=i['url'], alt=s(i['alt']),
                                    position=i['position']) for i in images],
            variants=[variant_msg(v, vimages.get(v['id'], [])) for v in variants],
            tags=[pb.Tag(tag_id=str(t['id']), name=t['name']) for t in tags],
            collections=[pb.Collection(collection_id=str(c['id']), name=c['name'],
                                       slug=c['slug']) for c in cols])
        if brand is not None:
            msg.brand.CopyFrom(pb.Brand(brand_id=str(brand['id']), name=brand['name'],
                                        slug=brand['slug'], description=s(brand['description'])))
        return pb.GetProductDetailsResponse(success=True, product=msg,
                                            message='Product retrieved successfully')


async def serve():
    pool = await asyncpg.create_pool(os.environ['DATABASE_URL'], min_size=2,
                                     max_size=int(os.environ.get('POOL_SIZE', '10')))
    server = grpc.aio.server(options=[('grpc.so_reuseport', 0)])
    pb_grpc.add_CatalogServiceServicer_to_server(Catalog(pool), server)
    port = server.add_insecure_port('127.0.0.1:%s' % os.environ.get('GRPC_PORT', '50054'))
    if port == 0:
        raise SystemExit('orig-server: cannot listen')
    await server.start()
    print('LISTENING %d' % port, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(1)
    await pool.close()


if __name__ == '__main__':
    try:
        asyncio.run(serve())
    finally:
        import shutil
        shutil.rmtree(STUB_DIR, ignore_errors=True)
