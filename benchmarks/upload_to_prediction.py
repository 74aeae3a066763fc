"""Time from the end of a model upload to the first successful prediction (issue 5: under 5 s).

What the console does, through the same admin API, for the 10 MB newsgroups model:

1. ``POST /_/api/uploads`` streams the file (timed, but not part of the target);
2. ``POST /_/api/models/news/versions`` checks it (scan, load, sample), publishes version 1,
   points stage ``test`` at it, starts its INIT and makes a key;
3. ``POST /test/news/predict`` with that key, at once, as a user's first request.

The target is the time from the end of step 1 to the answer of step 3. Each round starts a
fresh ``lambdaserve serve`` (own state directory, free port) with nothing registered, so
nothing is warm but the OS's file cache; the server is stopped by its PID.

    .venv/bin/python benchmarks/upload_to_prediction.py            # 5 rounds
    .venv/bin/python benchmarks/upload_to_prediction.py --rounds 3 --model path/to/model.pickle
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
LAMBDASERVE = Path(sys.executable).with_name("lambdaserve")
SAMPLE = ["the space shuttle launch"]
POST = b'["The rocket reached orbit and the crew saw the moon"]'


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def one_round(model: Path, workdir: Path) -> dict[str, float]:
    output = workdir / "serve.out"
    with output.open("wb") as stdout, (workdir / "serve.err").open("wb") as stderr:
        server = subprocess.Popen(
            [
                str(LAMBDASERVE),
                "serve",
                "--state-dir",
                str(workdir / "state"),
                "--port",
                str(free_port()),
                "--json",
            ],
            stdout=stdout,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + 60
        while not output.read_text().endswith("\n"):
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"serve did not start: {(workdir / 'serve.err').read_text()}")
            time.sleep(0.05)
        info = json.loads(output.read_text().splitlines()[0])
        token = (workdir / "state" / "admin-token").read_text().strip()
        admin = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=info["base"], timeout=120) as client:
            started = time.perf_counter()
            with model.open("rb") as f:
                upload = client.post(
                    "/_/api/uploads", params={"filename": model.name}, content=f, headers=admin
                )
            uploaded = time.perf_counter()
            upload.raise_for_status()
            published = client.post(
                "/_/api/models/news/versions",
                json={"upload": upload.json()["upload"], "sample": SAMPLE, "key": {"name": "bench"}},
                headers=admin,
            )
            publish_done = time.perf_counter()
            published.raise_for_status()
            key = published.json()["key"]["value"]
            answer = client.post("/test/news/predict", content=POST, headers={"x-api-key": key})
            answered = time.perf_counter()
            if answer.status_code != 200:
                raise SystemExit(f"first prediction failed: {answer.status_code} {answer.text}")
        return {
            "upload_s": uploaded - started,
            "publish_s": publish_done - uploaded,
            "first_prediction_s": answered - publish_done,
            "upload_end_to_prediction_s": answered - uploaded,
            "check_s": published.json()["check_ms"] / 1000,
        }
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--model", type=Path, default=ROOT / "examples" / "newsgroups" / "model.pickle")
    args = parser.parse_args()
    if not args.model.is_file():
        raise SystemExit(
            f"{args.model} is missing: make it with examples/newsgroups/train.py -o {args.model}"
        )
    print(f"model {args.model} ({args.model.stat().st_size / 1e6:.1f} MB), {os.cpu_count()} cores")
    rounds = []
    for n in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="upload-bench-") as workdir:
            timings = one_round(args.model, Path(workdir))
        rounds.append(timings)
        print(f"round {n + 1}: " + "  ".join(f"{k} {v:.2f}" for k, v in timings.items()), flush=True)
    print("median: " + "  ".join(f"{k} {statistics.median(r[k] for r in rounds):.2f}" for k in rounds[0]))


if __name__ == "__main__":
    main()
