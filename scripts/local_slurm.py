#!/usr/bin/env python3
"""A one-node SLURM cluster on this machine, with accounting, to try sweeps before a real one.

    sudo python3 scripts/local_slurm.py start [FOLDER]   # prints `export SLURM_CONF=...`
    sudo python3 scripts/local_slurm.py status [FOLDER]
    sudo python3 scripts/local_slurm.py stop [FOLDER]    # FOLDER defaults to $SLURM_CONF's

`start` installs what is missing (Debian's slurm-wlm, slurmdbd, munge, mariadb-server), writes
every file into FOLDER (a new temporary folder by default): a munge key and socket of its own,
a MariaDB data folder, slurm.conf naming this host with its real cores and memory and one
partition, and slurmdbd.conf; then starts munged, mariadbd, slurmdbd, slurmctld and slurmd on
free ports and waits until the node is idle. Accounting is real (slurmdbd): submitit reads job
states only through `sacct`. `stop` cancels the cluster's jobs and ends exactly the daemons its
pid files name. Clients find the cluster through SLURM_CONF. Standard library only: it runs
before the project is installed. Where it cannot run (not root, no apt-get to install the
packages) it says why in one line and exits 77 (automake's "skipped").
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CANNOT_RUN = 77
PACKAGES = ("slurm-wlm", "slurmdbd", "munge", "mariadb-server")
PROGRAMS = ("slurmctld", "slurmd", "slurmdbd", "munged", "mariadbd", "mariadb-install-db", "sacct")
SBIN = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")
DAEMONS = ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd")  # started in this order
PARTITION = "local"
STARTED: dict[str, subprocess.Popen] = {}  # the daemons this process started, by name
MARKER = "LOCAL_SLURM_FOLDER"  # in each daemon's environment: `stop` ends only those


class CannotRun(Exception):
    """This machine cannot run the cluster (the message says why, in one line)."""


def main(arguments: list[str]) -> int:
    """`start|stop|status [FOLDER]`."""
    if not arguments or arguments[0] not in ("start", "stop", "status"):
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    command, folder = arguments[0], arguments[1] if len(arguments) > 1 else None
    try:
        if command == "start":
            start(Path(folder) if folder else None)
        elif command == "stop":
            stop(existing_folder(folder))
        else:
            return status(existing_folder(folder))
    except CannotRun as reason:
        print(f"local_slurm: cannot run here: {reason}", file=sys.stderr)
        return CANNOT_RUN
    return 0


def start(folder: Path | None) -> Path:
    """Install what is missing, write the configuration, start the daemons, wait for the node."""
    began = time.monotonic()
    check_can_run()
    folder = (folder or Path(tempfile.mkdtemp(prefix="local-slurm-"))).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)  # munged runs as munge and must reach its folder
    closed = [p for p in folder.parents if not os.stat(p).st_mode & 0o001]
    if closed:
        raise CannotRun(f"munged (user munge) cannot enter {closed[0]}: choose another FOLDER")
    for name in ("log", "pids", "state", "spool"):
        (folder / name).mkdir(exist_ok=True)
    ports = free_ports(4)
    write_configuration(folder, *ports)
    environment = {**os.environ, "SLURM_CONF": str(folder / "slurm.conf")}
    try:
        start_munge(folder)
        start_mariadb(folder, ports[0])
        launch(folder, "slurmdbd", ["slurmdbd", "-D"], environment)
        wait_for(lambda: port_open(ports[1]), "slurmdbd to listen", folder, "slurmdbd")
        launch(folder, "slurmctld", ["slurmctld", "-D", "-i"], environment)
        launch(folder, "slurmd", ["slurmd", "-D", "-N", node_name()], environment)
        wait_for(lambda: node_state(environment) == "idle", "an idle node", folder, "slurmd")
        wait_for(lambda: accounting_answers(environment), "sacct", folder, "slurmctld")
    except BaseException:
        stop(folder)
        raise
    took = time.monotonic() - began
    print(f"local_slurm: one-node cluster up in {took:.1f} s, files in {folder}", file=sys.stderr)
    print(f"local_slurm: stop it with: python3 {sys.argv[0]} stop {folder}", file=sys.stderr)
    print(f"export SLURM_CONF={folder / 'slurm.conf'}")
    return folder


def check_can_run() -> None:
    """Refuse where the cluster cannot run; install the packages where they are missing."""
    if os.geteuid() != 0:
        raise CannotRun("it needs root (it installs packages and starts daemons as root)")
    missing = [program for program in PROGRAMS if not find(program)]
    if not missing:
        return
    if not shutil.which("apt-get"):
        raise CannotRun(f"{', '.join(missing)} missing and no apt-get to install {PACKAGES}")
    install_packages()
    still = [program for program in PROGRAMS if not find(program)]
    if still:
        raise CannotRun(f"{', '.join(still)} still missing after installing {PACKAGES}")


def install_packages() -> None:
    """apt-get install, with the packages' own services kept from starting (policy-rc.d)."""
    policy = Path("/usr/sbin/policy-rc.d")
    ours = not policy.exists()
    if ours:  # Debian's way to stop a package's postinst from starting its service
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES]
    print(f"local_slurm: installing {' '.join(PACKAGES)}", file=sys.stderr)
    try:
        if subprocess.run(install, env=environment, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=environment, capture_output=True)
            done = subprocess.run(install, env=environment, capture_output=True, text=True)
            if done.returncode != 0:
                raise CannotRun(f"apt-get install failed: {done.stderr.strip()[-300:]}")
    finally:
        if ours:
            policy.unlink()


