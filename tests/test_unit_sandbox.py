"""The provisioned unit's ExecStart run the way systemd would, and the device groups it is given."""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest

from hw.readers.sim import send_command
from provisioning.install import DEFAULT_PREFIX, retarget_scripts
from provisioning.provision import EXIT_CHANGED, EXIT_MISSING, EXIT_USAGE
from provisioning.sandbox import service_options
from terminal.emulator.wallet import WalletEmulator
from terminal.ops.operator_card import create_operator_key, operator_line
from terminal.service.unit_file import installed_unit
from tests.conftest import seed_program
from tests.terminal_lab import ERIKA, MAX, REPO, journal_lines, wait_for
from tests.test_provision import provision, tree, wallet_flags
from tests.test_systemd import NotifySocket
from tests.unit_lab import Sandbox, free_uid, tool

pytestmark = pytest.mark.systemd

HOME_PREFIX = PurePosixPath("/home/pi/taptill")  # where a checkout's venv usually is


@pytest.fixture(scope="module")
def wallet() -> Iterator[WalletEmulator]:
    with WalletEmulator.demo("doc") as emulator:
        yield emulator


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory, program_image: Path, wallet: WalletEmulator) -> Path:
    root = tmp_path_factory.mktemp("unit") / "image"
    seed_program(program_image, root)
    proc = provision(root, *wallet_flags(wallet), token=wallet.api_token)
    assert proc.returncode == EXIT_CHANGED, proc.stdout + proc.stderr
    return root


def sandbox(
    root: Path, tmp_path: Path, prefix: PurePosixPath = DEFAULT_PREFIX
) -> tuple[Sandbox, NotifySocket]:
    notify_dir = tmp_path / "notify"
    notify_dir.mkdir(parents=True)
    notify_dir.chmod(0o755)
    notify = NotifySocket(notify_dir / "notify")
    (notify_dir / "notify").chmod(0o777)  # the service user sends to it, as to systemd's own socket
    box = Sandbox(root, prefix, tmp_path / "state", tmp_path / "run", notify_dir, free_uid())
    return box, notify


def until_ready_then_stop(proc: subprocess.Popen[str], notify: NotifySocket) -> tuple[int, str]:
    """Wait for READY=1 (or the process ending), then SIGTERM it as systemd stops a unit."""
    try:
        wait_for(
            lambda: bool(notify.times_of("READY=1")) or proc.poll() is not None,
            timeout=60,
            what="READY=1 from the service",
        )
    finally:
        if proc.poll() is None:
            proc.terminate()
        out, _ = proc.communicate(timeout=30)
    return proc.returncode, out


def test_execstart_runs_as_the_service_user_inside_the_unit_sandbox(
    image: Path, wallet: WalletEmulator, tmp_path: Path
) -> None:
    unit = (image / "etc/systemd/system/taptill.service").read_text()
    box, notify = sandbox(image, tmp_path)
    proc = box.start(unit)
    try:
        wait_for(lambda: bool(notify.times_of("READY=1")), timeout=60, what="READY=1 from the service")
        # The sim socket the unit made in its RuntimeDirectory is reachable from outside, as by `taptill tap`.
        assert send_command(box.run / "tap.sock", f"tap {MAX}") == "ok"
        config = tmp_path / "config.toml"  # the same config, read from the host's view of the state dir
        config.write_text(
            (image / "etc/taptill/config.toml")
            .read_text()
            .replace('"/var/lib/taptill"', f'"{box.state}"')
            .replace('"/run/taptill/tap.sock"', f'"{box.run / "tap.sock"}"')
        )
        wait_for(lambda: any(s["state"] == "done" for s in journal_lines(config)), what="a settled sale")
    finally:
        code, out = until_ready_then_stop(proc, notify)
        notify.close()
    assert code == 0, out
    journal = box.state / "journal.sqlite3"
    assert journal.stat().st_uid == box.uid  # written by the service user, not root
    assert "Traceback" not in out


