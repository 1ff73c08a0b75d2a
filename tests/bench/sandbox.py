"""What the benches start beside Kanri: a free loopback port, and for the benches that charge
(payments.py, sweeps.py) the payment sandbox, `python -m billing.sandbox` (localstripe), started
and waited for. No Django here: the benches import it before they set Django up."""
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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
