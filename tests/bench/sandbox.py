"""The payment sandbox for the benches that charge (payments.py, sweeps.py): `python -m
billing.sandbox` (localstripe) on a loopback port, started and waited for."""
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def start(port: int, log_file) -> subprocess.Popen:
    """The sandbox on `port`, answering; exits the bench if it does not start."""
    process = subprocess.Popen(
        [sys.executable, "-m", "billing.sandbox", "--port", str(port)], cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=log_file, stderr=log_file)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the sandbox exited with {process.returncode}; see {log_file.name}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/js.stripe.com/v3/", timeout=2)
            return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"the sandbox did not answer on port {port}; see {log_file.name}")
