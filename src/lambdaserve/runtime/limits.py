"""How much a model file may expand to: compressed streams and zip archives get a cost bound first.

A few kilobytes of bz2 can decompress to gigabytes, and a zip archive's entry can say it
holds a gigabyte. Before anything reads such a file whole, its decompressed size is bounded:
``MAX_RATIO`` times the file's size, at least ``MIN_LIMIT``, at most 4 GiB; or
``LAMBDASERVE_MAX_MODEL_MB`` when set, for a file one trusts. The scan reads compressed
pickles through ``CappedReader``; skops archives are checked entry by entry (``check_zip``)
before skops opens them, here and in the handler's INIT.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

MIN_LIMIT = 64 * 1024 * 1024
MAX_RATIO = 200  # model files compress 1-10x; zeros-heavy arrays more; bombs by millions
DEFAULT_MAX_MB = 4096


class TooLarge(Exception):
    """A model file that expands beyond its bound."""


def expansion_limit(compressed_size: int) -> int:
    """How many bytes a file of ``compressed_size`` may decompress to.

    ``LAMBDASERVE_MAX_MODEL_MB``, when set, is the bound whatever the file's size.
    """
    configured = os.environ.get("LAMBDASERVE_MAX_MODEL_MB", "")
    if configured.isdigit():
        return int(configured) * 1024 * 1024
    return min(DEFAULT_MAX_MB * 1024 * 1024, max(MIN_LIMIT, MAX_RATIO * compressed_size))


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):,.0f} MiB"


class CappedReader:
    """A file-like reader that refuses to hand out more than ``limit`` bytes in all.

    Each read asks the inner stream for at most one byte beyond what is left, so a request
    for gigabytes (a pickle's BINBYTES8 length) never allocates more than the bound.
    """

    def __init__(self, inner: Any, limit: int, what: str) -> None:
        self.inner, self.limit, self.what = inner, limit, what
        self.count = 0

    def _check(self, data: bytes) -> bytes:
        self.count += len(data)
        if self.count > self.limit:
            raise TooLarge(
                f"{self.what} decompresses to more than {_mib(self.limit)}, beyond what a model file of its "
                "size holds (set LAMBDASERVE_MAX_MODEL_MB to allow more for a file you trust)"
            )
        return data

    def read(self, size: int | None = -1) -> bytes:
        left = self.limit - self.count
        if size is not None and size > left:
            # A pickle's literal that declares more than the whole file may hold: refused
            # before a byte of it is read (or allocated).
            self.count += size
            return self._check(b"")
        wanted = left + 1 if size is None or size < 0 else size
        return self._check(self.inner.read(wanted))

    def readline(self, size: int | None = -1) -> bytes:
        left = self.limit - self.count + 1
        wanted = left if size is None or size < 0 else min(size, left)
        return self._check(self.inner.readline(wanted))


def check_zip(path: Path) -> None:
    """Refuse an archive whose entries, by what they declare, expand beyond the bound.

    zipfile returns at most the size an entry declares, so the declared sizes bound what
    reading it costs; they are checked before any entry is read.
    """
    limit = expansion_limit(path.stat().st_size)
    total = 0
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            total += info.file_size
            if info.file_size > limit or total > limit:
                raise TooLarge(
                    f"{path.name}'s entry {info.filename} expands to {_mib(info.file_size)} "
                    f"({_mib(total)} in all so far), beyond the {_mib(limit)} a file of its size may hold "
                    "(set LAMBDASERVE_MAX_MODEL_MB to allow more for a file you trust)"
                )
