// What the kernel keeps in one pool for the whole host, which namespaces, cgroups and a uid of its own do not divide:
// pseudo-terminals (kernel.pty.max) and AIO contexts (fs.aio-max-nr). A review's server opened 3071 ptys and took
// all 65536 AIO contexts with 16 io_setup calls; every other session (and the host's containers and databases) then
// had none. Now a namespace sandbox has a devpts instance of its own of limits.ptys (src/sandbox/ptys.ts) and runs
// under berth's seccomp filter (src/sandbox/seccomp.ts), which refuses io_setup, io_uring and a few exploit helpers.
// The filter also refuses every socket family but unix, IP and netlink: AF_VSOCK is not scoped by the network
// namespace, so a server under --network none could reach the hypervisor's and the host's vsock listeners.
// Real berth, the hostile fixture's shell, Debian's python3 inside the sandbox making the calls. Skipped, with the
// reason, where the namespace driver cannot run, berth is not root or libseccomp's binding is missing.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { namespaceDriver } from '../src/sandbox/namespace.ts';
import { seccompUnavailable } from '../src/sandbox/seccomp.ts';
import { ConfigSchema, DEFAULT_MEMORY, DEFAULT_PTYS } from '../src/config/schema.ts';
import { BYTES_PER_OPEN_FILE } from '../src/sandbox/index.ts';
import { compiledFixture } from './fixtures/slow-boot.ts';
import { connect, ROOT, runBerth, shIn, type BerthProcess } from './helpers/berth.ts';

type Client = Awaited<ReturnType<typeof connect>>;
const sh = shIn;
const py = (c: Client, script: string) => sh(c, `/usr/bin/python3 - <<'EOF'\n${script}\nEOF`);

/** Opens ptys until refused (at most 64), says how many and why it stopped, then holds them for up to 60 s. */
const HOLD_PTYS = `
import os, time
fds, why = [], 'none'
while len(fds) < 64:
    try:
        fds.append(os.open('/dev/ptmx', os.O_RDWR | os.O_NOCTTY))
    except OSError as e:
        why = e.strerror
        break
print(len(fds), why, 'done', flush=True)
time.sleep(60)`;

/** Each call through the x86-64 ABI (syscall(2) from ctypes): its return and errno. */
const CALLS = `
import ctypes, os, json
libc = ctypes.CDLL(None, use_errno=True)
buf = ctypes.create_string_buffer(256)
ctx = ctypes.c_ulong(0)
calls = {'io_setup': (206, 16, ctypes.byref(ctx)), 'io_uring_setup': (425, 4, buf), 'userfaultfd': (323, 0),
         'keyctl': (250, 0, -3, 0), 'perf_event_open': (298, buf, 0, -1, -1, 0), 'getpid': (39,)}
out = {}
for name, args in calls.items():
    ctypes.set_errno(0)
    r = libc.syscall(*args)
    out[name] = 'ok' if r >= 0 else os.strerror(ctypes.get_errno())
print(json.dumps(out))`;

/** Which sockets the sandbox can make (ok, or the errno's name): by Python's socket module, by syscall(2) with the
 * family's high bits set, and through the i386 ABI (int 0x80 from 32-bit-addressable memory, socket(2) by family and
 * the socketcall(2) multiplexer). Makes them only: no vsock traffic. */
