#!/usr/bin/env bash
# Tests the alert rules helm/catalogd/alerts/catalogd.rules.yaml:
#   1. promtool check rules (syntax, PromQL);
#   2. promtool test rules tests/alerts/*.test.yaml: each alert fires on its
#      fault and stays quiet on a near-miss;
#   3. the thresholds written in the rules file ("N # threshold: NAME") are
#      exactly helm/catalogd/values.yaml's alerts.thresholds (so the unit tests
#      test the chart's defaults), and every runbook_url names a heading of
#      docs/operations.md's "## Alerts".
# Exit: 0 passed, 1 failed, 77 skipped (no promtool: Debian package prometheus).
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
RULES=$REPO/helm/catalogd/alerts/catalogd.rules.yaml
PROMTOOL=${PROMTOOL:-$(command -v promtool || true)}
if [ -z "$PROMTOOL" ]; then
  echo "alerts: SKIP: promtool not found (Debian package prometheus)" >&2
  exit 77
fi
failed=0
timeout 60 "$PROMTOOL" check rules "$RULES" || failed=1
for t in "$HERE"/*.test.yaml; do
  (cd "$HERE" && timeout 120 "$PROMTOOL" test rules "$(basename "$t")") || failed=1
done
/usr/bin/python3 "$HERE/check_rules_doc.py" "$RULES" "$REPO/helm/catalogd/values.yaml" \
  "$REPO/docs/operations.md" || failed=1
[ "$failed" -eq 0 ] && echo "alerts: all passed" || echo "alerts: FAILED"
exit "$failed"