def test_a_program_under_home_is_refused_because_the_unit_could_not_start_it(
    image: Path, wallet: WalletEmulator, tmp_path: Path
) -> None:
    """Provisioning refuses --prefix /home/…; run anyway, that unit fails exactly as systemd's 203/EXEC
    would, and the same program starts once ProtectHome is not applied: the refusal is about the sandbox."""
    refused = provision(
        tmp_path / "refused", *wallet_flags(wallet), "--prefix", str(HOME_PREFIX), token=wallet.api_token
    )
    assert refused.returncode == EXIT_USAGE, refused.stdout + refused.stderr
    assert "ProtectHome=yes hides /home" in refused.stderr
    assert tree(tmp_path / "refused") == {}

    # The unit it would have written, with a real venv at /home/pi/taptill/venv (scripts pointing there).
    root = tmp_path / "home-image"
    venv = root / HOME_PREFIX.relative_to("/") / "venv"
    shutil.copytree(image / DEFAULT_PREFIX.relative_to("/") / "venv", venv, symlinks=True)
    retarget_scripts(venv / "bin", str(DEFAULT_PREFIX / "venv"), str(HOME_PREFIX / "venv"))
    shutil.copytree(image / "etc", root / "etc", symlinks=True)
    unit = (
        (image / "etc/systemd/system/taptill.service")
        .read_text()
        .replace(str(DEFAULT_PREFIX), str(HOME_PREFIX))
    )

    hidden, notify = sandbox(root, tmp_path / "hidden", HOME_PREFIX)
    code, out = until_ready_then_stop(hidden.start(unit), notify)
    notify.close()
    assert code != 0 and not notify.times_of("READY=1")
    assert f"failed to execute {HOME_PREFIX}/venv/bin/taptill: No such file or directory" in out, out

    shown, notify = sandbox(root, tmp_path / "shown", HOME_PREFIX)
    code, out = until_ready_then_stop(shown.start(unit, protect_home=False), notify)
    notify.close()
    assert notify.times_of("READY=1") and code == 0, out


# --- device groups: a PN532 on the UART --------------------------------------------------------------


