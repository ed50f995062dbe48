// The seccomp filter every namespace sandbox runs under (bwrap --seccomp): it refuses the few system calls that take
// from a pool the whole host shares, which neither namespaces, cgroups nor a uid of its own can divide, and kernel
// surface no MCP server needs that is a common first step of an exploit. Everything else is allowed: this is not a
// policy of what servers may do (namespaces and the uid are), it closes what the other layers cannot.
//
// Threat model: a hostile server in a namespace sandbox (its own user namespace, no capabilities, no_new_privs).
// - io_setup: AIO contexts count against fs.aio-max-nr, one number for the whole host. A review's server took all
//   65536 with 16 calls; every other session, and the host's databases, then got EAGAIN. Refused with ENOSYS (the
//   answer of a kernel built without AIO), which libaio's users fall back from. io_submit and the rest need a context.
// - io_uring_setup/enter/register: io_uring's rings are locked memory and a large, often-patched kernel surface
//   (Docker's default profile refuses them since 25.0); ENOSYS, from which libuv and liburing users fall back.
// - userfaultfd, perf_event_open, bpf: exploit helpers (stalling the kernel mid-copy, kernel-side code, counters of
//   other processes' behaviour) that no server needs; keyctl, add_key, request_key: kernel keyrings are not
//   namespaced. EPERM, as Docker's profile answers.
// - socket, socketpair of any family but AF_UNIX, AF_INET, AF_INET6 and AF_NETLINK: EAFNOSUPPORT, the kernel's own
//   answer for a family it lacks. AF_VSOCK is not scoped by the network namespace: a server under --network none
//   reached the hypervisor's vsock services (CID 2) and the host's listeners. The other families are the rest of
//   the kernel's protocol modules (AF_ALG, AF_PACKET, AF_TIPC, AF_RDS, AF_CAN, AF_KEY, Bluetooth, XDP...), loaded on
//   a first socket() and the source of many of its exploits, which no MCP server uses: servers, their runtimes
//   and libc speak unix, IP and netlink (interface lists, getaddrinfo's AI_ADDRCONFIG). So a list of what is
//   allowed rather than of what is refused: a family a future kernel adds is refused too, and these four cover
//   every user there is. Compared on the low 32 bits, the int the kernel reads, so garbage high bits do not pass.
//   i386 may also ask through socketcall(2), which passes the family behind a pointer seccomp cannot read:
//   libseccomp turns these rules into ones refusing its SYS_SOCKET and SYS_SOCKETPAIR for every family. 32-bit
//   code has socket(2) since Linux 4.3; a glibc built for older kernels has no fallback and gets no sockets, the
//   price of 32-bit binaries inside a 64-bit host's sandbox. io_uring's IORING_OP_SOCKET is refused with io_uring.
// The same calls are refused through the host's 32-bit ABIs (on x86-64, i386 and x32), which reach the same kernel.
// Built once per berth by libseccomp, the library made for this (Debian's python3-seccomp, whose export_bpf writes
// the program bwrap loads); without it, sandboxes run without the filter and berth says so once at start.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { which } from './host.js';

/** What the filter refuses, and with which errno. */
export const REFUSED_SYSCALLS: Readonly<Record<string, 'ENOSYS' | 'EPERM'>> = {
  io_setup: 'ENOSYS',
  io_uring_setup: 'ENOSYS',
  io_uring_enter: 'ENOSYS',
  io_uring_register: 'ENOSYS',
  userfaultfd: 'EPERM',
  perf_event_open: 'EPERM',
  bpf: 'EPERM',
  keyctl: 'EPERM',
  add_key: 'EPERM',
  request_key: 'EPERM',
};

/** The socket families a sandbox may make; socket and socketpair refuse every other with EAFNOSUPPORT. */
export const SOCKET_FAMILIES = { AF_UNIX: 1, AF_INET: 2, AF_INET6: 10, AF_NETLINK: 16 };

/** The other ABIs of the host's architecture that reach the same kernel (libseccomp's names). */
const COMPAT_ARCHES: Record<string, string[]> = { x64: ['X86', 'X32'], arm64: ['ARM'] };

// libseccomp's Python binding: a rule for each refused call on every ABI of this host, exported as the BPF program.
// A call one ABI lacks (x32 has no separate numbers for a few) is skipped there, not an error. The families not
// allowed are refused as aligned blocks of the 32-bit family number (one masked compare each: libseccomp takes one
// comparison per argument in a rule, so "none of these four" cannot be one rule).
const COMPILER = `
import errno, json, sys, seccomp
refused, arches, allowed = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sorted(json.loads(sys.argv[3]))
f = seccomp.SyscallFilter(seccomp.ALLOW)
for a in arches:
    f.add_arch(getattr(seccomp.Arch, a))
for name, err in refused.items():
    try:
        f.add_rule(seccomp.ERRNO(getattr(errno, err)), name)
    except Exception:
        pass
v = 0
for end in allowed + [1 << 32]:
    while v < end:
        size = v & -v or 1 << 32
        while v + size > end:
            size >>= 1
        for name in ('socket', 'socketpair'):
            f.add_rule(seccomp.ERRNO(errno.EAFNOSUPPORT), name, seccomp.Arg(0, seccomp.MASKED_EQ, 0xffffffff & ~(size - 1), v))
        v += size
    v = end + 1
f.export_bpf(sys.stdout)
`;

type Compiled = { program: Buffer; unavailable?: undefined } | { program?: undefined; unavailable: string };
let compiled: Compiled | undefined;

/** Debian's python3 first: python3-seccomp installs for it, and a python3 earlier on PATH (pyenv, a venv) lacks it. */
const python = () => (existsSync('/usr/bin/python3') ? '/usr/bin/python3' : which('python3'));

function compile(): Compiled {
  const py = python();
  if (!py) return { unavailable: 'python3 with libseccomp is not installed (apt-get install python3-seccomp)' };
  const args = [REFUSED_SYSCALLS, COMPAT_ARCHES[process.arch] ?? [], Object.values(SOCKET_FAMILIES)].map((a) => JSON.stringify(a));
  const r = spawnSync(py, ['-c', COMPILER, ...args], { timeout: 30_000, maxBuffer: 1024 * 1024 });
  const stderr = r.stderr?.toString().trim() ?? '';
  if (r.status !== 0 || !r.stdout?.length) {
    if (/No module named .?seccomp/.test(stderr))
      return { unavailable: "libseccomp's python3 binding is not installed (apt-get install python3-seccomp)" };
    return { unavailable: `libseccomp could not build the filter: ${stderr.split('\n').pop() || r.error?.message || `exit ${r.status}`}` };
  }
  return { program: r.stdout };
}

/** The filter's BPF program (built once, on first use), or undefined when this host cannot build it. */
export function seccompProgram(): Buffer | undefined {
  compiled ??= compile();
  return compiled.program;
}

/** Why namespace sandboxes run without the filter here, or undefined. */
export function seccompUnavailable(): string | undefined {
  compiled ??= compile();
  return compiled.unavailable;
}