def write_configuration(
    folder: Path, mysql_port: int, dbd_port: int, ctld_port: int, slurmd_port: int
) -> None:
    """slurm.conf and slurmdbd.conf for this host, every path and port its own."""
    host = node_name()
    hardware = subprocess.run([find("slurmd"), "-C"], capture_output=True, text=True).stdout
    node_line = next(line for line in hardware.splitlines() if line.startswith("NodeName="))
    socket_info = f"socket={folder / 'munge' / 'munge.socket'}"
    auth = f"AuthType=auth/munge\nAuthInfo={socket_info}\n"
    (folder / "slurm.conf").write_text(
        f"""# Written by scripts/local_slurm.py: a one-node cluster on {host}.
ClusterName=local{ctld_port}
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# cred_expire: also how long a requeued job waits before it may start again (default 120 s).
AuthInfo={socket_info},cred_expire=10
CredType=cred/munge
StateSaveLocation={folder / "state"}
SlurmdSpoolDir={folder / "spool"}
SlurmctldPidFile={folder / "state" / "slurmctld.pid"}
SlurmdPidFile={folder / "spool" / "slurmd.pid"}
SlurmctldLogFile={folder / "log" / "slurmctld.log"}
SlurmdLogFile={folder / "log" / "slurmd.log"}
# No cgroups here (containers rarely allow them): processes tracked by parentage.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
# Cores and memory are what jobs ask for, as on a real cluster.
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
# A job asking for more than the partition has is refused by sbatch, not left pending forever.
EnforcePartLimits=ALL
SchedulerType=sched/backfill
# Pending jobs looked at every 2 s (defaults 30 s and 60 s): a requeued job starts soon after.
SchedulerParameters=bf_interval=2,sched_interval=2
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort={dbd_port}
# Not a password: with munge, the socket that authenticates to slurmdbd.
AccountingStoragePass={folder / "munge" / "munge.socket"}
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
# A cancelled or requeued job's processes get SIGKILL 5 s after SIGTERM (default 30).
KillWait=5
{node_line} NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName={PARTITION} Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""
    )
    dbd = folder / "slurmdbd.conf"
    dbd.write_text(
        f"""{auth}DbdHost=localhost
DbdPort={dbd_port}
SlurmUser=root
PidFile={folder / "pids" / "slurmdbd-own.pid"}
LogFile={folder / "log" / "slurmdbd.log"}
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={mysql_port}
StorageUser=root
StorageLoc=slurm_acct_db
"""
    )
    dbd.chmod(0o600)  # slurmdbd refuses a configuration others can read


def start_munge(folder: Path) -> None:
    """munged as the munge user, with a key, socket, pid and seed file of its own."""
    munge = folder / "munge"
    munge.mkdir(exist_ok=True)
    munge.chmod(0o755)  # clients reach the socket through it; munged wants it so
    key = munge / "munge.key"
    if not key.exists():
        key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    user = pwd.getpwnam("munge")
    for path in (munge, key):
        os.chown(path, user.pw_uid, user.pw_gid)
    command = [
        find("munged"), "--foreground",
        f"--key-file={key}", f"--socket={munge / 'munge.socket'}",
        f"--pid-file={munge / 'munged.pid'}", f"--log-file={munge / 'munged.log'}",
        f"--seed-file={munge / 'munged.seed'}",
    ]  # fmt: skip
    launch(folder, "munged", command, dict(os.environ), user="munge")
    wait_for(lambda: (munge / "munge.socket").exists(), "munged's socket", folder, "munged")


def start_mariadb(folder: Path, port: int) -> None:
    """MariaDB on 127.0.0.1:port, its data in FOLDER/mysql, root without a password."""
    data = folder / "mysql"
    if not data.exists():
        install = [
            find("mariadb-install-db"), "--no-defaults", f"--datadir={data}", "--user=root",
            "--auth-root-authentication-method=normal", "--skip-test-db",
        ]  # fmt: skip
        done = subprocess.run(install, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed: {done.stderr.strip()[-500:]}")
    command = [
        find("mariadbd"), "--no-defaults", f"--datadir={data}", "--user=root",
        f"--port={port}", "--bind-address=127.0.0.1", f"--socket={folder / 'mysql.sock'}",
        f"--pid-file={folder / 'pids' / 'mariadbd-own.pid'}",
        f"--log-error={folder / 'log' / 'mariadbd.log'}", "--skip-log-bin",
        "--innodb-buffer-pool-size=64M",
    ]  # fmt: skip
    launch(folder, "mariadbd", command, dict(os.environ))
    wait_for(lambda: port_open(port), "mariadbd to listen", folder, "mariadbd")


def launch(
    folder: Path, name: str, command: list[str], environment: dict[str, str], user: str = "root"
) -> None:
    """Start a daemon in the foreground of a session of its own; its pid into pids/NAME."""
    command = [find(command[0]), *command[1:]] if "/" not in command[0] else command
    account = pwd.getpwnam(user)
    with (folder / "log" / f"{name}.out").open("ab") as output:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
            env={**environment, MARKER: str(folder)}, start_new_session=True, cwd=folder,
            user=account.pw_uid, group=account.pw_gid, extra_groups=[],
        )  # fmt: skip
    STARTED[name] = process
    (folder / "pids" / name).write_text(f"{process.pid}\n")


def stop(folder: Path) -> None:
    """Cancel the cluster's jobs, then end the daemons named in FOLDER/pids, last started first."""
    environment = {**os.environ, "SLURM_CONF": str(folder / "slurm.conf")}
    if running(folder, "slurmctld") and find("scancel"):
        subprocess.run([find("scancel"), "--full", "--user=root"], env=environment, timeout=30)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and jobs_left(environment):
            time.sleep(0.5)
    for name in reversed(DAEMONS):
        pid = running(folder, name)
        if pid:
            end(pid)
        (folder / "pids" / name).unlink(missing_ok=True)
    print(f"local_slurm: stopped the cluster of {folder}", file=sys.stderr)


def status(folder: Path) -> int:
    """Which daemons run, and the node's state; 0 when all five run."""
    up = [name for name in DAEMONS if running(folder, name)]
    print(f"daemons running: {', '.join(up) or 'none'}")
    if running(folder, "slurmctld"):
        print(f"node: {node_state({**os.environ, 'SLURM_CONF': str(folder / 'slurm.conf')})}")
    return 0 if len(up) == len(DAEMONS) else 1


def running(folder: Path, name: str) -> int | None:
    """The pid in FOLDER/pids/NAME while that process is alive and still our daemon."""
    try:
        pid = int((folder / "pids" / name).read_text())
        environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    ours = f"{MARKER}={folder}".encode() in environment  # not a pid reused since
    return pid if ours and name.encode() in command else None


def end(pid: int, grace_s: float = 10) -> None:
    """SIGTERM to the daemon's session, SIGKILL after `grace_s` if it still lives."""
    for sent in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sent)  # the daemon leads its own session (start_new_session)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    return
            except ChildProcessError:  # not our child: started by an earlier `start`
                if not Path(f"/proc/{pid}").exists():
                    return
            time.sleep(0.1)


