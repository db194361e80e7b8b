// Validates rendered manifests against the Kubernetes (and Prometheus
// Operator) OpenAPI schemas shipped by the npm package kubernetes-models.
// Run by tests/helm/run.sh from a directory whose node_modules holds
// kubernetes-models, @kubernetes-models/prometheus-operator and js-yaml.
//   node validate_schema.mjs RENDERED.yaml...
// Exit 0 when every object validates, 1 otherwise.
import fs from 'node:fs';
import * as yaml from 'js-yaml';
import { Deployment } from 'kubernetes-models/apps/v1';
import { ConfigMap, Service, ServiceAccount } from 'kubernetes-models/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2';
import { PrometheusRule, ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';

const models = {
  'apps/v1/Deployment': Deployment,
  'v1/ConfigMap': ConfigMap,
  'v1/Service': Service,
  'v1/ServiceAccount': ServiceAccount,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'monitoring.coreos.com/v1/ServiceMonitor': ServiceMonitor,
  'monitoring.coreos.com/v1/PrometheusRule': PrometheusRule,
};

let passed = 0;
let failed = 0;
for (const file of process.argv.slice(2)) {
  for (const doc of yaml.loadAll(fs.readFileSync(file, 'utf8'))) {
    if (!doc) continue;
    const what = `${file}: ${doc.kind}/${doc.metadata?.name}`;
    const Model = models[`${doc.apiVersion}/${doc.kind}`];
    if (!Model) {
      failed++;
      console.log(`FAIL ${what}: no schema for ${doc.apiVersion} ${doc.kind} (add it here)`);
      continue;
    }
    try {
      new Model(doc).validate();
      passed++;
    } catch (e) {
      failed++;
      console.log(`FAIL ${what}: ${String(e.message).slice(0, 2000)}`);
    }
  }
}
console.log(`validate_schema: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