const SOCKETS = `
import ctypes, errno, json, os, socket
out = {}
def attempt(name, make):
    try:
        make().close()
        out[name] = 'ok'
    except OSError as e:
        out[name] = errno.errorcode.get(e.errno, str(e.errno))
def bound(family, addr, kind=socket.SOCK_STREAM):
    def make():
        s = socket.socket(family, kind)
        s.bind(addr)
        return s
    return make
attempt('vsock', lambda: socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM))
attempt('vsock pair', lambda: socket.socketpair(socket.AF_VSOCK)[0])
attempt('unix', bound(socket.AF_UNIX, '\\0berth-probe'))
attempt('unix pair', lambda: socket.socketpair(socket.AF_UNIX)[0])
attempt('inet', bound(socket.AF_INET, ('127.0.0.1', 0)))
attempt('inet6', lambda: socket.socket(socket.AF_INET6, socket.SOCK_STREAM))
attempt('netlink', bound(socket.AF_NETLINK, (0, 0), socket.SOCK_RAW))
libc = ctypes.CDLL(None, use_errno=True)
def raw(name, *args):
    ctypes.set_errno(0)
    r = libc.syscall(*args)
    out[name] = 'ok' if r >= 0 else errno.errorcode[ctypes.get_errno()]
    if r >= 0: os.close(r)
# The kernel reads the family as an int: high bits set above AF_VSOCK must not slip past the filter.
raw('vsock high bits', ctypes.c_long(41), ctypes.c_long((1 << 32) | 40), ctypes.c_long(1), ctypes.c_long(0))
# The i386 ABI through int 0x80 (from 32-bit-addressable memory): socket(2) by family, and socketcall(2).
libc.mmap.restype = ctypes.c_void_p
page = libc.mmap(None, 4096, 7, 0x22 | 0x40, -1, 0)  # RWX, MAP_PRIVATE|MAP_ANONYMOUS|MAP_32BIT
code = bytes.fromhex('53 89f8 89f3 4989c8 89d1 4489c2 cd80 5b c3')  # eax, ebx, ecx, edx = the 4 args; int 0x80
ctypes.memmove(page, code, len(code))
int80 = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_uint, ctypes.c_uint, ctypes.c_uint, ctypes.c_uint)(page)
args = (ctypes.c_uint * 3).from_address(page + 256)
def i386(name, *call):
    r = int80(*call)
    out[name] = 'ok' if r >= 0 else errno.errorcode[-r]
    if r >= 0 and call[0] != 20: os.close(r)
i386('i386 getpid', 20, 0, 0, 0)
i386('i386 vsock', 359, 40, 1, 0)
i386('i386 unix', 359, 1, 1, 0)
args[0], args[1], args[2] = 1, 1, 0
i386('i386 socketcall unix', 102, 1, page + 256, 0)
print(json.dumps(out))`;

const PTYS = 4;
const probe = await namespaceDriver.probe(ROOT);
const skip =
  process.getuid?.() !== 0
    ? 'berth is not root: bubblewrap’s own devpts has no cap'
    : !probe.ok
      ? `namespace driver unavailable here: ${probe.reason}`
      : process.arch !== 'x64'
        ? 'the calls are made by their x86-64 numbers'
        : !existsSync('/usr/bin/python3')
          ? 'no /usr/bin/python3 to make the calls inside the sandbox'
          : (seccompUnavailable() ?? false);
if (skip) console.log(`# SKIP kernel pools: ${skip}`);

