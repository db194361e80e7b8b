#!/usr/bin/python3
"""Integration-test harness for catalogd.

Reusable by every test file in this directory:

  PgCluster   a throwaway PostgreSQL (initdb into a temp dir, 127.0.0.1, free port)
  Catalogd    the server binary under test, on free ports, logs captured to files
  pb, pb_grpc generated stubs of the wire contract (catalog.proto)
  health_pb2, health_pb2_grpc, refl_v1_pb2, refl_v1_pb2_grpc, refl_v1alpha_pb2,
  refl_v1alpha_pb2_grpc  generated stubs of grpc.health.v1 and grpc.reflection.*

Must run under Debian's /usr/bin/python3 (python3-grpcio, python3-protobuf,
python3-grpc-tools).  Nothing here talks to anything but 127.0.0.1, every wait is
bounded, and every process started here is stopped at interpreter exit (atexit),
on an exception, on Ctrl-C and on SIGTERM.

Environment:
  CATALOGD_BIN    server binary (default <repo>/build/catalogd)
  CATALOG_PROTO   contract file for the stubs (default <repo>/protos/catalog.proto)
  PG_BINDIR       directory holding initdb/pg_ctl (default: `pg_config --bindir`)
  KEEP_TEST_DIRS  if set to 1, temp dirs (server logs, PG data) are not removed
"""

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, os.pardir, os.pardir))
FIXTURES = os.path.join(REPO, 'tests', 'fixtures')
SCHEMA_SQL = os.path.join(REPO, 'docs', 'contract', 'schema.sql')  # the contract's own copy
SEED_SQL = os.path.join(FIXTURES, 'seed.sql')

CATALOGD_BIN = os.environ.get('CATALOGD_BIN') or os.path.join(REPO, 'build', 'catalogd')
CATALOG_PROTO = os.environ.get('CATALOG_PROTO') or os.path.join(REPO, 'protos', 'catalog.proto')
KEEP_DIRS = os.environ.get('KEEP_TEST_DIRS') == '1'

RPC_TIMEOUT = 5.0  # default deadline of every RPC made by the tests

# Do not let a proxy configured in the environment intercept 127.0.0.1, and reconnect
# quickly (the default backoff after a refused connection is ~1 s and grows to minutes).
CHANNEL_OPTIONS = [('grpc.enable_http_proxy', 0),
                   ('grpc.initial_reconnect_backoff_ms', 100),
                   ('grpc.min_reconnect_backoff_ms', 100),
                   ('grpc.max_reconnect_backoff_ms', 1000)]

import grpc  # noqa: E402  (Debian python3-grpcio)


# ---------------------------------------------------------------------------
# Cleanup registry: everything started here is torn down at exit.
# ---------------------------------------------------------------------------
_live = []            # objects with a _cleanup() method, in start order
_live_lock = threading.Lock()


def _register(obj):
    with _live_lock:
        _live.append(obj)


def _unregister(obj):
    with _live_lock:
        if obj in _live:
            _live.remove(obj)


def _cleanup_all():
    with _live_lock:
        objs = list(reversed(_live))
    for obj in objs:
        try:
            obj._cleanup()
        except Exception as exc:  # never let one failure keep the others alive
            sys.stderr.write('harness: cleanup of %r failed: %s\n' % (obj, exc))


atexit.register(_cleanup_all)


def _on_sigterm(signum, frame):
    # Turn SIGTERM into a normal exit so atexit handlers (and finally blocks) run.
    raise SystemExit(128 + signum)


if threading.current_thread() is threading.main_thread():
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _on_sigterm)


def _rmtree(path):
    if path and os.path.isdir(path) and not KEEP_DIRS:
        shutil.rmtree(path, ignore_errors=True)


_handed_out = set()


def free_port():
    """A TCP port on 127.0.0.1 that nobody listens on right now, and that this process
    has not handed out before (a port reserved for a PostgreSQL that starts later must not
    be given to a server in the meantime)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(('127.0.0.1', 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port
    raise RuntimeError('no free port found')


def port_is_listening(port, host='127.0.0.1'):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        try:
            s.connect((host, port))
            return True
        except OSError:
            return False


def wait_until(predicate, timeout, interval=0.1, what='condition'):
    """Poll predicate() until it is truthy; return its value or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError('timed out after %.1fs waiting for %s' % (timeout, what))
        time.sleep(interval)