def node_state(environment: dict[str, str]) -> str:
    """The node's state as sinfo prints it (idle, mixed, allocated, down*, ...)."""
    sinfo = [find("sinfo"), "--noheader", "--format=%T"]
    done = subprocess.run(sinfo, env=environment, capture_output=True, text=True, timeout=10)
    return done.stdout.strip()


def accounting_answers(environment: dict[str, str]) -> bool:
    """Whether sacct reaches slurmdbd and the cluster is registered there."""
    sacct = [find("sacct"), "--noheader", "--allusers", "--starttime=now"]
    done = subprocess.run(sacct, env=environment, capture_output=True, text=True, timeout=10)
    return done.returncode == 0 and not done.stderr.strip()


def jobs_left(environment: dict[str, str]) -> bool:
    """Whether squeue still lists any job."""
    squeue = [find("squeue"), "--noheader", "--format=%i"]
    done = subprocess.run(squeue, env=environment, capture_output=True, text=True, timeout=10)
    return bool(done.stdout.strip())


def wait_for(ready, what: str, folder: Path, daemon: str, timeout_s: float = 90) -> None:
    """Poll `ready()` until it holds; fail at once if `daemon` died, or after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except (OSError, subprocess.SubprocessError):
            pass
        if daemon in STARTED and STARTED[daemon].poll() is not None:
            log = (folder / "log" / f"{daemon}.out").read_text(errors="replace").strip()
            last = log.splitlines()[-1] if log else "no output"
            raise RuntimeError(f"{daemon} stopped while waiting for {what}: {last}")
        time.sleep(0.2)
    raise RuntimeError(f"gave up waiting for {what} after {timeout_s:.0f} s; logs in {folder}/log")


def free_ports(count: int) -> list[int]:
    """Distinct ports that nothing listens on now (the system hands them out)."""
    ports: set[int] = set()
    while len(ports) < count:
        with socket.socket() as probe:
            probe.bind(("", 0))
            ports.add(probe.getsockname()[1])
    return sorted(ports)


def port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def node_name() -> str:
    return socket.gethostname().split(".")[0]


def find(program: str) -> str:
    """The program's path, looking in sbin too (root's PATH may lack it)."""
    found = shutil.which(program) or shutil.which(program, path=os.pathsep.join(SBIN))
    return found or ""


def existing_folder(folder: str | None) -> Path:
    """FOLDER, or the folder of $SLURM_CONF."""
    if folder:
        return Path(folder).resolve()
    if os.environ.get("SLURM_CONF"):
        return Path(os.environ["SLURM_CONF"]).resolve().parent
    raise CannotRun("no FOLDER given and SLURM_CONF is not set")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
