"""A soak: ten minutes at 80% of the measured capacity, with an API key on a usage plan.

Issue 16's last target: at 80% of what the server can do, memory stays flat, no request
fails and the p99 holds, for ten minutes. lambdaserve serves the newsgroups bundle with 2
environments; every request carries a key on a plan (unlimited, so no request is refused
and every one goes through the key and plan checks). First the capacity: wrk at
``CONNECTIONS`` connections without pause. Then a paced load (``post_bodies.lua`` with
WRK_DELAY_MS: each connection waits after an answer) is calibrated on short probes to 80%
of it, and run in windows of ``WINDOW_S``; after each window the pause is corrected
towards 80% (the pace drifts as the machine does), and the whole process tree's memory is
read (PSS and RSS, /proc/PID/smaps_rollup). At the end the soaked server's capacity is
measured against a freshly started one's, in three interleaved rounds: the machine's own
drift over ten minutes (up to 2x between days) must not pass for the server slowing down.

Verdicts (printed; the test fails only on errors or a server that stops answering):
memory flat (the tree's PSS and the gateway's RSS in the last window within 5% of the
second window's: the first holds the warm-up's growth), p99 stable (no window's p99 above
twice the median window's), p99 at most 3x p50 in every window, and the soaked server's
capacity at least 0.95 of the fresh one's (median of the rounds). Length: $SOAK_SECONDS
(600); raw results in $SOAK_OUT (/tmp/lambdaserve-soak.json).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import harness
import loadtest
import pytest

pytestmark = pytest.mark.perf

SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "600"))
SOAK_OUT = Path(os.environ.get("SOAK_OUT", "/tmp/lambdaserve-soak.json"))
WINDOW_S = 30.0
CONNECTIONS = 64  # many connections with a pause each: 1 ms of pause moves the pace ~5%
SHARE = 0.8
PROBE_S = 4.0


def next_delay_ms(rate: float, result: loadtest.LoadResult, delay_ms: int) -> int:
    """The pause that makes ``CONNECTIONS`` closed-loop connections send ``rate`` requests/s,
    given what the last load did: a connection's cycle is its latency plus its pause."""
    latency_ms = max(0.0, 1000 * CONNECTIONS / result.requests_per_s - delay_ms)
    return max(1, round(1000 * CONNECTIONS / rate - latency_ms))


def test_soak_at_80_percent_of_capacity(
    bundle: Path, workdir: Path, bodies: dict[int, Path], first_body: bytes
) -> None:
    server = harness.launch_lambdaserve(bundle, workdir, plan=[])
    windows: list[dict[str, Any]] = []
    try:
        harness.start(server, first_body)
        loadtest.run_load(server, bodies[1], 32, 3)  # every environment forked and warm
        capacity = loadtest.run_load(server, bodies[1], CONNECTIONS, 8)
        assert capacity.errors == 0, capacity.output
        rate = SHARE * capacity.requests_per_s
        delay = max(1, round(1000 * CONNECTIONS / rate))  # as if answers took no time
        for _ in range(6):  # calibrate: within 4% of the pace, or the closest of 6 probes
            probe = loadtest.run_load(server, bodies[1], CONNECTIONS, PROBE_S, delay_ms=delay)
            if abs(probe.requests_per_s / rate - 1) <= 0.04:
                break
            delay = next_delay_ms(rate, probe, delay)
        started = time.monotonic()
        while time.monotonic() - started < SOAK_SECONDS:
            result = loadtest.run_load(server, bodies[1], CONNECTIONS, WINDOW_S, delay_ms=delay)
            tree = harness.tree_memory(server.pid)
            gateway = next(m for m in tree if m.pid == server.pid)
            windows.append(
                {
                    "minute": round((time.monotonic() - started) / 60, 2),
                    "delay_ms": delay,
                    "requests_per_s": result.requests_per_s,
                    "share": result.requests_per_s / capacity.requests_per_s,
                    "p50_ms": result.p50_ms,
                    "p99_ms": result.p99_ms,
                    "max_ms": result.max_ms,
                    "errors": result.errors,
                    "processes": len(tree),
                    "pss_mib": sum(m.pss_kib for m in tree) / 1024,
                    "rss_mib": sum(m.rss_kib for m in tree) / 1024,
                    "gateway_rss_mib": gateway.rss_kib / 1024,
                    "cores": result.cores,
                }
            )
            failed = f"window {len(windows)}: {result.non_2xx} non-2xx, {result.socket_errors}"
            assert result.errors == 0, failed
            delay = next_delay_ms(rate, result, delay)
        fresh = harness.launch_lambdaserve(bundle, workdir, plan=[])
        try:
            harness.start(fresh, first_body)
            loadtest.run_load(fresh, bodies[1], 32, 3)
            after = []
            for round_ in range(3):
                pair = [server, fresh] if round_ % 2 == 0 else [fresh, server]
                measured = {id(s): loadtest.run_load(s, bodies[1], CONNECTIONS, 6) for s in pair}
                assert all(m.errors == 0 for m in measured.values()), measured
                after.append((measured[id(server)], measured[id(fresh)]))
        finally:
            fresh.stop()
    finally:
        server.stop()
    report(capacity, after, windows)


