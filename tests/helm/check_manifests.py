#!/usr/bin/python3
"""Checks the catalogd Helm chart's rendered manifests and its static files.

  check_manifests.py manifests RENDERED.yaml --probe grpc|http [--enabled a,b,...]
                     [--grace SECONDS] [--secret-env A,B,...]
      RENDERED.yaml is `helm template` output. --enabled lists the optional
      parts expected in it: hpa, servicemonitor, dashboard, headless, tls,
      mtls, podannotations, nofeed (the change feed turned off: no KAFKA_*).
      Every part not listed must be absent. --grace: the exact
      terminationGracePeriodSeconds expected. --secret-env: variables that
      must come from a secretKeyRef.
  check_manifests.py static CHART_DIR
      values.yaml has a comment above every field, README.md's table lists
      every field, dashboards/catalogd.json is a valid dashboard of the
      service's metrics.

Needs the `yaml` module (Debian: python3-yaml). Without it: exit 77 (skip).
Exit 0 when every check passes, 1 when any fails, 2 on bad usage.
"""

import argparse
import json
import os
import re
import sys

try:
    import yaml
except ImportError:
    print('check_manifests: SKIP: python module yaml is missing '
          '(install the Debian package python3-yaml)', file=sys.stderr)
    sys.exit(77)

HEALTH_SERVICE = 'catalog.CatalogService'
# catalogd's own shutdown tail after the grace: up to 5 s for the gRPC core
# once calls are cancelled, up to 5 s to flush the dead-letter producer
# (src/grpc/server.c server_stop, sync/consumer.c consumer_destroy).
SHUTDOWN_TAIL_S = 10
OPTIONAL = ('hpa', 'servicemonitor', 'dashboard', 'headless', 'tls', 'mtls',
            'podannotations', 'nofeed', 'alerts', 'checkpoint', 'pvc', 'peers', 'netpol')
# Metric names catalogd exports (the dashboard may use only these).
METRICS = {
    'catalogd_rpc_requests_total', 'catalogd_rpc_duration_seconds_bucket',
    'catalogd_rpc_duration_seconds_sum', 'catalogd_rpc_duration_seconds_count',
    'catalogd_rpc_in_flight', 'catalogd_snapshot_version',
    'catalogd_snapshot_age_seconds', 'catalogd_snapshot_entities',
    'catalogd_snapshot_publish_duration_seconds_bucket',
    'catalogd_snapshot_publish_duration_seconds_sum',
    'catalogd_snapshot_publish_duration_seconds_count',
    'catalogd_events_total', 'catalogd_consumer_lag_messages',
    'catalogd_last_event_age_seconds', 'catalogd_warm_load_rows_total',
    'catalogd_warm_load_duration_seconds', 'process_resident_memory_bytes',
}


class Checker:
    def __init__(self, label):
        self.label = label
        self.passed = 0
        self.failed = 0

    def check(self, cond, what):
        if cond:
            self.passed += 1
        else:
            self.failed += 1
            print(f'FAIL [{self.label}] {what}')
        return bool(cond)

    def finish(self):
        print(f'check_manifests [{self.label}]: {self.passed} passed, '
              f'{self.failed} failed')
        return 0 if self.failed == 0 else 1


def matches(selector, labels):
    """True when every selector label is on `labels` (and there is one)."""
    return bool(selector) and all(labels.get(k) == v
                                  for k, v in selector.items())


def env_map(container):
    out = {}
    for e in container.get('env') or []:
        out[e['name']] = e  # last wins, as in Kubernetes
    return out


def env_value(env, name):
    e = env.get(name)
    return None if e is None or 'value' not in e else str(e['value'])