describe('namespace: the kernel’s host-wide pools', { skip, timeout: 240_000 }, () => {
  let berth: BerthProcess;
  before(async () => {
    const hostile = await compiledFixture('hostile-server');
    berth = await runBerth(['--isolation', 'namespace', '--network', 'none', '--warm-pool', '2', '--ptys', String(PTYS)], hostile);
  });
  after(() => berth?.stop());

  test(`a session holding all of its ${PTYS} ptys gets ENOSPC at its cap; another session still opens its own`, async () => {
    const a = await connect(berth.url);
    const b = await connect(berth.url);
    const wait = `n=0; while [ $n -lt 600 ] && ! grep -q done held; do sleep 0.1; n=$((n+1)); done; cat held`;
    const held = await sh(a, `cat > hold.py <<'EOF'\n${HOLD_PTYS}\nEOF\ntimeout 60 /usr/bin/python3 hold.py > held 2>&1 &\n${wait}`);
    assert.match(held.stdout, new RegExp(`^${PTYS} No space left on device done`), `A: ${held.stdout}${held.stderr}`);
    // A still holds its ptys (its holder sleeps): B's come from B's own instance.
    const mine = await sh(
      b,
      `timeout 60 /usr/bin/python3 - > held 2>&1 <<'EOF'\n${HOLD_PTYS.replace('time.sleep(60)', '')}\nEOF\ncat held`,
    );
    assert.match(mine.stdout, new RegExp(`^${PTYS} No space left on device done`), `B: ${mine.stdout}${mine.stderr}`);
    // Each sees only its own terminals: A's ptys are 0..3 in A's /dev/pts, none of them in B's.
    const listed = await sh(b, 'ls /dev/pts');
    assert.deepEqual(listed.stdout.split('\n').filter(Boolean), ['ptmx'], 'B’s /dev/pts holds none of A’s ptys');
    await Promise.all([a, b].map(async (c) => (await c.transport.terminateSession(), await c.client.close())));
  });

  test('berth says at start when one session’s memory limit pays for more open files than the host’s fs.file-max', async () => {
    const fileMax = Number(readFileSync('/proc/sys/fs/file-max', 'utf8'));
    const warned = berth.logs().includes('fs.file-max is');
    // This berth runs with the default memory limit (2 GiB, as root with a memory cgroup).
    assert.equal(warned, fileMax < DEFAULT_MEMORY / BYTES_PER_OPEN_FILE, `fs.file-max ${fileMax}; warned: ${warned}`);
  });

  test('io_setup and io_uring are refused with ENOSYS, userfaultfd, keyctl and perf_event_open with EPERM; the host’s AIO count is untouched', async () => {
    const a = await connect(berth.url);
    const before = Number(readFileSync('/proc/sys/fs/aio-nr', 'utf8'));
    const r = await py(a, CALLS);
    assert.deepEqual(JSON.parse(r.stdout), {
      io_setup: 'Function not implemented',
      io_uring_setup: 'Function not implemented',
      userfaultfd: 'Operation not permitted',
      keyctl: 'Operation not permitted',
      perf_event_open: 'Operation not permitted',
      getpid: 'ok',
    });
    assert.equal(Number(readFileSync('/proc/sys/fs/aio-nr', 'utf8')), before, 'fs.aio-nr: no context was made');
    await a.transport.terminateSession();
    await a.client.close();
  });

  test('socket families: vsock refused with EAFNOSUPPORT (also with high bits set, also through i386 socket and socketcall); unix, inet, inet6, netlink still work', async () => {
    const a = await connect(berth.url);
    const r = await py(a, SOCKETS);
    const made = JSON.parse(r.stdout || '{}') as Record<string, string>;
    const expected: Record<string, string> = {
      vsock: 'EAFNOSUPPORT',
      'vsock pair': 'EAFNOSUPPORT',
      unix: 'ok',
      'unix pair': 'ok',
      inet: 'ok',
      inet6: 'ok',
      netlink: 'ok',
      'vsock high bits': 'EAFNOSUPPORT',
      'i386 getpid': 'ok',
      'i386 vsock': 'EAFNOSUPPORT',
      'i386 unix': 'ok',
      'i386 socketcall unix': 'EAFNOSUPPORT',
    };
    // A kernel without the i386 ABI (ia32_emulation off) answers every int 0x80 alike: nothing of it to check there.
    if (made['i386 getpid'] !== 'ok')
      for (const k of Object.keys(expected).filter((k) => k.startsWith('i386'))) {
        delete made[k];
        delete expected[k];
      }
    assert.deepEqual(made, expected, r.stderr);
    await a.transport.terminateSession();
    await a.client.close();
  });
});

test(`limits.ptys: ${DEFAULT_PTYS} unset, 0 allowed, negative refused`, () => {
  const runtime = (limits: unknown) => ConfigSchema.safeParse({ runtimes: { default: { command: ['node', 'server.js'], limits } } });
  assert.equal(runtime({}).data?.runtimes.default!.limits.ptys, DEFAULT_PTYS);
  assert.equal(runtime({ ptys: 0 }).data?.runtimes.default!.limits.ptys, 0);
  assert.equal(runtime({ ptys: -1 }).success, false);
});