def report(
    capacity: loadtest.LoadResult,
    after: list[tuple[loadtest.LoadResult, loadtest.LoadResult]],
    windows: list[dict[str, Any]],
) -> None:
    machine = loadtest.machine()
    print(
        f"\n{machine['date']}: {machine['cpu']}, {machine['cores']} cores, Python {machine['python']}, "
        f"commit {machine['commit']}; {len(windows)} windows of {WINDOW_S:.0f} s at {CONNECTIONS} connections"
    )
    kept = [soaked.requests_per_s / fresh.requests_per_s for soaked, fresh in after]
    print(
        f"capacity before: {capacity.requests_per_s:,.0f} requests/s (p99 {capacity.p99_ms:.1f} ms); after, "
        "soaked / fresh server: "
        + ", ".join(f"{s.requests_per_s:,.0f} / {f.requests_per_s:,.0f}" for s, f in after)
        + f" = {' / '.join(f'{k:.3f}' for k in kept)}"
    )
    print(
        "| minute | share of capacity | p50 ms | p99 ms | max ms | errors "
        "| tree PSS MiB | tree RSS MiB | gateway RSS MiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for w in windows:
        print(
            f"| {w['minute']:.1f} | {w['share']:.2f} | {w['p50_ms']:.2f} | {w['p99_ms']:.1f} "
            f"| {w['max_ms']:.0f} | {w['errors']} | {w['pss_mib']:.1f} | {w['rss_mib']:.1f} "
            f"| {w['gateway_rss_mib']:.1f} |"
        )
    base = windows[1] if len(windows) > 1 else windows[0]
    last = windows[-1]
    pss_growth = last["pss_mib"] / base["pss_mib"]
    gateway_growth = last["gateway_rss_mib"] / base["gateway_rss_mib"]
    p99s = [w["p99_ms"] for w in windows]
    p99_spread = max(p99s) / statistics.median(p99s)
    tails = [w["p99_ms"] / w["p50_ms"] for w in windows]
    shares = [w["share"] for w in windows]
    verdicts = [
        ("no errors", sum(w["errors"] for w in windows) == 0, f"{sum(w['errors'] for w in windows)}"),
        ("tree PSS, last / second window <= 1.05", pss_growth <= 1.05, f"{pss_growth:.3f}"),
        ("gateway RSS, last / second window <= 1.05", gateway_growth <= 1.05, f"{gateway_growth:.3f}"),
        ("p99, worst window / median window <= 2", p99_spread <= 2, f"{p99_spread:.2f}"),
        ("p99 / p50 <= 3 in every window", max(tails) <= 3, f"{min(tails):.2f}-{max(tails):.2f}"),
        (
            "capacity after, soaked / fresh server >= 0.95",
            statistics.median(kept) >= 0.95,
            f"{statistics.median(kept):.3f}",
        ),
    ]
    held = f"{min(shares):.2f}-{max(shares):.2f} (median {statistics.median(shares):.2f})"
    print(f"load held at {held} of capacity")
    for what, passed, measured in verdicts:
        print(f"{'PASS' if passed else 'FAIL'}  {what}: {measured}")
    SOAK_OUT.write_text(
        json.dumps(
            {
                "machine": machine,
                "capacity": capacity.to_dict(),
                "after": [{"soaked": s.to_dict(), "fresh": f.to_dict()} for s, f in after],
                "windows": windows,
                "verdicts": [{"what": w, "passed": p, "measured": m} for w, p, m in verdicts],
            },
            indent=2,
        )
    )
    print(f"Raw results: {SOAK_OUT}")