def check_peers(c, by_kind, pod, peers, pod_labels, enabled):
    """Checkpoint volume, peer bootstrap and the NetworkPolicy: present (and wired)
    only when enabled."""
    cont = [x for x in pod['containers'] if x['name'] == 'catalogd'][0]
    env = env_map(cont)
    vols = {v['name']: v for v in pod.get('volumes') or []}
    mounts = {m['name']: m for m in cont.get('volumeMounts') or []}
    if 'checkpoint' in enabled:
        v = vols.get('checkpoints') or {}
        want = 'persistentVolumeClaim' if 'pvc' in enabled else 'emptyDir'
        c.check(want in v, f'checkpoint volume is a {want}')
        c.check('checkpoints' in mounts and env_value(env, 'CHECKPOINT_DIR') ==
                mounts['checkpoints']['mountPath'], 'CHECKPOINT_DIR is the mounted volume')
    else:
        c.check('checkpoints' not in vols and 'CHECKPOINT_DIR' not in env,
                'no checkpoint volume nor CHECKPOINT_DIR')
    if 'peers' in enabled:
        ok = len(peers) == 1 and matches(peers[0]['spec'].get('selector'), pod_labels)
        c.check(ok and [p['name'] for p in peers[0]['spec']['ports']] == ['admin'] and
                not peers[0]['spec'].get('publishNotReadyAddresses'),
                'peers: a headless Service on the admin port, ready pods only')
        c.check(env_value(env, 'SNAPSHOT_SERVE') == 'true', 'SNAPSHOT_SERVE=true')
        bp = env_value(env, 'BOOTSTRAP_PEERS') or ''
        c.check(ok and bp.startswith(peers[0]['metadata']['name'] + '.') and bp.endswith(':9090'),
                f'BOOTSTRAP_PEERS names the peers Service and the admin port (got {bp!r})')
    else:
        c.check(not peers and 'SNAPSHOT_SERVE' not in env and 'BOOTSTRAP_PEERS' not in env,
                'no peers Service, SNAPSHOT_SERVE nor BOOTSTRAP_PEERS')
    nps = by_kind.get('NetworkPolicy', [])
    if 'netpol' in enabled:
        if c.check(len(nps) == 1, 'one NetworkPolicy'):
            spec = nps[0]['spec']
            c.check(matches(spec['podSelector'].get('matchLabels'), pod_labels),
                    'NetworkPolicy selects the pods')
            admin = [r for r in spec.get('ingress') or []
                     if any(p.get('port') == 'admin' for p in r.get('ports') or [])]
            froms = admin[0].get('from') if len(admin) == 1 else None
            c.check(bool(froms), 'the admin port is limited to named sources')
            own = [f for f in froms or [] if 'podSelector' in f and 'namespaceSelector' not in f]
            c.check(len(own) == 1 and matches(own[0]['podSelector'].get('matchLabels'), pod_labels),
                    "the admin port admits the release's own pods")
            c.check(len(froms or []) == 2, 'the admin port admits the scraper and nothing else')
    else:
        c.check(not nps, 'no NetworkPolicy')


