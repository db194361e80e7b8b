#!/usr/bin/python3
"""Every warning or error an operator can see is documented.

Scans the service's C sources (src/, sync/) for the messages of log_warn() and
log_error() calls and for the condition names passed to conditions_set(), and
fails naming each one that docs/operations.md does not mention verbatim (in
backticks). A new log line or condition without a row in the troubleshooting
table is a test failure, not a doc debt.
"""
import os
import re
import unittest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir, os.pardir))
DOC = os.path.join(REPO, 'docs', 'operations.md')
STR = r'"(?:[^"\\]|\\.)*"'
# The message: one literal (adjacent literals concatenated), or both arms of a ternary.
LOG_CALL = re.compile(r'\blog_(warn|error)\(\s*((?:%s\s*)+)' % STR, re.S)
LOG_TERNARY = re.compile(r'\blog_(warn|error)\(\s*[^,"();]*\?\s*((?:%s\s*)+):\s*((?:%s\s*)+)' % (STR, STR), re.S)
COND_CALL = re.compile(r'\bconditions_set\([^,]+,\s*"((?:[^"\\]|\\.)*)"', re.S)


def sources():
    for top in ('src', 'sync'):
        for root, _, files in os.walk(os.path.join(REPO, top)):
            for f in sorted(files):
                if f.endswith('.c'):
                    yield os.path.join(root, f)


def read(path):
    with open(path, encoding='utf-8') as f:
        return f.read()


def troubleshooting():
    """The troubleshooting section of docs/operations.md."""
    doc = read(DOC)
    return doc[doc.index('## Troubleshooting'):doc.index('## Fault matrix')]


def joined(literals):
    """The text of adjacent C string literals ("a " "b" -> 'a b')."""
    return ''.join(re.findall(r'"((?:[^"\\]|\\.)*)"', literals))


def found():
    """{(kind, text): first file:line} for every operator-visible message."""
    out = {}
    for path in sources():
        with open(path, encoding='utf-8') as f:
            text = f.read()
        rel = os.path.relpath(path, REPO)
        for m in LOG_CALL.finditer(text):
            line = text.count('\n', 0, m.start()) + 1
            out.setdefault(('log ' + m.group(1), joined(m.group(2))), '%s:%d' % (rel, line))
        for m in LOG_TERNARY.finditer(text):
            line = text.count('\n', 0, m.start()) + 1
            for arm in (m.group(2), m.group(3)):
                out.setdefault(('log ' + m.group(1), joined(arm)), '%s:%d' % (rel, line))
        for m in COND_CALL.finditer(text):
            line = text.count('\n', 0, m.start()) + 1
            out.setdefault(('condition', m.group(1)), '%s:%d' % (rel, line))
    return out


class OperationsDocTest(unittest.TestCase):
    def test_scanner_finds_messages(self):
        # Guards the scanner itself: the sources certainly log these.
        msgs = {t for (_, t) in found()}
        self.assertIn('bad configuration', msgs)
        self.assertGreater(len(msgs), 20)

    def test_every_warning_error_and_condition_is_documented(self):
        # A row of the troubleshooting table: a mention elsewhere (the fault matrix, the
        # readiness text) says nothing of what the message means or what to do.
        rows = '\n'.join(r for r in troubleshooting().splitlines() if r.startswith('| '))
        missing = ['%s `%s` (%s)' % (kind, text, where)
                   for (kind, text), where in sorted(found().items())
                   if not any('`%s`' % text in r.split(' | ')[0] for r in rows.splitlines())]
        self.assertEqual(missing, [], 'not in docs/operations.md:\n  ' + '\n  '.join(missing))

    def test_no_row_names_a_message_the_code_no_longer_logs(self):
        section = troubleshooting()
        code = ''.join(read(p) for p in sources())
        code = re.sub(r'"\s*\n\s*"', '', code)  # join literals split across lines
        stale = []
        for row in section.splitlines():
            if not row.startswith('| `'):
                continue
            first = row.split(' | ')[0]
            for name in re.findall(r'`([^`]+)`', first):
                if '"%s' % name not in code:
                    stale.append(name)
        self.assertEqual(stale, [], 'documented but never logged (stale rows):\n  '
                         + '\n  '.join(stale))


if __name__ == '__main__':
    unittest.main()