# ---------------------------------------------------------------------------
# Stub generation (at import time) into a temp dir added to sys.path.
# Output files are flat modules (no folder named grpc/, which would shadow the
# grpc package).
# ---------------------------------------------------------------------------

# The standard grpc.health.v1 protocol (grpc/grpc-proto), our own copy so the
# test does not depend on the server's copy.
_HEALTH_PROTO = '''\
syntax = "proto3";
package grpc.health.v1;
message HealthCheckRequest {
  string service = 1;
}
message HealthCheckResponse {
  enum ServingStatus {
    UNKNOWN = 0;
    SERVING = 1;
    NOT_SERVING = 2;
    SERVICE_UNKNOWN = 3;
  }
  ServingStatus status = 1;
}
service Health {
  rpc Check(HealthCheckRequest) returns (HealthCheckResponse);
  rpc Watch(HealthCheckRequest) returns (stream HealthCheckResponse);
}
'''


class _StubDir:
    def __init__(self):
        self.path = tempfile.mkdtemp(prefix='catalogd-stubs-')
        _register(self)

    def _cleanup(self):
        _unregister(self)
        _rmtree(self.path)


def _protoc(include_dir, proto_name, out_dir):
    import grpc_tools
    from grpc_tools import protoc
    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), '_proto')
    args = ['grpc_tools.protoc', '-I' + include_dir, '-I' + well_known,
            '--python_out=' + out_dir, '--grpc_python_out=' + out_dir,
            os.path.join(include_dir, proto_name)]
    rc = protoc.main(args)
    if rc != 0:
        raise RuntimeError('grpc_tools.protoc failed (%d) for %s' % (rc, proto_name))


def _generate_stubs():
    stubs = _StubDir()
    src = os.path.join(stubs.path, 'src')
    os.mkdir(src)
    # Contract: copied under its own file name, so the descriptor's name is catalog.proto.
    if not os.path.isfile(CATALOG_PROTO):
        raise RuntimeError('contract proto not found: %s (set CATALOG_PROTO)' % CATALOG_PROTO)
    shutil.copyfile(CATALOG_PROTO, os.path.join(src, 'catalog.proto'))
    with open(os.path.join(src, 'catalogd_test_health.proto'), 'w') as f:
        f.write(_HEALTH_PROTO)
    protos = ['catalog.proto', 'catalogd_test_health.proto']
    # Reflection: the owner's copies (package grpc.reflection.v1 / v1alpha), renamed
    # so neither the output nor the source path contains a folder named grpc.
    for ver in ('v1', 'v1alpha'):
        p = os.path.join(REPO, 'protos', 'grpc', 'reflection', ver, 'reflection.proto')
        if os.path.isfile(p):
            name = 'catalogd_test_reflection_%s.proto' % ver
            shutil.copyfile(p, os.path.join(src, name))
            protos.append(name)
    for name in protos:
        _protoc(src, name, stubs.path)
    sys.path.insert(0, stubs.path)
    return stubs


_STUBS = _generate_stubs()

import catalog_pb2 as pb  # noqa: E402
import catalog_pb2_grpc as pb_grpc  # noqa: E402
import catalogd_test_health_pb2 as health_pb2  # noqa: E402
import catalogd_test_health_pb2_grpc as health_pb2_grpc  # noqa: E402
try:
    import catalogd_test_reflection_v1_pb2 as refl_v1_pb2  # noqa: E402
    import catalogd_test_reflection_v1_pb2_grpc as refl_v1_pb2_grpc  # noqa: E402
    import catalogd_test_reflection_v1alpha_pb2 as refl_v1alpha_pb2  # noqa: E402
    import catalogd_test_reflection_v1alpha_pb2_grpc as refl_v1alpha_pb2_grpc  # noqa: E402
except ImportError:  # reflection protos absent: reflection tests skip themselves
    refl_v1_pb2 = refl_v1_pb2_grpc = refl_v1alpha_pb2 = refl_v1alpha_pb2_grpc = None

__all__ = ['PgCluster', 'Catalogd', 'pb', 'pb_grpc', 'health_pb2', 'health_pb2_grpc',
           'refl_v1_pb2', 'refl_v1_pb2_grpc', 'refl_v1alpha_pb2', 'refl_v1alpha_pb2_grpc',
           'SERVING', 'NOT_SERVING', 'SERVICE_UNKNOWN', 'RPC_TIMEOUT', 'SNAPSHOT_VERSION_KEY',
           'CHANNEL_OPTIONS', 'call_with_trailers', 'rpc_error', 'raw_unary',
           'reflection_modules', 'free_port', 'port_is_listening', 'wait_until',
           'require_binary', 'REPO', 'SCHEMA_SQL', 'SEED_SQL', 'CATALOGD_BIN']

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