def check_manifests(path, probe_mode, enabled, grace_expected=None, secret_env=()):
    c = Checker(os.path.basename(path))
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    by_kind = {}
    seen = set()
    for d in docs:
        ok = c.check(d.get('apiVersion') and d.get('kind') and
                     (d.get('metadata') or {}).get('name'),
                     f'document without apiVersion/kind/metadata.name: {str(d)[:80]}')
        if not ok:
            continue
        key = (d['kind'], d['metadata'].get('namespace'), d['metadata']['name'])
        c.check(key not in seen, f'duplicate object {key}')
        seen.add(key)
        by_kind.setdefault(d['kind'], []).append(d)

    deps = by_kind.get('Deployment', [])
    if not c.check(len(deps) == 1, f'exactly one Deployment (got {len(deps)})'):
        return c.finish()
    dep = deps[0]
    tmpl = dep['spec']['template']
    pod = tmpl['spec']
    pod_labels = tmpl['metadata'].get('labels') or {}
    c.check(matches(dep['spec']['selector']['matchLabels'], pod_labels),
            'Deployment selector matches its pod labels')
    conts = [x for x in pod['containers'] if x['name'] == 'catalogd']
    if not c.check(len(conts) == 1, 'one container named catalogd'):
        return c.finish()
    ct = conts[0]
    env = env_map(ct)

    # --- ports ---------------------------------------------------------
    ports = {p['name']: p['containerPort'] for p in ct.get('ports') or []}
    grpc_port = int(env_value(env, 'GRPC_PORT') or -1)
    admin_port = int(env_value(env, 'ADMIN_PORT') or -1)
    c.check(grpc_port == 50052, f'GRPC_PORT is 50052 (got {grpc_port})')
    c.check(admin_port == 9090, f'ADMIN_PORT is 9090 (got {admin_port})')
    c.check(ports.get('grpc') == grpc_port, 'container port grpc = GRPC_PORT')
    c.check(ports.get('admin') == admin_port, 'container port admin = ADMIN_PORT')

    # --- security context ----------------------------------------------
    psc = pod.get('securityContext') or {}
    csc = ct.get('securityContext') or {}
    c.check(psc.get('runAsNonRoot') is True, 'pod runAsNonRoot: true')
    c.check(csc.get('runAsNonRoot') in (True, None) and
            (csc.get('runAsNonRoot') or psc.get('runAsNonRoot')) is True,
            'container runs as non-root')
    uid = csc.get('runAsUser', psc.get('runAsUser'))
    c.check(isinstance(uid, int) and uid > 0, f'numeric non-zero runAsUser (got {uid})')
    c.check((psc.get('seccompProfile') or {}).get('type') == 'RuntimeDefault' or
            (csc.get('seccompProfile') or {}).get('type') == 'RuntimeDefault',
            'seccompProfile RuntimeDefault')
    c.check(csc.get('readOnlyRootFilesystem') is True, 'readOnlyRootFilesystem: true')
    c.check(csc.get('allowPrivilegeEscalation') is False,
            'allowPrivilegeEscalation: false')
    c.check(csc.get('privileged') in (None, False), 'not privileged')
    c.check('ALL' in ((csc.get('capabilities') or {}).get('drop') or []),
            'capabilities drop ALL')
    c.check(not (csc.get('capabilities') or {}).get('add'), 'no capabilities added')
    c.check(pod.get('automountServiceAccountToken') is False,
            'no service account token mounted')

    # --- volumes ---------------------------------------------------------
    vols = {v['name']: v for v in pod.get('volumes') or []}
    mounts = {m['mountPath']: m for m in ct.get('volumeMounts') or []}
    tmp = mounts.get('/tmp')
    c.check(tmp is not None and 'emptyDir' in vols.get(tmp['name'], {}),
            '/tmp is an emptyDir')
    for m in mounts.values():
        c.check(m['name'] in vols, f'volumeMount {m["name"]} has a volume')
        c.check('subPath' not in m or m['name'] == 'tmp',
                f'volumeMount {m["name"]} has no subPath (Secret updates must reach the pod)')

    def secret_mount_of(file_path):
        """The Secret volume mounted at the directory holding file_path."""
        d = os.path.dirname(file_path or '')
        m = mounts.get(d)
        if not m:
            return None
        return (vols.get(m['name']) or {}).get('secret')

    # --- secrets -----------------------------------------------------------
    sync_mode = env_value(env, 'SYNC_MODE')
    c.check(sync_mode in ('warm', 'replay'), f'SYNC_MODE warm|replay (got {sync_mode})')
    db = env.get('DATABASE_URL')
    if sync_mode == 'warm':
        ref = ((db or {}).get('valueFrom') or {}).get('secretKeyRef') or {}
        c.check(db is not None and 'value' not in db and ref.get('name') and ref.get('key'),
                'DATABASE_URL comes from a Secret (secretKeyRef name+key)')
    else:
        c.check(db is None, 'replay mode: DATABASE_URL not set')
    for name, e in env.items():
        if re.search(r'PASSWORD|SECRET|DATABASE_URL|TOKEN|CREDENTIAL|JAAS|KEY_PEM|PRIVATE',
                     name):
            c.check('value' not in e, f'{name} is not a plain value in the manifest')
    for name in secret_env:
        ref = ((env.get(name) or {}).get('valueFrom') or {}).get('secretKeyRef') or {}
        c.check(ref.get('name') and ref.get('key'), f'{name} is set from a secretKeyRef')
    for name in ('KAFKA_SASL_PASSWORD', 'KAFKA_SASL_USERNAME'):
        if name in env:
            ref = (env[name].get('valueFrom') or {}).get('secretKeyRef') or {}
            c.check(ref.get('name') and ref.get('key'), f'{name} from secretKeyRef')
    # The change feed: required, unless turned off on purpose (then nothing of it).
    if 'nofeed' in enabled:
        c.check(sync_mode == 'warm', 'feed off: warm mode')
        c.check(not [n for n in env if n.startswith('KAFKA_')], 'feed off: no KAFKA_* variable')
    else:
        c.check(env_value(env, 'KAFKA_BOOTSTRAP_SERVERS'),
                'KAFKA_BOOTSTRAP_SERVERS set (the change feed)')
        c.check(env_value(env, 'KAFKA_TOPIC'), 'KAFKA_TOPIC set')
    # A Service named kafka would inject KAFKA_SERVICE_HOST, KAFKA_PORT_... (#10).
    c.check(pod.get('enableServiceLinks') is False, 'enableServiceLinks: false')
    for name in ('KAFKA_SSL_CA_LOCATION', 'KAFKA_SSL_CERTIFICATE_LOCATION',
                 'KAFKA_SSL_KEY_LOCATION'):
        if name in env:
            c.check(secret_mount_of(env_value(env, name)),
                    f'{name} points into a mounted Secret')

    # --- TLS ---------------------------------------------------------------
    tls_env = {n for n in env if n.startswith('GRPC_TLS_')}
    if 'tls' in enabled:
        for n in ('GRPC_TLS_CERT_FILE', 'GRPC_TLS_KEY_FILE'):
            c.check(secret_mount_of(env_value(env, n)),
                    f'{n} points into a mounted Secret')
        if 'mtls' in enabled:
            c.check(secret_mount_of(env_value(env, 'GRPC_TLS_CLIENT_CA_FILE')),
                    'GRPC_TLS_CLIENT_CA_FILE points into a mounted Secret')
        else:
            c.check('GRPC_TLS_CLIENT_CA_FILE' not in env, 'no client CA without mTLS')
    else:
        c.check(not tls_env, f'no GRPC_TLS_* without TLS (got {sorted(tls_env)})')

    # --- shutdown ------------------------------------------------------------
    grace = int(env_value(env, 'SHUTDOWN_GRACE_SECONDS') or 10)
    tgps = pod.get('terminationGracePeriodSeconds')
    pre = 0
    cmd = ((((ct.get('lifecycle') or {}).get('preStop') or {}).get('exec') or {})
           .get('command') or [])
    if len(cmd) == 2 and cmd[0].endswith('sleep'):
        pre = int(cmd[1])
    c.check(isinstance(tgps, int) and tgps > grace,
            f'terminationGracePeriodSeconds ({tgps}) > SHUTDOWN_GRACE_SECONDS ({grace})')
    drain = -(-int(env_value(env, 'SHUTDOWN_DRAIN_MS') or 5000) // 1000)
    worst = pre + drain + grace + SHUTDOWN_TAIL_S
    c.check(isinstance(tgps, int) and tgps > worst,
            f'terminationGracePeriodSeconds ({tgps}) > worst-case shutdown: preStop + '
            f'SHUTDOWN_DRAIN_MS rounded up + grace + tail ({pre}+{drain}+{grace}+'
            f'{SHUTDOWN_TAIL_S} = {worst})')
    if grace_expected is not None:
        c.check(tgps == grace_expected,
                f'terminationGracePeriodSeconds is the documented {grace_expected} (got {tgps})')

    # --- probes --------------------------------------------------------------
    for kind in ('startupProbe', 'readinessProbe', 'livenessProbe'):
        p = ct.get(kind)
        if not c.check(p, f'{kind} present'):
            continue
        if probe_mode == 'grpc':
            g = p.get('grpc')
            if not c.check(g and 'httpGet' not in p and 'exec' not in p,
                           f'{kind} is a native gRPC probe'):
                continue
            c.check(g.get('port') == grpc_port,
                    f'{kind} on the gRPC port {grpc_port} (got {g.get("port")})')
            c.check('service' in g, f'{kind} names a health service')
            want = ('', HEALTH_SERVICE) if kind == 'livenessProbe' else (HEALTH_SERVICE,)
            c.check(g.get('service') in want,
                    f'{kind} service in {want} (got {g.get("service")!r})')
        else:
            h = p.get('httpGet')
            if not c.check(h and 'grpc' not in p, f'{kind} is an HTTP probe'):
                continue
            c.check(h.get('port') in ('admin', admin_port),
                    f'{kind} on the admin port (got {h.get("port")})')
            want = '/healthz' if kind == 'livenessProbe' else '/readyz'
            c.check(h.get('path') == want, f'{kind} path {want} (got {h.get("path")})')
        if kind != 'readinessProbe':
            c.check(p.get('successThreshold', 1) == 1, f'{kind} successThreshold 1')
    sp = ct.get('startupProbe') or {}
    budget = sp.get('failureThreshold', 3) * sp.get('periodSeconds', 10)
    c.check(budget >= 300, f'startup probe allows >= 5 minutes to load (got {budget}s)')

    # --- scheduling ----------------------------------------------------------
    tsc = pod.get('topologySpreadConstraints') or []
    c.check(tsc, 'topologySpreadConstraints present')
    c.check(any(t.get('topologyKey') == 'kubernetes.io/hostname' and
                matches((t.get('labelSelector') or {}).get('matchLabels'), pod_labels)
                for t in tsc), 'spread across nodes, selecting these pods')
    ann = tmpl['metadata'].get('annotations') or {}
    if 'podannotations' in enabled:
        c.check(ann.get('prometheus.io/scrape') == 'true' and
                str(ann.get('prometheus.io/port')) == str(admin_port) and
                ann.get('prometheus.io/path') == '/metrics',
                'Prometheus scrape annotations on the pods')
    else:
        c.check('prometheus.io/scrape' not in ann, 'no Prometheus scrape annotations')
    sa = pod.get('serviceAccountName')
    if sa and sa != 'default':
        c.check(any(s['metadata']['name'] == sa for s in by_kind.get('ServiceAccount', [])),
                f'ServiceAccount {sa} is rendered')

    # --- services ------------------------------------------------------------
    def resolve(target):
        return ports.get(target) if isinstance(target, str) else target

    svcs = by_kind.get('Service', [])
    main = [s for s in svcs if s['spec'].get('clusterIP') != 'None']
    headless = [s for s in svcs if s['spec'].get('clusterIP') == 'None'
                and any(p['name'] == 'grpc' for p in s['spec']['ports'])]
    peers = [s for s in svcs if s['spec'].get('clusterIP') == 'None' and s not in headless]
    if c.check(len(main) == 1, f'one ClusterIP Service (got {len(main)})'):
        s = main[0]
        c.check(matches(s['spec'].get('selector'), pod_labels),
                'Service selects the pods')
        sp = {p['name']: p for p in s['spec'].get('ports') or []}
        g = sp.get('grpc') or {}
        c.check(g.get('port') == 50052 and resolve(g.get('targetPort')) == grpc_port,
                'Service port grpc 50052 -> gRPC container port')
        c.check(g.get('appProtocol') == 'grpc', 'Service grpc port has appProtocol grpc')
        m = sp.get('metrics') or {}
        c.check(m.get('port') == 9090 and resolve(m.get('targetPort')) == admin_port,
                'Service port metrics 9090 -> admin container port')
    if 'headless' in enabled:
        c.check(len(headless) == 1 and matches(headless[0]['spec'].get('selector'), pod_labels)
                and any(p['name'] == 'grpc' for p in headless[0]['spec']['ports']),
                'headless Service with the grpc port')
    else:
        c.check(not headless, 'no headless Service')
    check_peers(c, by_kind, pod, peers, pod_labels, enabled)

    # --- PDB -----------------------------------------------------------------
    pdbs = by_kind.get('PodDisruptionBudget', [])
    if c.check(len(pdbs) == 1, 'one PodDisruptionBudget'):
        spec = pdbs[0]['spec']
        c.check(matches(spec['selector']['matchLabels'], pod_labels), 'PDB selects the pods')
        c.check(('minAvailable' in spec) != ('maxUnavailable' in spec),
                'PDB sets exactly one of minAvailable/maxUnavailable')

    # --- HPA -----------------------------------------------------------------
    hpas = by_kind.get('HorizontalPodAutoscaler', [])
    if 'hpa' in enabled:
        if c.check(len(hpas) == 1, 'HPA present when enabled'):
            ref = hpas[0]['spec']['scaleTargetRef']
            c.check(ref.get('kind') == 'Deployment' and
                    ref.get('name') == dep['metadata']['name'], 'HPA targets the Deployment')
            c.check(hpas[0]['spec']['minReplicas'] <= hpas[0]['spec']['maxReplicas'],
                    'HPA minReplicas <= maxReplicas')
        c.check('replicas' not in dep['spec'], 'Deployment leaves replicas to the HPA')
    else:
        c.check(not hpas, 'no HPA when disabled')
        c.check(isinstance(dep['spec'].get('replicas'), int), 'Deployment sets replicas')

    # --- ServiceMonitor ------------------------------------------------------
    sms = by_kind.get('ServiceMonitor', [])
    if 'servicemonitor' in enabled:
        if c.check(len(sms) == 1, 'ServiceMonitor present when enabled'):
            sm = sms[0]['spec']
            sel = sm['selector']['matchLabels']
            eps = [e.get('port') for e in sm.get('endpoints') or []]
            c.check(any(matches(sel, s['metadata'].get('labels') or {}) and
                        any(p['name'] in eps for p in s['spec']['ports']) for s in main),
                    'ServiceMonitor selects the Service and its metrics port')
            c.check(all(e.get('path', '/metrics') == '/metrics' for e in sm['endpoints']),
                    'ServiceMonitor scrapes /metrics')
    else:
        c.check(not sms, 'no ServiceMonitor when disabled')

    # --- dashboard -----------------------------------------------------------
    cms = [m for m in by_kind.get('ConfigMap', [])
           if (m['metadata'].get('labels') or {}).get('grafana_dashboard') is not None]
    if 'dashboard' in enabled:
        if c.check(len(cms) == 1, 'dashboard ConfigMap present when enabled'):
            cm = cms[0]
            c.check(cm['metadata']['labels']['grafana_dashboard'] == '1',
                    'dashboard ConfigMap has label grafana_dashboard: "1"')
            data = cm.get('data') or {}
            c.check(len(data) == 1, 'dashboard ConfigMap holds one file')
            for k, v in data.items():
                c.check(k.endswith('.json'), f'dashboard file {k} ends in .json')
                try:
                    dash = json.loads(v)
                    c.check(dash.get('uid') == 'catalogd' and dash.get('panels'),
                            'dashboard JSON in the ConfigMap parses and has panels')
                except ValueError as e:
                    c.check(False, f'dashboard JSON in the ConfigMap parses: {e}')
    else:
        c.check(not cms, 'no dashboard ConfigMap when disabled')

    # --- PrometheusRule ------------------------------------------------------
    prs = by_kind.get('PrometheusRule', [])
    if 'alerts' in enabled:
        if c.check(len(prs) == 1, 'PrometheusRule present when enabled'):
            ns = dep['metadata'].get('namespace')
            rules = [r for g in prs[0]['spec']['groups'] for r in g['rules']]
            c.check(rules, 'PrometheusRule has rules')
            for r in rules:
                e = r.get('expr', '')
                c.check('pod=~".+"' not in e and f'namespace="{ns}"' in e,
                        f'{r.get("alert")}: scoped to the release namespace {ns} and its pods')
                c.check((r.get('annotations') or {}).get('runbook_url'),
                        f'{r.get("alert")} has a runbook_url')
    else:
        c.check(not prs, 'no PrometheusRule when disabled')

    # --- every object carries the release labels --------------------------
    for d in docs:
        labels = d['metadata'].get('labels') or {}
        c.check(labels.get('app.kubernetes.io/name') and
                labels.get('app.kubernetes.io/instance'),
                f'{d["kind"]}/{d["metadata"]["name"]} has the standard labels')
    return c.finish()


def flatten(values, prefix=''):
    """Leaf paths of values.yaml: scalars, lists and empty maps."""
    out = []
    for k, v in values.items():
        path = f'{prefix}{k}'
        if isinstance(v, dict) and v:
            out.extend(flatten(v, path + '.'))
        else:
            out.append(path)
    return out


def check_values_doc(c, path):
    """Every `key:` line of values.yaml has a comment line right above it."""
    prev = ''
    in_list_item_indent = None
    with open(path) as f:
        for n, raw in enumerate(f, 1):
            line = raw.rstrip('\n')
            s = line.strip()
            if not s:
                prev = ''
                continue
            indent = len(line) - len(line.lstrip())
            if in_list_item_indent is not None and indent <= in_list_item_indent \
                    and not s.startswith('-'):
                in_list_item_indent = None
            if s.startswith('#'):
                prev = s
                continue
            if s.startswith('-'):
                if in_list_item_indent is None:
                    in_list_item_indent = indent - 1
                prev = s
                continue
            if re.match(r'^[A-Za-z0-9_."/-]+:(\s|$)', s) and in_list_item_indent is None:
                c.check(prev.startswith('#'),
                        f'values.yaml:{n}: field {s.split(":")[0]} has a comment above it')
            prev = s


def check_dashboard(c, path):
    try:
        with open(path) as f:
            dash = json.load(f)
    except ValueError as e:
        c.check(False, f'{path} parses as JSON: {e}')
        return
    c.check(True, 'dashboard JSON parses')
    tvars = (dash.get('templating') or {}).get('list') or []
    dsvars = [v for v in tvars if v.get('type') == 'datasource' and v.get('query') == 'prometheus']
    c.check(len(dsvars) == 1, 'dashboard has one Prometheus datasource variable')
    dsname = dsvars[0]['name'] if dsvars else None
    panels = [p for p in dash.get('panels') or [] if p.get('type') != 'row']
    ids = [p.get('id') for p in dash.get('panels') or []]
    c.check(len(ids) == len(set(ids)), 'panel ids are unique')
    exprs = []
    for p in panels:
        c.check((p.get('datasource') or {}).get('uid') == f'${{{dsname}}}',
                f'panel {p.get("title")!r} uses the datasource variable')
        g = p.get('gridPos') or {}
        c.check(g.get('x', 0) + g.get('w', 0) <= 24, f'panel {p.get("title")!r} fits the grid')
        for t in p.get('targets') or []:
            e = t.get('expr', '')
            c.check(e, f'panel {p.get("title")!r} target has an expr')
            exprs.append((p.get('title', ''), e))
            for name in re.findall(r'\b((?:catalogd|process)_[a-z_]+)\b', e):
                c.check(name in METRICS, f'panel {p.get("title")!r}: {name} is a catalogd metric')
            c.check(e.count('(') == e.count(')'), f'panel {p.get("title")!r}: balanced parentheses')
            for v in re.findall(r'\$(\w+)', e):
                c.check(v.startswith('__') or v in {x['name'] for x in tvars},
                        f'panel {p.get("title")!r}: variable ${v} is defined')

    def has(pred, what):
        c.check(any(pred(t, e) for t, e in exprs), f'dashboard shows {what}')
    has(lambda t, e: 'rate(catalogd_rpc_requests_total' in e and 'by (method)' in e,
        'RPC rate by method')
    for q in ('0.5', '0.99'):
        has(lambda t, e, q=q: f'histogram_quantile({q},' in e and
            'catalogd_rpc_duration_seconds_bucket' in e and 'method' in e,
            f'p{q[2:] or "50"} latency by method')
    has(lambda t, e: 'catalogd_rpc_requests_total' in e and 'code!="OK"' in e,
        'error rate (non-OK codes)')
    has(lambda t, e: 'catalogd_snapshot_age_seconds' in e, 'snapshot age')
    has(lambda t, e: 'catalogd_consumer_lag_messages' in e, 'consumer lag')
    has(lambda t, e: 'rate(catalogd_events_total' in e and 'by (result)' in e,
        'events/s by result')


def check_static(chart):
    c = Checker('static')
    values_path = os.path.join(chart, 'values.yaml')
    with open(values_path) as f:
        values = yaml.safe_load(f)
    check_values_doc(c, values_path)
    with open(os.path.join(chart, 'README.md')) as f:
        readme = f.read()
    rows = set(re.findall(r'^\|\s*`([^`]+)`\s*\|', readme, re.M))
    for path in flatten(values):
        c.check(path in rows, f'README.md values table lists `{path}`')
    leaves = set(flatten(values))
    for r in sorted(rows - leaves):
        c.check(False, f'README.md lists `{r}`, which values.yaml does not have')
    check_dashboard(c, os.path.join(chart, 'dashboards', 'catalogd.json'))
    return c.finish()


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest='cmd', required=True)
    m = sub.add_parser('manifests')
    m.add_argument('rendered')
    m.add_argument('--probe', choices=('grpc', 'http'), required=True)
    m.add_argument('--enabled', default='')
    m.add_argument('--grace', type=int, default=None,
                   help='the terminationGracePeriodSeconds expected exactly')
    m.add_argument('--secret-env', default='',
                   help='variables that must be set from a secretKeyRef, comma-separated')
    s = sub.add_parser('static')
    s.add_argument('chart')
    a = ap.parse_args()
    if a.cmd == 'static':
        return check_static(a.chart)
    enabled = {x for x in a.enabled.split(',') if x}
    bad = enabled - set(OPTIONAL)
    if bad:
        ap.error(f'unknown --enabled parts: {sorted(bad)} (known: {OPTIONAL})')
    return check_manifests(a.rendered, a.probe, enabled, a.grace,
                           [x for x in a.secret_env.split(',') if x])


if __name__ == '__main__':
    sys.exit(main())
