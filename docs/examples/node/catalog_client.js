#!/usr/bin/env node
// A catalogd client in Node.js (@grpc/grpc-js), as docs/clients.md recommends.
//
//   npm install @grpc/grpc-js @grpc/proto-loader
//   node catalog_client.js TARGET PROTO_DIR
//   node catalog_client.js localhost:50052 protos                 # against `make run`
//   node catalog_client.js dns:///catalogd-headless:50052 protos   # in Kubernetes
//
// Each step prints one line: `step: result`. It calls the demo catalog's ids
// (SYNC_MODE=demo); change ORG and the ids for your data.
'use strict';
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const ORG = 'demo-org';
const PRODUCT = 'd1000000-0000-4000-8000-000000000001';
const VARIANT = 'd2000000-0000-4000-8000-000000000001';
const UNKNOWN = '00000000-0000-4000-8000-00000000dead';
const DEADLINE_MS = 500; // every call has one

// round_robin over every address the name resolves to (the headless Service) and a
// retry policy for UNAVAILABLE only (a replica answers it while its catalog loads).
const SERVICE_CONFIG = {
  loadBalancingConfig: [{ round_robin: {} }],
  methodConfig: [{
    name: [{ service: 'catalog.CatalogService' }],
    retryPolicy: {
      maxAttempts: 4,
      initialBackoff: '0.1s',
      maxBackoff: '1s',
      backoffMultiplier: 2,
      retryableStatusCodes: ['UNAVAILABLE'],
    },
  }],
};

// What to do with each status code catalogd returns (README, docs/operations.md).
function classify(err) {
  switch (err.code) {
    case grpc.status.UNAVAILABLE: return 'retry-exhausted'; // loading or going away
    case grpc.status.INVALID_ARGUMENT: // an empty or malformed id/org, too many ids
    case grpc.status.RESOURCE_EXHAUSTED: return 'fix-request'; // too large: split it
    case grpc.status.DEADLINE_EXCEEDED: return 'timeout';
    case grpc.status.UNIMPLEMENTED: return 'bug';
    default: return 'other';
  }
}

function deadline() {
  return new Date(Date.now() + DEADLINE_MS);
}

// One unary call as a promise of {resp, trailers}. grpc-js calls back before it
// emits 'status' (which carries the trailers): settle on whichever comes last.
function call(client, method, req, opts = {}) {
  return new Promise((resolve, reject) => {
    let done = null;
    let trailers = null;
    const settle = () => {
      if (done === null || trailers === null) return;
      if (done.err) reject(done.err); else resolve({ resp: done.resp, trailers });
    };
    const c = client[method](req, new grpc.Metadata(), { deadline: deadline(), ...opts },
      (err, resp) => { done = { err, resp }; settle(); });
    c.on('status', (st) => { trailers = st.metadata; settle(); });
  });
}

async function main(target, protoDir) {
  const def = protoLoader.loadSync(path.join(protoDir, 'catalog.proto'),
    { keepCase: true, defaults: true });
  const { CatalogService } = grpc.loadPackageDefinition(def).catalog;
  const client = new CatalogService(target, grpc.credentials.createInsecure(), {
    'grpc.service_config': JSON.stringify(SERVICE_CONFIG),
  });

  // 1. A lookup with a deadline, and the snapshot version from the trailer.
  let r = await call(client, 'ValidateVariant', { organization_id: ORG, variant_id: VARIANT },
    { waitForReady: true });
  const version = r.trailers.get('x-catalog-snapshot-version')[0];
  console.log(`validate: exists=${r.resp.exists} active=${r.resp.is_active} ` +
    `price=${r.resp.price.toFixed(2)} snapshot=${version}`);

  // 2. "Not found" is an answer (OK), not an error.
  r = await call(client, 'ValidateVariant', { organization_id: ORG, variant_id: UNKNOWN });
  console.log(`unknown: exists=${r.resp.exists} message=${r.resp.message}`);

  // 3. Batching: one call for many ids (at most MAX_BATCH_IDS, default 1000).
  r = await call(client, 'GetVariantsBatch', { organization_id: ORG, variant_ids: [VARIANT, UNKNOWN] });
  console.log(`batch: found=${r.resp.variants.length} not_found=${r.resp.not_found_ids.join(',')}`);

  // 4. A product with its variants.
  r = await call(client, 'GetProductDetails',
    { organization_id: ORG, product_id: PRODUCT, include_variants: true });
  console.log(`product: success=${r.resp.success} variants=${r.resp.product.variants.length}`);

  // 5. A bad request: INVALID_ARGUMENT names the field; do not retry it.
  try {
    await call(client, 'ValidateVariant', { organization_id: ORG, variant_id: 'not-a-uuid' });
    console.log('bad-request: unexpectedly OK');
  } catch (err) {
    const name = Object.keys(grpc.status).find((k) => grpc.status[k] === err.code);
    console.log(`bad-request: ${name} ${classify(err)}`);
  }
  client.close();
}

if (process.argv.length !== 4) {
  console.error('usage: node catalog_client.js TARGET PROTO_DIR');
  process.exit(2);
}
main(process.argv[2], process.argv[3]).catch((err) => {
  console.error(`failed: ${err.code} ${err.message}`);
  process.exit(1);
});