# ---------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------

def _pg_bindir():
    d = os.environ.get('PG_BINDIR')
    if d:
        return d
    try:
        out = subprocess.run(['pg_config', '--bindir'], capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        if os.path.isfile(os.path.join(out, 'initdb')):
            return out
    except (OSError, subprocess.SubprocessError):
        pass
    found = shutil.which('initdb')
    if found:
        return os.path.dirname(found)
    raise RuntimeError('cannot find initdb: set PG_BINDIR')


class PgCluster:
    """A throwaway PostgreSQL cluster on 127.0.0.1.

    with PgCluster() as pg:              # init + start on a free port
        pg.load_fixtures()               # schema.sql then seed.sql
        pg.url()                         # postgresql://postgres@127.0.0.1:PORT/postgres

    PgCluster(port=p, start=False) only reserves the description; call
    init() / start() later (used to start PostgreSQL after the server).
    """

    def __init__(self, port=None, start=True):
        self.port = port or free_port()
        self.bindir = _pg_bindir()
        self.dir = None
        self.datadir = None
        self.running = False
        _register(self)
        if start:
            try:
                self.init()
                self.start()
            except BaseException:
                self._cleanup()
                raise

    def __repr__(self):
        return '<PgCluster port=%d dir=%s>' % (self.port, self.dir)

    # -- running server binaries as the postgres user when we are root --
    def _as_pg(self, argv, timeout, check=True):
        if os.geteuid() == 0:
            argv = ['runuser', '-u', 'postgres', '--'] + argv
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                             stdin=subprocess.DEVNULL)
        if check and res.returncode != 0:
            raise RuntimeError('%s failed (%d):\n%s%s' % (' '.join(argv), res.returncode,
                                                         res.stdout, res.stderr))
        return res

    def init(self):
        self.dir = tempfile.mkdtemp(prefix='catalogd-pg-')
        os.chmod(self.dir, 0o755)
        self.datadir = os.path.join(self.dir, 'data')
        os.mkdir(self.datadir, 0o700)
        if os.geteuid() == 0:
            shutil.chown(self.dir, 'postgres')
            shutil.chown(self.datadir, 'postgres')
        self._as_pg([os.path.join(self.bindir, 'initdb'), '-D', self.datadir, '-U', 'postgres',
                     '--auth=trust', '-E', 'UTF8', '--locale=C.UTF-8', '--no-sync'], timeout=120)
        with open(os.path.join(self.datadir, 'postgresql.conf'), 'a') as f:
            f.write("\n# catalogd integration tests\n"
                    "listen_addresses = '127.0.0.1'\n"
                    "port = %d\n"
                    "unix_socket_directories = '%s'\n"
                    "fsync = off\n"
                    "synchronous_commit = off\n"
                    "full_page_writes = off\n"
                    "max_connections = 50\n" % (self.port, self.datadir))
        return self

    def start(self, timeout=60):
        log = os.path.join(self.dir, 'postgres.log')
        self.running = True  # from here on, cleanup must try to stop it
        try:
            self._as_pg([os.path.join(self.bindir, 'pg_ctl'), '-D', self.datadir, '-l', log,
                         '-w', '-t', str(int(timeout)), 'start'], timeout=timeout + 10)
        except (RuntimeError, subprocess.TimeoutExpired) as exc:
            try:
                with open(log) as f:
                    tail = ''.join(f.readlines()[-15:])
            except OSError:
                tail = '(no log)'
            raise RuntimeError('%s\n--- postgres.log ---\n%s' % (exc, tail)) from None
        return self

    def url(self, dbname='postgres'):
        return 'postgresql://postgres@127.0.0.1:%d/%s' % (self.port, dbname)

    def _psql(self, extra, timeout):
        argv = ['psql', '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1',
                '-d', self.url()] + extra
        env = dict(os.environ, PGCONNECT_TIMEOUT='10')
        res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                             stdin=subprocess.DEVNULL)
        if res.returncode != 0:
            raise RuntimeError('psql failed (%d): %s' % (res.returncode, res.stderr.strip()))
        return res.stdout

    def psql(self, sql, timeout=60):
        """Run SQL; return the unaligned, tuples-only output (rows separated by newlines)."""
        return self._psql(['-c', sql], timeout)

    def psql_file(self, *paths, single_transaction=True, timeout=120):
        """Run SQL files in order, by default all in one transaction."""
        extra = ['-1'] if single_transaction else []
        for p in paths:
            extra += ['-f', p]
        return self._psql(extra, timeout)

    def load_fixtures(self, schema=SCHEMA_SQL, seed=SEED_SQL):
        """schema.sql then seed.sql, atomically (a server connecting meanwhile sees all or nothing)."""
        return self.psql_file(schema, seed)

    def _postmaster_pid(self):
        try:
            with open(os.path.join(self.datadir, 'postmaster.pid')) as f:
                return int(f.readline().strip())
        except (OSError, ValueError, TypeError):
            return None

    def stop(self, timeout=30):
        if not self.running or not self.datadir:
            return
        pid = self._postmaster_pid()
        try:
            self._as_pg([os.path.join(self.bindir, 'pg_ctl'), '-D', self.datadir, '-m', 'fast',
                         '-w', '-t', str(int(timeout)), 'stop'], timeout=timeout + 10, check=False)
        except subprocess.TimeoutExpired:
            pass
        # Whatever pg_ctl said: if the postmaster we started is still there, kill it.
        pid = self._postmaster_pid() or pid
        if pid and _pid_alive(pid):
            try:
                os.kill(pid, signal.SIGQUIT)  # immediate shutdown, children follow
                wait_until(lambda: not _pid_alive(pid), 5, what='postmaster exit')
            except (OSError, TimeoutError):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        self.running = False

    def rmtree(self):
        _rmtree(self.dir)

    def _cleanup(self):
        try:
            self.stop()
        finally:
            self.rmtree()
            _unregister(self)

    close = _cleanup

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._cleanup()
        return False


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie counts as gone.
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().split(') ', 1)[1][0] != 'Z'
    except (OSError, IndexError):
        return True


