#!/usr/bin/python3
"""Checks that the alert rules, the chart's values and the runbooks agree.

  check_rules_doc.py RULES.yaml VALUES.yaml OPERATIONS.md

* every "N # threshold: NAME" in the rules has NAME in values.yaml's
  alerts.thresholds with the same number, and every threshold there is used;
* every alert has a runbook_url "docs/operations.md#<anchor>" whose heading
  exists under "## Alerts" in docs/operations.md, and every alert heading
  there names an alert.
Exit 0 when all agree, 1 otherwise; 77 without the yaml module.
"""
import re
import sys

try:
    import yaml
except ImportError:
    print('check_rules_doc: SKIP: python module yaml is missing', file=sys.stderr)
    sys.exit(77)


def anchor(heading):
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r'[^a-z0-9 _-]', '', heading.strip().lower()).replace(' ', '-')


def main(rules_path, values_path, doc_path):
    errors = []
    with open(rules_path) as f:
        rules = yaml.safe_load(f)
    with open(values_path) as f:
        thresholds = ((yaml.safe_load(f) or {}).get('alerts') or {}).get('thresholds') or {}
    with open(doc_path) as f:
        doc = f.read()
    alerts_doc = doc[doc.index('\n## Alerts'):] if '\n## Alerts' in doc else ''
    alerts_doc = re.split(r'\n## (?!Alerts)', alerts_doc)[0]
    headings = {anchor(h): h for h in re.findall(r'^### (.+)$', alerts_doc, re.M)}
    used = set()
    names = set()
    for g in rules['groups']:
        for r in g['rules']:
            name = r['alert']
            names.add(name)
            for num, key in re.findall(r'([0-9.]+) # threshold: (\w+)', r['expr']):
                used.add(key)
                if key not in thresholds:
                    errors.append(f'{name}: threshold {key} is not in values.yaml alerts.thresholds')
                elif float(num) != float(thresholds[key]):
                    errors.append(f'{name}: threshold {key} is {num} in the rules, '
                                  f'{thresholds[key]} in values.yaml')
            url = (r.get('annotations') or {}).get('runbook_url', '')
            m = re.fullmatch(r'docs/operations\.md#([a-z0-9_-]+)', url)
            if not m:
                errors.append(f'{name}: runbook_url {url!r} is not docs/operations.md#<anchor>')
            elif m.group(1) not in headings:
                errors.append(f'{name}: runbook {url} has no "### " heading under '
                              f'"## Alerts" in docs/operations.md')
            elif headings[m.group(1)].strip() != name:
                errors.append(f'{name}: its runbook heading is {headings[m.group(1)]!r}')
    for key in sorted(set(thresholds) - used):
        errors.append(f'values.yaml alerts.thresholds.{key} is used by no rule')
    for h in sorted(set(v.strip() for v in headings.values()) - names):
        errors.append(f'docs/operations.md runbook "### {h}" names no alert')
    for e in errors:
        print('FAIL', e)
    print(f'check_rules_doc: {len(names)} alerts, {len(used)} thresholds, '
          f'{len(errors)} problems')
    return 1 if errors else 0


if __name__ == '__main__':
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    sys.exit(main(*sys.argv[1:]))
