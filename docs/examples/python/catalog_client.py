#!/usr/bin/python3
"""A catalogd client in Python (grpcio), as docs/clients.md recommends.

    python3 catalog_client.py TARGET PROTO_DIR
    python3 catalog_client.py localhost:50052 protos                # against `make run`
    python3 catalog_client.py dns:///catalogd-headless:50052 protos  # in Kubernetes

Needs grpcio and grpcio-tools (Debian: python3-grpcio python3-grpc-tools). The stubs are
generated from PROTO_DIR/catalog.proto into a temporary folder at start (a real project
generates them at build time). Each step prints one line: `step: result`. It calls the
demo catalog's ids (SYNC_MODE=demo); change ORG and the ids for your data.
"""
import json
import sys
import tempfile

import grpc
from grpc_tools import protoc

ORG = 'demo-org'
PRODUCT = 'd1000000-0000-4000-8000-000000000001'
VARIANT = 'd2000000-0000-4000-8000-000000000001'
UNKNOWN = '00000000-0000-4000-8000-00000000dead'

# One service config for every call: round_robin over every address the name resolves
# to (the headless Service), client-side health checking (a replica that is draining
# or still loading leaves the rotation at once), and a retry policy for UNAVAILABLE
# only (a replica answers it while its catalog loads). The policy's deadline is the
# call's: retries never extend it.
SERVICE_CONFIG = {
    'loadBalancingConfig': [{'round_robin': {}}],
    'healthCheckConfig': {'serviceName': 'catalog.CatalogService'},
    'methodConfig': [{
        'name': [{'service': 'catalog.CatalogService'}],
        'retryPolicy': {
            'maxAttempts': 4,
            'initialBackoff': '0.1s',
            'maxBackoff': '1s',
            'backoffMultiplier': 2,
            'retryableStatusCodes': ['UNAVAILABLE'],
        },
    }],
}

DEADLINE_S = 0.5  # every call has one: a lookup takes microseconds, a batch milliseconds

# What to do with each status code catalogd returns (README, docs/operations.md).
RETRY = ('UNAVAILABLE',)                  # loading or going away: retried by the policy
FIX_REQUEST = ('INVALID_ARGUMENT',        # an empty or malformed id/org, too many ids
               'RESOURCE_EXHAUSTED')      # message or reply too large: split the batch
BUG = ('UNIMPLEMENTED',)                  # a method this server does not have


def load_stubs(proto_dir):
    out = tempfile.mkdtemp(prefix='catalog-stubs-')
    rc = protoc.main(['protoc', '-I' + proto_dir, '--python_out=' + out,
                      '--grpc_python_out=' + out, 'catalog.proto'])
    if rc != 0:
        sys.exit('protoc failed for %s/catalog.proto' % proto_dir)
    sys.path.insert(0, out)
    import catalog_pb2
    import catalog_pb2_grpc
    return catalog_pb2, catalog_pb2_grpc


def classify(err):
    name = err.code().name
    if name in RETRY:
        return 'retry-exhausted'
    if name in FIX_REQUEST:
        return 'fix-request'
    if name == 'DEADLINE_EXCEEDED':
        return 'timeout'
    if name in BUG:
        return 'bug'
    return 'other'


def main(target, proto_dir):
    pb, pb_grpc = load_stubs(proto_dir)
    channel = grpc.insecure_channel(target, options=[
        ('grpc.service_config', json.dumps(SERVICE_CONFIG)),
        ('grpc.enable_http_proxy', 0)])
    stub = pb_grpc.CatalogServiceStub(channel)

    # 1. A lookup with a deadline, and the snapshot version from the trailer.
    resp, call = stub.ValidateVariant.with_call(
        pb.ValidateVariantRequest(organization_id=ORG, variant_id=VARIANT),
        timeout=DEADLINE_S, wait_for_ready=True)  # the first call may wait for a connection
    version = dict(call.trailing_metadata()).get('x-catalog-snapshot-version')
    print('validate: exists=%s active=%s price=%.2f snapshot=%s'
          % (resp.exists, resp.is_active, resp.price, version))

    # 2. "Not found" is an answer (OK), not an error.
    resp = stub.ValidateVariant(pb.ValidateVariantRequest(organization_id=ORG,
                                                          variant_id=UNKNOWN),
                                timeout=DEADLINE_S)
    print('unknown: exists=%s message=%s' % (resp.exists, resp.message))

    # 3. Batching: one call for many ids (at most MAX_BATCH_IDS, default 1000).
    resp = stub.GetVariantsBatch(pb.GetVariantsBatchRequest(
        organization_id=ORG, variant_ids=[VARIANT, UNKNOWN]), timeout=DEADLINE_S)
    print('batch: found=%d not_found=%s' % (len(resp.variants), ','.join(resp.not_found_ids)))

    # 4. A product with its variants.
    resp = stub.GetProductDetails(pb.GetProductDetailsRequest(
        organization_id=ORG, product_id=PRODUCT, include_variants=True), timeout=DEADLINE_S)
    print('product: success=%s variants=%d' % (resp.success, len(resp.product.variants)))

    # 5. A bad request: INVALID_ARGUMENT names the field; do not retry it.
    try:
        stub.ValidateVariant(pb.ValidateVariantRequest(organization_id=ORG,
                                                       variant_id='not-a-uuid'),
                             timeout=DEADLINE_S)
        print('bad-request: unexpectedly OK')
    except grpc.RpcError as err:
        print('bad-request: %s %s' % (err.code().name, classify(err)))
    channel.close()


if __name__ == '__main__':
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