# ---------------------------------------------------------------------------
# catalogd
# ---------------------------------------------------------------------------

_SERVER_ENV_PREFIXES = ('DATABASE_', 'GRPC_', 'ADMIN_', 'LOG_', 'ACCESS_LOG', 'SHUTDOWN_',
                        'MAX_BATCH', 'PG', 'KAFKA_', 'SYNC_')
_KEEP_ENV = {'GRPC_VERBOSITY', 'GRPC_TRACE', 'PG_BINDIR'}


class Catalogd:
    """The server under test.

    srv = Catalogd({'DATABASE_URL': pg.url()})   # starts at once on free ports
    srv.wait_serving(15)
    stub = srv.catalog_stub()
    code = srv.stop()                            # SIGTERM, returns the exit code
    srv.logs()                                   # parsed JSON lines of stdout
    """

    def __init__(self, env=None, binary=None, start=True):
        self.binary = binary or CATALOGD_BIN
        self.port = free_port()
        self.admin_port = free_port()
        # Tests must not inherit the developer's server settings (nor libpq's PG* defaults);
        # gRPC core's own debugging knobs are kept.
        self.env = {k: v for k, v in os.environ.items()
                    if k in _KEEP_ENV or not k.startswith(_SERVER_ENV_PREFIXES)}
        self.env.update({'PG_RETRY_MAX_SECONDS': '1', 'LOG_LEVEL': 'info',
                         'GRPC_LISTEN_ADDRESS': '127.0.0.1'})
        self.env.update({k: str(v) for k, v in (env or {}).items()})
        self.env['GRPC_PORT'] = str(self.port)
        self.env['ADMIN_PORT'] = str(self.admin_port)
        self.dir = tempfile.mkdtemp(prefix='catalogd-srv-')
        self.stdout_path = os.path.join(self.dir, 'stdout.log')
        self.stderr_path = os.path.join(self.dir, 'stderr.log')
        self.proc = None
        self._channel = None
        self.returncode = None
        _register(self)
        if start:
            self.start()

    def __repr__(self):
        return '<Catalogd port=%d pid=%s>' % (self.port, self.proc and self.proc.pid)

    @property
    def target(self):
        return '127.0.0.1:%d' % self.port

    def start(self):
        if not os.access(self.binary, os.X_OK):
            raise RuntimeError('server binary not found or not executable: %s '
                               '(build it or set CATALOGD_BIN)' % self.binary)
        with open(self.stdout_path, 'wb') as out, open(self.stderr_path, 'wb') as err:
            # Own process group: a Ctrl-C in the terminal reaches the test runner,
            # which then stops the server itself (and can check its exit code).
            self.proc = subprocess.Popen([self.binary], env=self.env, stdout=out, stderr=err,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        return self

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    # -- clients --
    def channel(self):
        """A shared channel to the server (created on first use)."""
        if self._channel is None:
            self._channel = self.new_channel()
        return self._channel

    def new_channel(self, options=()):
        return grpc.insecure_channel(self.target, options=CHANNEL_OPTIONS + list(options))

    def catalog_stub(self, channel=None):
        return pb_grpc.CatalogServiceStub(channel or self.channel())

    def health_stub(self, channel=None):
        return health_pb2_grpc.HealthStub(channel or self.channel())

    def health_check(self, service='', timeout=RPC_TIMEOUT):
        """Status enum of Health/Check; raises grpc.RpcError on a non-OK status."""
        return self.health_stub().Check(health_pb2.HealthCheckRequest(service=service),
                                        timeout=timeout).status

    def wait_health(self, want, timeout=15.0, service=''):
        """Poll Health/Check until it answers `want` (a ServingStatus)."""
        deadline = time.monotonic() + timeout
        last = None
        # No gRPC connection attempt before the port listens (a refused attempt puts the
        # channel into reconnect backoff).
        wait_until(lambda: port_is_listening(self.port) or not self.alive(), timeout,
                   interval=0.05, what='gRPC port %d' % self.port)
        while True:
            if not self.alive():
                raise RuntimeError('catalogd exited with %s while waiting for health=%s\n%s'
                                   % (self.proc.poll(), want, self.tail()))
            try:
                last = self.health_check(service, timeout=1.0)
                if last == want:
                    return
            except grpc.RpcError as e:
                last = e.code()
            if time.monotonic() >= deadline:
                raise TimeoutError('catalogd not %s after %.1fs (last: %s)\n%s'
                                   % (health_pb2.HealthCheckResponse.ServingStatus.Name(want),
                                      timeout, last, self.tail()))
            time.sleep(0.1)

    def wait_serving(self, timeout=15.0):
        self.wait_health(SERVING, timeout)
        return self

    def wait_listening(self, timeout=10.0):
        """Wait until the gRPC port accepts connections (the server answers something)."""
        wait_until(lambda: port_is_listening(self.port) or not self.alive(), timeout,
                   what='gRPC port %d' % self.port)
        if not self.alive():
            raise RuntimeError('catalogd exited with %s\n%s' % (self.proc.poll(), self.tail()))
        return self

    # -- stopping --
    def _close_channel(self):
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def send_signal(self, sig):
        if self.alive():
            os.kill(self.proc.pid, sig)

    def wait_exit(self, timeout):
        """Wait for exit; return the exit code (negative: killed by that signal)."""
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise TimeoutError('catalogd still running %.1fs later' % timeout)
        return self.returncode

    def stop(self, sig=signal.SIGTERM, timeout=15.0):
        """Send sig and wait for exit; return the exit code. On timeout: SIGKILL and raise.

        The shared channel is closed first: an idle client connection would otherwise hold
        a graceful shutdown for seconds (tests of draining use send_signal + wait_exit)."""
        if self.proc is None:
            return None
        self._close_channel()
        if self.proc.poll() is not None:
            self.returncode = self.proc.returncode
            self._show_sanitizer_report()
            return self.returncode
        self.send_signal(sig)
        try:
            return self.wait_exit(timeout)
        except TimeoutError:
            self.kill()
            raise
        finally:
            self._close_channel()
            self._show_sanitizer_report()

    def _sanitizer_report(self):
        """The sanitizer report in the server's stderr, or ''."""
        err = self.raw_stderr()
        at = min((i for i in (err.find('WARNING: ThreadSanitizer'), err.find('ERROR: AddressSanitizer'),
                              err.find('runtime error:'), err.find('ERROR: LeakSanitizer'))
                  if i >= 0), default=-1)
        return err[at:at + 12000] if at >= 0 else ''

    def _show_sanitizer_report(self):
        """A sanitizer's report goes to the test's output: the server's stderr file is
        removed with its directory, and an exit code of 66 alone says nothing."""
        report = self._sanitizer_report()
        if report:
            sys.stderr.write('\n--- catalogd (pid %s) sanitizer report ---\n%s\n'
                             % (self.proc.pid, report))
            sys.stderr.flush()

    def sanitizer_summary(self):
        """The report cut to what names the fault (headings, the first frames of each
        stack, the summary), short enough for an assertion message; '' if none."""
        keep, frames = [], 0
        for line in self._sanitizer_report().splitlines():
            s = line.strip()
            if s.startswith('#'):
                frames += 1
                if frames <= 4:
                    keep.append(s)
            elif s:
                frames = 0
                if not s.startswith(('Thread T', 'Mutex M')) or len(keep) < 40:
                    keep.append(s)
        return '\n'.join(keep[:60])

    def kill(self):
        if self.alive():
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                self.proc.kill()
            self.returncode = self.proc.wait(timeout=10)
        self._close_channel()
        return self.returncode

    def _cleanup(self):
        try:
            if self.alive():
                try:
                    self.stop(timeout=5)
                except Exception:
                    self.kill()
            self._close_channel()
        finally:
            _unregister(self)
            _rmtree(self.dir)

    close = _cleanup

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._cleanup()
        return False

    # -- logs --
    def raw_stdout(self):
        try:
            with open(self.stdout_path, 'rb') as f:
                return f.read().decode('utf-8', 'replace')
        except OSError:
            return ''

    def raw_stderr(self):
        try:
            with open(self.stderr_path, 'rb') as f:
                return f.read().decode('utf-8', 'replace')
        except OSError:
            return ''

    def logs(self):
        """stdout parsed as one JSON object per line (lines that are not JSON are skipped;
        see bad_log_lines())."""
        out = []
        for line in self.raw_stdout().splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                out.append(obj)
        return out

    def bad_log_lines(self):
        bad = []
        for line in self.raw_stdout().splitlines():
            if not line.strip():
                continue
            try:
                if not isinstance(json.loads(line), dict):
                    bad.append(line)
            except ValueError:
                bad.append(line)
        return bad

    def tail(self, n=30):
        out = self.raw_stdout().splitlines()[-n:]
        err = self.raw_stderr().splitlines()[-n:]
        return ('--- catalogd stdout (last %d lines) ---\n%s\n--- catalogd stderr ---\n%s'
                % (n, '\n'.join(out), '\n'.join(err)))


# ---------------------------------------------------------------------------
# RPC helpers
# ---------------------------------------------------------------------------

SNAPSHOT_VERSION_KEY = 'x-catalog-snapshot-version'


def call_with_trailers(method, request, timeout=RPC_TIMEOUT, **kw):
    """Unary call returning (response, trailing metadata as a dict of key -> last value)."""
    response, call = method.with_call(request, timeout=timeout, **kw)
    return response, dict(call.trailing_metadata() or ())


def rpc_error(fn, *args, **kw):
    """Run a call expected to fail; return the grpc.RpcError (AssertionError if it succeeded)."""
    kw.setdefault('timeout', RPC_TIMEOUT)
    try:
        resp = fn(*args, **kw)
    except grpc.RpcError as e:
        return e
    shown = repr(resp)
    if hasattr(resp, 'ListFields'):
        from google.protobuf import text_format
        shown = text_format.MessageToString(resp, as_one_line=True, as_utf8=True)
    raise AssertionError('call succeeded but was expected to fail; response: %s'
                         % shown[:500])


def raw_unary(channel, path):
    """A unary callable sending and receiving raw bytes on any method path."""
    return channel.unary_unary(path, request_serializer=None, response_deserializer=None)


def reflection_modules(version):
    """(pb2, pb2_grpc) for 'v1' or 'v1alpha' (None, None when the protos are absent)."""
    if version == 'v1':
        return refl_v1_pb2, refl_v1_pb2_grpc
    if version == 'v1alpha':
        return refl_v1alpha_pb2, refl_v1alpha_pb2_grpc
    raise ValueError(version)


def require_binary():
    """Fail (RuntimeError, not a skip) with a clear message when the binary is missing."""
    if not os.access(CATALOGD_BIN, os.X_OK):
        raise RuntimeError('catalogd binary not found at %s; build it or set CATALOGD_BIN'
                           % CATALOGD_BIN)


def main():
    """Self-check: generate stubs, start PostgreSQL, load schema+seed, print counts, stop."""
    print('stubs in', _STUBS.path)
    with PgCluster() as pg:
        print('postgres on', pg.url())
        pg.load_fixtures()
        for t in ('brands', 'products', 'product_images', 'variants', 'variant_images',
                  'tags', 'product_tags', 'collections', 'product_collections'):
            print('%-20s %s' % (t, pg.psql('SELECT count(*) FROM %s' % t).strip()))
    print('postgres stopped; ok')


if __name__ == '__main__':
    main()
