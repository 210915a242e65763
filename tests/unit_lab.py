"""Runs the installed unit's ExecStart the way systemd would: as its user, inside its sandbox.

systemd is not PID 1 here (nor in CI containers), so ``systemd-run`` cannot start the unit. A private mount
namespace (``unshare -m``) does what the unit's options ask before ExecStart runs, and ``setpriv`` drops to
the service user with the unit's groups:
- ProtectHome=yes: an empty tmpfs over /home, /root and /run/user; PrivateTmp=yes: over /tmp and /var/tmp;
- ProtectSystem=strict: / read-only; StateDirectory=/RuntimeDirectory=: writable directories owned by the
  user, as systemd creates them; LoadCredential=: a credentials directory only the user can read, at
  /run/credentials/taptill.service as systemd makes it (pass the unit with its drop-ins: installed_unit);
- ProtectProc=/ProcSubset=: a /proc of its own mounted with hidepid=/subset=, as systemd mounts it;
- WorkingDirectory=: / as for every system unit that sets none (a library writing into "." meets a read-only
  root, as on the Pi);
- the image provisioning wrote appears where the booted system has it: ``ROOT/etc`` laid over /etc, the
  venv at its prefix.
The service user is a uid no account uses, so nothing is created on (or left behind on) the machine.
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from provisioning.sandbox import service_options

TOOLS = ("unshare", "setpriv", "mount", "systemd-analyze")


def free_uid() -> int:
    """A uid no account has, distinct per test process (parallel runs must not share one)."""
    uid = 61000 + os.getpid() % 3000
    while True:
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid
        uid += 1


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path is not None, (
        f"{name} is missing: apt-get install util-linux mount systemd (Makefile TEST_DEBS)"
    )
    return path


@dataclass(frozen=True)
class Sandbox:
    """The unit's view of the machine. ``state`` and ``run`` are host directories bound to the unit's
    StateDirectory and RuntimeDirectory (so a test can look into them afterwards), ``notify`` the host
    directory that holds the test's sd_notify socket, seen by the unit as /run/systemd."""

    root: Path  # the tree provisioning wrote (etc/, opt/)
    prefix: PurePosixPath  # where the venv lives on the booted system
    state: Path
    run: Path
    notify: Path
    uid: int

    def script(
        self,
        unit: str,
        argv: Sequence[str] | None = None,
        *,
        protect_home: bool = True,
        as_root: bool = False,
        running: bool = True,
        keep: Sequence[str] = (),
    ) -> str:
        """A shell script that sets the sandbox up as root, then execs ExecStart as the service user (or,
        ``as_root``, as root: a person's `sudo taptill …` on the terminal, seeing the same files).
        ``running=False``: no credentials directory, as when the service is stopped. ``keep``: host paths
        (this checkout, the test venv's libraries) a test hands the unit's process, kept visible where
        ProtectHome= or PrivateTmp= would hide them (a checkout in /home, /root or /tmp)."""
        opts = service_options(unit)
        exec_start = argv if argv is not None else shlex.split(opts["ExecStart"][-1])
        groups = " ".join(opts.get("SupplementaryGroups", [])).split()
        last = {key: values[-1] for key, values in opts.items()}
        q = shlex.quote
        prefix = str(self.prefix)
        lines = [
            "set -e",
            # The booted image: its /etc over ours, its venv at the prefix (a tmpfs makes the mount point).
            f"mount -t overlay overlay -o lowerdir={q(str(self.root / 'etc'))}:/etc /etc",
            f"mount -t tmpfs -o mode=0755 tmpfs {q(str(PurePosixPath('/', self.prefix.parts[1])))}",
            f"mkdir -p {q(prefix)}",
            f"mount --bind {q(str(self.root / self.prefix.relative_to('/')))} {q(prefix)}",
            f"mount -o remount,bind,ro {q(prefix)}",
            # /run and /var/lib as systemd leaves them for the unit: its own directories, owned by its user.
            "mount -t tmpfs -o mode=0755 tmpfs /run",
            "mount -t tmpfs -o mode=0755 tmpfs /var/lib",
            f"mkdir -p /run/systemd && mount --bind {q(str(self.notify))} /run/systemd",
        ]
        for directory in opts.get("StateDirectory", []):
            lines.append(
                f"mkdir -p /var/lib/{directory} && mount --bind {q(str(self.state))} /var/lib/{directory}"
            )
        for directory in opts.get("RuntimeDirectory", []):
            lines.append(f"mkdir -p /run/{directory} && mount --bind {q(str(self.run))} /run/{directory}")
        credentials = "/run/credentials/taptill.service"
        lines.append(f"mkdir -p {credentials}")
        for entry in opts.get("LoadCredential", []) if running else []:
            name, _, source = entry.partition(":")
            lines.append(f"cp {q(source)} {credentials}/{q(name)}")
        lines.append(f"chown -R {self.uid}:{self.uid} {credentials} && chmod -R go-rwx {credentials}")
        hidden = ("/home/", "/root/", "/tmp/", "/var/tmp/")
        kept = [path for path in keep if any(f"{path.rstrip('/')}/".startswith(top) for top in hidden)]
        for n, path in enumerate(kept):
            lines.append(f"mkdir -p /run/.kept/{n} && mount --bind {q(path)} /run/.kept/{n}")
        if protect_home and last.get("ProtectHome") in ("yes", "true", "tmpfs"):
            lines += [f"mount -t tmpfs -o mode=0755 tmpfs {d}" for d in ("/home", "/root")]
        if last.get("PrivateTmp") in ("yes", "true"):
            lines += [f"mount -t tmpfs -o mode=1777 tmpfs {d}" for d in ("/tmp", "/var/tmp")]
        for n, path in enumerate(kept):
            lines.append(f"mkdir -p {q(path)} && mount --bind /run/.kept/{n} {q(path)}")
        if last.get("ProtectSystem") == "strict":
            lines.append("mount -o remount,bind,ro /")
        proc = [f"hidepid={last['ProtectProc']}"] if "ProtectProc" in last else []
        proc += [f"subset={last['ProcSubset']}"] if last.get("ProcSubset") == "pid" else []
        if proc:
            lines.append(f"mount -t proc -o {','.join(proc)} proc /proc")
        lines.append(f"cd {q(last.get('WorkingDirectory', '/'))}")
        env = {
            "CREDENTIALS_DIRECTORY": credentials,
            "NOTIFY_SOCKET": "/run/systemd/notify",
            "HOME": "/var/lib/taptill",
            "PATH": "/usr/local/bin:/usr/bin:/bin",
        }
        for value in opts.get("Environment", []):
            for word in shlex.split(value):
                key, _, val = word.partition("=")
                env[key] = val
        drop = [
            tool("setpriv"),
            f"--reuid={self.uid}",
            f"--regid={self.uid}",
            f"--groups={','.join(groups)}" if groups else "--clear-groups",
            "--no-new-privs",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--",
        ]
        lines.append(f"umask {last.get('UMask', '0022')}")
        if as_root:
            env.pop("CREDENTIALS_DIRECTORY")  # a shell of root's is not the unit
            drop = []
        command = ["env", "-i", *(f"{k}={v}" for k, v in env.items()), *drop, *exec_start]
        lines.append("exec " + " ".join(q(a) for a in command))
        return "\n".join(lines) + "\n"

    def start(
        self,
        unit: str,
        argv: Sequence[str] | None = None,
        *,
        protect_home: bool = True,
        as_root: bool = False,
        running: bool = True,
        keep: Sequence[str] = (),
    ) -> subprocess.Popen[str]:
        """ExecStart as the unit runs it (output merged); the caller reads it and ends the process."""
        for directory, mode in ((self.state, 0o700), (self.run, 0o750)):
            directory.mkdir(parents=True, exist_ok=True)
            os.chown(directory, self.uid, self.uid)
            directory.chmod(mode)
        script = self.script(
            unit, argv, protect_home=protect_home, as_root=as_root, running=running, keep=keep
        )
        return subprocess.Popen(
            [tool("unshare"), "-m", "--propagation", "private", "sh", "-c", script],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            stdin=subprocess.DEVNULL,
        )


def in_image(root: Path, prefix: PurePosixPath, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run a host tool (as root) with the image's venv at its prefix, e.g. systemd-analyze verify."""
    q = shlex.quote
    top = PurePosixPath("/", prefix.parts[1])
    script = "\n".join(
        [
            "set -e",
            f"mount -t tmpfs -o mode=0755 tmpfs {q(str(top))}",
            f"mkdir -p {q(str(prefix))}",
            f"mount --bind {q(str(root / prefix.relative_to('/')))} {q(str(prefix))}",
            "exec " + " ".join(q(a) for a in argv),
        ]
    )
    return subprocess.run(
        [tool("unshare"), "-m", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=root,
    )
