"""Start the Flask baseline on this machine for a comparison, and stop it by its PID.

gunicorn with sync workers, each loading its own copy of the model with ``pickle.load`` (no
``--preload``), as the post's server does. It listens on a free loopback port; ``start``
returns once ``POST /predict`` answers the first body, within ``timeout_s``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from lambdaserve.errors import LambdaserveError

HOST = "127.0.0.1"


@contextlib.contextmanager
def flask_server(
    model_file: Path, body: bytes, *, workers: int = 2, timeout_s: float = 60.0
) -> Iterator[str]:
    """The Flask app serving ``model_file`` under gunicorn; yields its /predict URL."""
    missing = [name for name in ("flask", "gunicorn") if importlib.util.find_spec(name) is None]
    if missing:
        raise LambdaserveError(
            f"The Flask comparison needs {' and '.join(missing)}, which are not installed.",
            "pip install flask gunicorn",
        )
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]
    command = gunicorn_command(HOST, port, workers)
    env = {**os.environ, "MODEL_PATH": str(model_file.resolve())}
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=output, stderr=output)
        try:
            url = f"http://{HOST}:{port}/predict"
            _wait_until_answering(url, body, process, timeout_s, output)
            yield url
        finally:
            _stop(process)


def _wait_until_answering(
    url: str, body: bytes, process: subprocess.Popen[bytes], timeout_s: float, output: object
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LambdaserveError(f"The Flask server exited ({process.returncode}) before answering.")
        request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:  # loopback, our own server
                if answer.status == 200:
                    return
        except urllib.error.HTTPError as exc:  # it listens, and refuses the body
            raise LambdaserveError(
                f"The Flask app answered {exc.code} to the body: the post's server passes the JSON body "
                "to model.predict as it is, with none of lambdaserve's shaping.",
                "Compare with a body that model.predict takes as it is (--data), e.g. rows, not records.",
            ) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise LambdaserveError(f"The Flask server did not answer within {timeout_s:.0f} s.")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the arbiter (it stops its workers), then SIGKILL if it lingers."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def gunicorn_command(host: str, port: int, workers: int) -> list[str]:
    """The Flask app under gunicorn with sync workers (no --preload, as the post): the command,
    to run with MODEL_PATH set to the model file."""
    command = [sys.executable, "-m", "gunicorn", "--workers", str(workers), "--bind", f"{host}:{port}"]
    from gunicorn.config import KNOWN_SETTINGS

    if any(setting.name == "control_socket_disable" for setting in KNOWN_SETTINGS):
        command.append("--no-control-socket")  # gunicorn >= 25.1 would share ~/.gunicorn/gunicorn.ctl
    return [*command, "lambdaserve.baselines.flask_app:app"]
