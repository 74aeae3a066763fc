"""Decompression bombs: a few kilobytes that would expand to a gigabyte are refused in bounded memory.

joblib files are scanned as a stream within a bound on what they may decompress to, and a
pickle literal that declares more than that bound is refused before it is read; skops
archives are refused on what their entries declare, before any is read. The peak memory of
``lambdaserve inspect`` (a process of its own, measured by the kernel) and of a serving
gateway that is sent the bombs through the console stays within a few hundred MB.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import struct
import subprocess
import sys
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from gateway_support import Served, ServerPool

from lambdaserve.runtime.errors import ModelLoadError
from lambdaserve.runtime.models import load_model

GIB = 1 << 30
CHUNK = 16 << 20
# A pickle that holds one gigabyte-long bytes literal (BINBYTES8): as written by a bomb.
HEADER = b"\x80\x04\x8e" + struct.pack("<Q", GIB)
PEAK_LIMIT_MB = 300


def multistream(compress: Callable[[bytes], bytes]) -> bytes:
    """HEADER and 1 GiB of zeros, as concatenated compressed streams (decompressors read them all)."""
    first = compress(HEADER + bytes(CHUNK - len(HEADER)))
    rest = compress(bytes(CHUNK))
    return first + rest * (GIB // CHUNK - 1)


def zlib_bomb() -> bytes:
    # joblib's zlib format is one zlib stream: written in pieces, never whole in memory
    packer = zlib.compressobj(9)
    parts = [packer.compress(HEADER)]
    zeros = bytes(CHUNK)
    parts += [packer.compress(zeros) for _ in range(GIB // CHUNK)]
    return b"".join(parts) + packer.flush()


BOMBS: dict[str, Callable[[], bytes]] = {
    "bz2": lambda: multistream(lambda data: bz2.compress(data, 9)),
    "gzip": lambda: multistream(lambda data: gzip.compress(data, 9)),
    "xz": lambda: multistream(lambda data: lzma.compress(data)),
    "zlib": zlib_bomb,
}


@pytest.fixture(scope="module")
def bombs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("bombs")
    made = {}
    for name, make in BOMBS.items():
        path = directory / f"{name}.joblib"
        path.write_bytes(make())
        made[name] = path
    skops = directory / "schema.skops"
    with (
        zipfile.ZipFile(skops, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive,
        archive.open("schema.json", "w", force_zip64=True) as entry,
    ):
        spaces = b" " * CHUNK
        for _ in range(GIB // CHUNK):
            entry.write(spaces)
    made["skops"] = skops
    return made


# Run the CLI and, as it exits, write its peak resident memory (VmHWM: this process image's own,
# unlike getrusage's, which would count the test process it was forked from).
PEAK_PROBE = """
import atexit, sys
OUT = sys.argv[1]
def report():
    status = open("/proc/self/status").read()
    peak = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))
    open(OUT, "w").write(peak)
atexit.register(report)
sys.argv = ["lambdaserve", *sys.argv[2:]]
from lambdaserve.cli.app import main
main()
"""


def peak_mb_of(arguments: list[str], scratch: Path) -> tuple[int, str]:
    """Run ``lambdaserve ARGUMENTS``: its exit and stderr, and its peak resident memory in MB."""
    peak = scratch / "peak"
    done = subprocess.run(
        [sys.executable, "-c", PEAK_PROBE, str(peak), *arguments],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    return int(peak.read_text()) // 1024, f"exit {done.returncode}: {done.stderr}"


@pytest.mark.parametrize("kind", [*BOMBS, "skops"])
def test_inspect_refuses_a_bomb_in_bounded_memory(bombs: dict[str, Path], kind: str, tmp_path: Path) -> None:
    path = bombs[kind]
    assert path.stat().st_size < 8 << 20  # a few MB at most that say they hold a gigabyte
    peak, outcome = peak_mb_of(["inspect", str(path)], tmp_path)
    assert outcome.startswith("exit 1"), outcome
    assert f"Refusing {path.name}" in outcome
    assert "LAMBDASERVE_MAX_MODEL_MB" in outcome
    assert "Traceback" not in outcome
    assert peak < PEAK_LIMIT_MB, (peak, outcome)


def test_the_handler_refuses_a_skops_bomb_before_skops_reads_it(bombs: dict[str, Path]) -> None:
    with pytest.raises(ModelLoadError, match=r"schema\.json expands to 1,024 MiB"):
        load_model(bombs["skops"], "skops")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    pool = ServerPool()
    try:
        yield pool.start(tmp_path_factory.mktemp("bomb-server") / "state")
    finally:
        pool.stop_all()


def peak_rss_mb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))) // 1024


def test_the_console_refuses_bombs_without_the_server_growing(served: Served, bombs: dict[str, Path]) -> None:
    before = peak_rss_mb(served.process.pid)
    headers = {"Authorization": f"Bearer {served.admin_token}"}
    with httpx.Client(base_url=served.base, headers=headers, timeout=120) as admin:
        for kind, path in bombs.items():
            sent = admin.post("/_/api/uploads", params={"filename": path.name}, content=path.read_bytes())
            assert sent.status_code == 201, sent.text
            answer = admin.post(f"/_/api/models/bomb-{kind}/versions", json={"upload": sent.json()["upload"]})
            assert answer.status_code in (400, 422), answer.text
            assert "expands to" in answer.text or "decompresses to more than" in answer.text
    assert peak_rss_mb(served.process.pid) - before < PEAK_LIMIT_MB
