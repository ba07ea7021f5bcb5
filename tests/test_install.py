"""`pip install .` as a user does it: a wheel of the project in a fresh venv gives a working `peerbackup`.

The wheel is built from a copy of the project's packaging inputs (pyproject.toml, README.md,
peerbackup/), not in the checkout: setuptools would write build/ and *.egg-info there, and a stale
build/lib would leak removed modules into the wheel. The venv is made without --system-site-packages
and the wheel's dependencies come from the package index pip is configured with, so a dependency
missing from pyproject.toml fails here. Then, with the installed copy only: `--version`, the systemd
unit inside the installed package (docs/install.md tells admins to copy it from there), and the
unit's command itself: `peerbackup up` on a fresh home starts and stops cleanly on SIGTERM.

Offline (pip cannot reach the index), the wheel is installed with `--no-deps --target` and run by
the interpreter of the venv running this test, which has the dependencies: everything above is still
checked except that the declared dependencies suffice, and a warning says so.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UNIT = "peerbackup.service"
# What pip prints when it cannot reach the index at all (as opposed to the index refusing a requirement).
OFFLINE = re.compile(r"NewConnectionError|Failed to establish a new connection|Temporary failure in name resolution"
                     r"|Name or service not known|Network is unreachable|ConnectTimeoutError|ReadTimeoutError"
                     r"|ProxyError")
# An unreachable index fails in seconds rather than after pip's default retries.
PIP_ENV = {"PIP_DEFAULT_TIMEOUT": "30", "PIP_RETRIES": "2"}
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def project_version() -> str:
    m = re.search(r'^__version__\s*=\s*"([^"]+)"', (ROOT / "peerbackup" / "__init__.py").read_text(), re.M)
    assert m, "no __version__ in peerbackup/__init__.py"
    return m.group(1)


def copy_sources(dest: Path) -> Path:
    """What setuptools reads to build the wheel; any other packaging file the project may grow too."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md", "setup.cfg", "setup.py", "MANIFEST.in", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, dest / name)
    shutil.copytree(ROOT / "peerbackup", dest / "peerbackup",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    return dest


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without anything that would let the install see the checkout or .venv."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PYTHONNOUSERSITE"] = "1"
    return env | extra


def run(cmd: list[str | Path], cwd: Path, timeout: float, env: dict[str, str] | None = None,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env or clean_env(), capture_output=True, text=True,
                          timeout=timeout)
    if check:
        assert proc.returncode == 0, f"{' '.join(map(str, cmd))} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


@dataclass(frozen=True)
class Install:
    python: Path  # runs the installed package
    peerbackup: Path  # the installed console script
    where: Path  # everything installed lives under it
    env: dict[str, str]


def install(wheel: Path, tmp: Path, work: Path) -> Install:
    venv = tmp / "venv"
    run([sys.executable, "-m", "venv", venv], work, 120)
    proc = run([venv / "bin" / "python", "-m", "pip", "install", wheel], work, 400, clean_env(**PIP_ENV), check=False)
    if proc.returncode == 0:
        return Install(venv / "bin" / "python", venv / "bin" / "peerbackup", venv, clean_env())
    if not OFFLINE.search(proc.stdout + proc.stderr):
        raise AssertionError(f"installing the wheel and its dependencies into a fresh venv failed\n"
                             f"{proc.stdout}\n{proc.stderr}")
    warnings.warn("the package index is unreachable: the wheel was installed without its dependencies and run "
                  "by this test's interpreter, so whether pyproject.toml declares them all was not checked",
                  stacklevel=2)
    target = tmp / "target"
    run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", target, wheel], work, 120)
    return Install(Path(sys.executable), target / "bin" / "peerbackup", target, clean_env(PYTHONPATH=str(target)))


def test_wheel_installs_a_working_peerbackup_with_its_systemd_unit(tmp_path: Path) -> None:
    version = project_version()
    src = copy_sources(tmp_path / "src")
    dist, work = tmp_path / "dist", tmp_path / "work"
    work.mkdir()

    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", dist, src], work, 300, clean_env(**PIP_ENV))
    wheel = dist / f"peerbackup-{version}-py3-none-any.whl"
    assert wheel.exists(), f"no {wheel.name} in {sorted(p.name for p in dist.iterdir())}"
    with zipfile.ZipFile(wheel) as zf:
        in_wheel = f"peerbackup/data/{UNIT}" in zf.namelist()
    assert in_wheel, ("the systemd unit is not in the wheel: pyproject.toml needs "
                      '[tool.setuptools.package-data] peerbackup = ["data/*.service"]')

    inst = install(wheel, tmp_path, work)
    pb = inst.peerbackup
    assert run([pb, "--version"], work, 60, inst.env).stdout == f"peerbackup {version}\n"

    # The unit is where docs/install.md says, in the installed package (not the checkout).
    where = run([inst.python, "-c", "import peerbackup, pathlib; "
                 f"print(pathlib.Path(peerbackup.__file__).parent / 'data' / {UNIT!r})"], work, 60, inst.env)
    installed = Path(where.stdout.strip())
    assert installed.is_relative_to(inst.where), f"peerbackup imported from {installed}, not from {inst.where}"
    assert installed.read_bytes() == (ROOT / "peerbackup" / "data" / UNIT).read_bytes()
    assert "ExecStart=/usr/local/bin/peerbackup up --home /var/lib/peerbackup\n" in installed.read_text()

    # What the unit runs, with the installed command.
    home = work / "home"
    (work / "kit-password").write_text("install test passphrase\n")
    run([pb, "init", "--home", home, "--office", "Install", "--name", "solo",
         "--password-file", work / "kit-password"], work, 120, inst.env)
    daemon = subprocess.Popen([str(pb), "up", "--home", str(home), "--listen", "127.0.0.1:0", "--no-mdns"],
                              cwd=work, env=inst.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (home / "admin.json").exists():
            assert daemon.poll() is None, f"`peerbackup up` exited {daemon.returncode}\n{daemon.communicate()[0]}"
            assert time.monotonic() < deadline, "`peerbackup up` did not start its admin API within 60 s"
            time.sleep(0.1)
        status = json.loads(run([pb, "status", "--home", home, "--json"], work, 60, inst.env).stdout)
        assert status["name"] == "solo"
        daemon.send_signal(signal.SIGTERM)  # what `systemctl stop` sends
        out, _ = daemon.communicate(timeout=30)
        assert daemon.returncode == 0, f"`peerbackup up` exited {daemon.returncode} on SIGTERM\n{out}"
        assert not (home / "admin.json").exists(), "a clean stop removes admin.json"
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate()