def provision_with_tty(
    tmp_path: Path, wallet: WalletEmulator, node: tuple[str, int] | None
) -> tuple[subprocess.CompletedProcess[str], dict[str, int]]:
    """Live provisioning (--dry-run: nothing is written) in a private /dev holding a ttyAMA0 with the
    given group and mode; then the kernel's own answer for the service user: can it open the node with
    the unit's groups (dialout), and without any group?"""
    uid = free_uid()
    q = shlex.quote
    setup = [
        "set -e",
        "mount -t tmpfs -o mode=0755 tmpfs /dev",
        "mknod -m 666 /dev/null c 1 3 && mknod -m 666 /dev/zero c 1 5",
        "mknod -m 666 /dev/random c 1 8 && mknod -m 666 /dev/urandom c 1 9",
    ]
    if node is not None:
        group, mode = node
        setup.append(f"mknod -m {mode:o} /dev/ttyAMA0 c 204 64 && chown root:{group} /dev/ttyAMA0")
    flags = [*wallet_flags(wallet)[2:], "--reader", "nfcpy", "--reader-device", "tty:AMA0:pn532"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAPTILL_")}
    env["TAPTILL_WALLET_TOKEN"] = wallet.api_token
    out_file = tmp_path / "provision.json"
    command = [sys.executable, "-m", "provisioning.provision", "--dry-run", "--json", *flags]
    setpriv = f"{tool('setpriv')} --reuid={uid} --regid={uid}"
    script = "\n".join(
        [
            *setup,
            f"set +e; {' '.join(q(a) for a in command)} > {q(str(out_file))}; echo provision=$?",
            f"{setpriv} --groups=dialout test -r /dev/ttyAMA0 -a -w /dev/ttyAMA0; echo with_dialout=$?",
            f"{setpriv} --clear-groups test -r /dev/ttyAMA0 -a -w /dev/ttyAMA0; echo without=$?",
        ]
    )
    proc = subprocess.run(
        [tool("unshare"), "-m", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=env,
    )
    codes = dict(line.split("=") for line in proc.stdout.splitlines() if "=" in line)
    proc.stdout = out_file.read_text() if out_file.exists() else ""
    return proc, {k: int(v) for k, v in codes.items()}


def test_a_uart_reader_gets_dialout_and_nothing_else(tmp_path: Path, wallet: WalletEmulator) -> None:
    proc, codes = provision_with_tty(tmp_path, wallet, ("dialout", 0o660))
    assert codes["provision"] == EXIT_CHANGED, proc.stdout + proc.stderr
    out = json.loads(proc.stdout)
    assert out["reader"]["kind"] == "nfcpy" and out["reader"]["device"] == "tty:AMA0:pn532"
    assert out["devices"] == {"groups": ["dialout"], "nodes": ["/dev/ttyAMA0"], "checked": True}
    assert "+SupplementaryGroups=dialout\n" in out["diff"]
    assert "+g dialout -\n" in out["diff"]
    assert '+device = "tty:AMA0:pn532"\n' in out["diff"]
    assert out["program"]["install"] is True and "[nfc]" not in out["program"]["venv"]
    # The kernel agrees with the check: the unit's group opens the node, no group does not.
    assert (codes["with_dialout"], codes["without"]) == (0, 1)


@pytest.mark.parametrize(
    ("node", "named"),
    [
        (("tty", 0o620), "/dev/ttyAMA0 is root:tty 0620, which user taptill (groups dialout) cannot open"),
        (None, "/dev/ttyAMA0 does not exist"),
    ],
)
def test_a_uart_the_service_user_could_not_open_is_refused(
    tmp_path: Path, wallet: WalletEmulator, node: tuple[str, int] | None, named: str
) -> None:
    """A serial console on the UART leaves it root:tty 0620: the unit would start and never read a card."""
    proc, codes = provision_with_tty(tmp_path, wallet, node)
    assert codes["provision"] == EXIT_MISSING, proc.stdout + proc.stderr
    message = json.loads(proc.stdout)["message"]
    assert named in message and "do_serial_cons 1" in message, message
    if node is not None:
        assert codes["with_dialout"] != 0  # the kernel agrees: dialout would not help


# --- GPIO under the sandbox: gpiozero's real import path with lgpio ------------------------------------

# What gpiozero does before its first pin, run as the unit runs ExecStart: lgpio's import makes its
# notification FIFO, gpiozero reads the Pi's revision from /proc and builds the (pinned) pin factory.
GPIO_PROBE = """
import json, os, warnings
out = {}
try:
    import lgpio
    out["lgpio"] = "imported"
except Exception as exc:
    out["lgpio"] = f"{type(exc).__name__}: {exc}"
out["cwd"] = os.getcwd()
from gpiozero import Device
from gpiozero.pins.local import get_pi_revision
try:
    out["revision"] = hex(get_pi_revision())
except Exception as exc:
    out["revision"] = type(exc).__name__
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    try:
        Device._default_pin_factory()
        out["factory"] = "ok"
    except Exception as exc:
        out["factory"] = f"{type(exc).__name__}: {exc}"
out["fallbacks"] = [str(w.message) for w in caught]
print("PROBE " + json.dumps(out))
"""


def with_gpio_libraries(unit: str, module_argv: list[str]) -> list[str]:
    """The image's own Python (ExecStopPost's) running ``module_argv`` with gpiozero and lgpio from this
    venv: the image was provisioned without [gpio], and this venv's interpreter lives under /root, which
    ProtectHome=yes hides. This checkout comes first, so its relay reset is the one run."""
    # Found, not imported: importing lgpio here would leave its FIFO in the test's working directory.
    python = shlex.split(service_options(unit)["ExecStopPost"][-1].lstrip("-"))[0]
    return ["env", f"PYTHONPATH={':'.join(gpio_paths())}", python, *module_argv]


def gpio_paths() -> list[str]:
    """This checkout and the directories gpiozero and lgpio are imported from (PYTHONPATH order)."""
    libraries: set[str] = set()
    for name in ("gpiozero", "lgpio"):
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin, f"{name} is missing: pip install -e '.[dev]'"
        top = Path(spec.origin).resolve().parent
        libraries.add(str(top.parent if spec.submodule_search_locations else top))
    return [str(REPO), *sorted(libraries)]


def run_in_unit(
    box: Sandbox, unit: str, argv: list[str], *, as_root: bool = False, running: bool = True
) -> str:
    # A checkout in /home, /root or /tmp stays visible to the unit's process (the PYTHONPATH above).
    proc = box.start(unit, argv, as_root=as_root, running=running, keep=gpio_paths())
    out, _ = proc.communicate(timeout=120)
    return out


def probe(box: Sandbox, unit: str) -> dict[str, object]:
    out = run_in_unit(box, unit, with_gpio_libraries(unit, ["-c", GPIO_PROBE]))
    lines = [line for line in out.splitlines() if line.startswith("PROBE ")]
    assert lines, out
    result: dict[str, object] = json.loads(lines[-1].removeprefix("PROBE "))
    return result


def as_before(unit: str) -> str:
    """The unit as it was before GPIO was looked at: no LG_WD or pinned factory (one line), ProcSubset=pid."""
    kept = [line for line in unit.splitlines() if "LG_WD=" not in line]
    return "\n".join(kept).replace("ProtectProc=invisible", "ProtectProc=invisible\nProcSubset=pid") + "\n"


def test_gpiozero_and_lgpio_load_inside_the_unit_sandbox(image: Path, tmp_path: Path) -> None:
    """lgpio writes its FIFO into LG_WD (the RuntimeDirectory), nothing into the read-only working
    directory; /proc shows gpiozero the board revision; the factory is lgpio alone, no fallback to
    /dev/gpiomem. This machine has no GPIO chip: the factory stops at the board check (a Pi passes it)."""
    unit = (image / "etc/systemd/system/taptill.service").read_text()
    box, notify = sandbox(image, tmp_path / "now")
    notify.close()
    found = probe(box, unit)
    assert found["lgpio"] == "imported", found
    assert found["cwd"] == "/run/taptill"  # lgpio chdirs to LG_WD
    fifos = list(box.run.glob(".lgd-nfy*"))
    assert fifos and all(f.stat().st_uid == box.uid for f in fifos), found
    assert found["revision"] != "FileNotFoundError", found  # /proc/cpuinfo and /proc/device-tree visible
    assert found["fallbacks"] == [], found  # GPIOZERO_PIN_FACTORY=lgpio: nothing else is tried
    assert found["factory"] == "ok" or str(found["factory"]).startswith("PinUnknownPi"), found

    # The same probe under the unit as it was: lgpio cannot import in /, gpiozero falls back to the
    # libraries that need /dev/gpiomem, and the revision is hidden by ProcSubset=pid.
    before, notify = sandbox(image, tmp_path / "before")
    notify.close()
    found = probe(before, as_before(unit))
    assert str(found["lgpio"]).startswith("FileNotFoundError") and ".lgd-nfy" in str(found["lgpio"]), found
    assert found["cwd"] == "/" and not list(before.run.glob(".lgd-nfy*"))
    assert found["revision"] == "FileNotFoundError", found
    assert "Falling back from lgpio" in str(found["fallbacks"]), found
    assert str(found["factory"]).startswith("BadPinFactory"), found


def test_the_relay_reset_reaches_lgpio_inside_the_unit_sandbox(image: Path, tmp_path: Path) -> None:
    """ExecStopPost runs with the unit's environment and sandbox: its gpiozero gets as far as the board
    check (on a Pi: the pins), and it reports in one line, not a traceback."""
    unit = (image / "etc/systemd/system/taptill.service").read_text()
    exec_stop_post = shlex.split(service_options(unit)["ExecStopPost"][-1].lstrip("-"))
    assert exec_stop_post[1:3] == ["-m", "provisioning.relay_reset"]
    box, notify = sandbox(image, tmp_path)
    notify.close()
    box.state.mkdir(parents=True)
    config = (image / "etc/taptill/config.toml").read_text() + "\n[gpio]\nenabled = true\nrelay_pin = 17\n"
    (box.state / "config.toml").write_text(config)
    argv = with_gpio_libraries(unit, [*exec_stop_post[1:-1], "/var/lib/taptill/config.toml"])
    out = run_in_unit(box, unit, argv)
    assert "Traceback" not in out, out
    assert out.startswith("relay_reset: could not release the relays (PinUnknownPi") or (
        "GPIO17 is an input again" in out
    ), out
    assert list(box.run.glob(".lgd-nfy*")), out


# --- a top-up kiosk: its operator key reaches the service user -----------------------------------------

OPERATOR = "0000BEEF"


@pytest.fixture(scope="module")
def kiosk(tmp_path_factory: pytest.TempPathFactory, program_image: Path, wallet: WalletEmulator) -> Path:
    """A top-up kiosk provisioned into an image with its operators as answers, made under the key that
    `sudo taptill operator add` left on the terminal: root's, 0600, /etc/taptill/operator.key."""
    folder = tmp_path_factory.mktemp("kiosk")
    root = folder / "image"
    seed_program(program_image, root)
    key = root / "etc/taptill/operator.key"
    key.parent.mkdir(parents=True)
    create_operator_key(key)
    answers = folder / "answers.toml"
    answers.write_text(
        '[terminal]\nmode = "topup"\ndescription = "Kasse"\n'
        '[topup]\noperator_key_file = "/etc/taptill/operator.key"\n'
        'buttons = { ten = "topup_10" }\nclear_button = "clear"\n'
        f"[topup.operators]\n{operator_line(key, 'olga', OPERATOR)}\n"
    )
    answers.chmod(0o600)
    flags = ["--answers", str(answers), "--reader", "sim", "--wallet-url", wallet.base_url]
    proc = provision(root, *flags, token=wallet.api_token)
    assert proc.returncode == EXIT_CHANGED, proc.stdout + proc.stderr
    return root


def test_a_provisioned_kiosk_unlocks_as_the_service_user_which_the_unit_without_its_key_could_not(
    kiosk: Path, wallet: WalletEmulator, tmp_path: Path
) -> None:
    """The unit runs as user taptill, which cannot open root's key: provisioning passes it as the
    credential topup.operator_key. The unit alone (as provisioning wrote it before) cannot start."""
    unit_alone = (kiosk / "etc/systemd/system/taptill.service").read_text()
    assert "topup.operator_key" not in service_options(unit_alone).get("LoadCredential", [""])[0]
    box, notify = sandbox(kiosk, tmp_path / "before")
    code, out = until_ready_then_stop(box.start(unit_alone), notify)
    notify.close()
    assert code == 2 and not notify.times_of("READY=1")
    assert "secret file /etc/taptill/operator.key is not readable by this user" in out, out
    assert "Traceback" not in out

    unit = installed_unit(kiosk)  # the unit with its drop-ins, as systemd reads it
    assert unit is not None
    assert "topup.operator_key:/etc/taptill/operator.key" in service_options(unit)["LoadCredential"]
    box, notify = sandbox(kiosk, tmp_path / "now")
    service = box.start(unit)
    try:
        wait_for(
            lambda: bool(notify.times_of("READY=1")) or service.poll() is not None,
            timeout=60,
            what="READY=1 from the service",
        )
        for line in (f"tap {OPERATOR}", "press ten", f"tap {ERIKA}"):
            assert send_command(box.run / "tap.sock", line) == "ok"
        wait_for(
            lambda: any((t.description or "").endswith("/ operator olga") for t in wallet.transactions()),
            what="a top-up after olga's card unlocked the kiosk",
        )
    finally:
        code, out = until_ready_then_stop(service, notify)
        notify.close()
    assert code == 0, out


def doctor_lines(out: str) -> list[dict[str, dict[str, str]]]:
    """Each `taptill doctor --json` run in ``out`` as check name → {status, detail}."""
    runs = [json.loads(line) for line in out.splitlines() if line.startswith("[")]
    return [{c["name"]: c for c in checks} for checks in runs]


def test_doctor_checks_the_key_the_service_gets_as_root_and_as_the_service_user(
    kiosk: Path, tmp_path: Path
) -> None:
    """Root reads the file the unit loads; the service user inside the unit its credential, outside it
    the running service's copy: the same key each time. Against the unit without the key's credential,
    root's doctor says the service could not read it."""
    unit = installed_unit(kiosk)
    assert unit is not None
    doctor = [str(DEFAULT_PREFIX / "venv/bin/taptill"), "doctor", "--config", "/etc/taptill/config.toml"]
    both = (
        shlex.join([*doctor, "--json"]) + "; env -u CREDENTIALS_DIRECTORY " + shlex.join([*doctor, "--json"])
    )
    box, notify = sandbox(kiosk, tmp_path / "user")
    notify.close()
    inside, outside = doctor_lines(run_in_unit(box, unit, ["sh", "-c", both]))
    box, notify = sandbox(kiosk, tmp_path / "stopped")
    notify.close()
    alone = ["env", "-u", "CREDENTIALS_DIRECTORY", *doctor, "--json"]
    (stopped,) = doctor_lines(run_in_unit(box, unit, alone, running=False))
    # `sudo taptill operator add` on the terminal: the key the unit loads, not a new one
    add = f"echo 04AABBCCDDEEFF | {doctor[0]} operator add anna --config /etc/taptill/config.toml 2>&1"
    box, notify = sandbox(kiosk, tmp_path / "root")
    notify.close()
    out = run_in_unit(box, unit, ["sh", "-c", f"{shlex.join([*doctor, '--json'])}; {add}"], as_root=True)
    (as_root,) = doctor_lines(out)
    olga = tomllib.loads((kiosk / "etc/taptill/config.toml").read_text())["topup"]["operators"]["olga"]
    (anna,) = [line for line in out.splitlines() if line.startswith("anna = ")]
    assert anna.split(":")[1] == olga.split(":")[1] and "created" not in out, out  # the same key id

    made = "1 operator made under "
    assert inside["operators"]["detail"] == made + "the topup.operator_key credential", inside
    assert outside["operators"]["detail"] == made + "the running service's topup.operator_key credential"
    assert "the running service's wallet.token credential" in outside["secrets"]["detail"], outside
    assert as_root["operators"] == {
        "name": "operators",
        "status": "OK",
        "detail": made + "/etc/taptill/operator.key (the unit's topup.operator_key credential)",
    }
    for run in (inside, outside, as_root):
        assert run["secrets"]["status"] == "OK" and run["server"]["status"] == "OK", run
    # the service user while the service is stopped: root's files are out of its reach, as they should be
    assert stopped["operators"]["status"] == "WARN" and stopped["secrets"]["status"] == "WARN", stopped
    assert stopped["operators"]["detail"].startswith(
        "/etc/taptill/operator.key is root's, as it should be: the unit passes it to the service as "
        "credential topup.operator_key; run `sudo taptill doctor`"
    ), stopped
    assert stopped["server"]["status"] == "WARN" and "FAIL" not in str(stopped), stopped

    dropin = kiosk / "etc/systemd/system/taptill.service.d/topup.conf"
    kept = dropin.read_text()
    dropin.unlink()  # the unit as provisioning wrote it before
    try:
        box, notify = sandbox(kiosk, tmp_path / "before")
        notify.close()
        (before,) = doctor_lines(run_in_unit(box, unit_alone(kiosk), [*doctor, "--json"], as_root=True))
    finally:
        dropin.write_text(kept)
    assert before["operators"]["status"] == "FAIL"
    assert before["operators"]["detail"].startswith(
        "/etc/systemd/system/taptill.service passes no credential topup.operator_key, and its user taptill "
        "cannot read /etc/taptill/operator.key: the service would not start; run taptill-provision again"
    ), before


def unit_alone(root: Path) -> str:
    return (root / "etc/systemd/system/taptill.service").read_text()
