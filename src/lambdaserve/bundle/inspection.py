"""What a model file is and needs, found without loading it.

``inspect_model`` reads the file as data: the pickle opcode stream (plain, cloudpickle
or joblib, decompressed first when joblib compressed it), a skops archive's schema, or
nothing for ONNX (a graph, not code). The report says what the file imports, what is
dangerous in it, what code it carries by value, which library versions it records, and
the pinned requirements that follow. ``check_trust`` turns a dangerous file into a
refusal unless the user trusts it.
"""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from lambdaserve.bundle.pickle_scan import Finding, PickleScan, ScanError, scan_pickle
from lambdaserve.bundle.pins import Pin, current_python_version, pin_requirements
from lambdaserve.bundle.scan_rules import NAMED_FEATURES
from lambdaserve.errors import LambdaserveError
from lambdaserve.runtime.errors import ModelLoadError
from lambdaserve.runtime.limits import CappedReader, TooLarge, check_zip, expansion_limit
from lambdaserve.runtime.models import FORMAT_BY_SUFFIX, format_of
from lambdaserve.runtime.source import sha256_of

# What each format needs at load time, whatever the file imports.
FORMAT_REQUIREMENTS = {
    "pickle": [],
    "joblib": ["joblib"],
    "skops": ["skops"],
    "onnx": ["onnxruntime", "numpy"],
}
_JOBLIB_COMPRESSION = [
    (b"\x78", "zlib"),
    (b"\x1f\x8b", "gzip"),
    (b"BZ", "bz2"),
    (b"\xfd7zXZ", "xz"),
    (b"\x5d\x00\x00", "lzma"),
    (b"\x04\x22\x4d\x18", "lz4"),
]


@dataclass
class ModelReport:
    path: Path
    format: str
    size: int
    sha256: str
    python: str
    imports: list[str] = field(default_factory=list)
    dangerous: list[Finding] = field(default_factory=list)
    by_value_classes: list[str] = field(default_factory=list)
    by_value_functions: list[str] = field(default_factory=list)
    by_value_imports: list[str] = field(default_factory=list)
    untrusted_types: list[str] = field(default_factory=list)
    refused_globals: list[str] = field(default_factory=list)  # pickle globals not admitted
    recorded_versions: dict[str, str] = field(default_factory=dict)
    named_features: bool = False  # fitted on a DataFrame: its requests are turned into one
    pins: list[Pin] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    compression: str | None = None

    @property
    def requirements(self) -> list[str]:
        return [pin.requirement for pin in self.pins]

    @property
    def needs_trust(self) -> bool:
        return bool(self.dangerous or self.untrusted_types)

    @property
    def trusted_on_trust(self) -> list[str]:
        """What ``--trust`` admits at load: exactly the names the checks refused, nothing more."""
        return [*self.untrusted_types, *self.refused_globals]

    def check_trust(self, trusted: bool) -> None:
        """Refuse a file that could take over the machine, unless the user said --trust."""
        if trusted or not self.needs_trust:
            return
        if self.dangerous:
            items = "\n".join(f"  - {f.what}: {f.reason}" for f in self.dangerous)
            raise LambdaserveError(
                f"Refusing {self.path.name}: it imports what lambdaserve's allow-list of model parts does "
                f"not admit, or would run code while it loads.\n{items}",
                "Nothing was loaded. If you made this file yourself and know why it does this, pass "
                "--trust (it admits exactly these names when the model loads). Otherwise do not load it; "
                "ask for the model as skops or ONNX instead.",
            )
        raise LambdaserveError(
            f"Refusing {self.path.name}: this skops file builds types that skops does not trust by "
            "default:\n" + "\n".join(f"  - {t}" for t in self.untrusted_types),
            "Nothing was loaded. If you expected these types, pass --trust to allow exactly them.",
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "format": self.format,
            "compression": self.compression,
            "size": self.size,
            "sha256": self.sha256,
            "python": self.python,
            "imports": self.imports,
            "dangerous": [{"what": f.what, "reason": f.reason} for f in self.dangerous],
            "by_value": {
                "classes": self.by_value_classes,
                "functions": self.by_value_functions,
                "imports": self.by_value_imports,
            },
            "untrusted_types": self.untrusted_types,
            "refused_globals": self.refused_globals,
            "recorded_versions": self.recorded_versions,
            "named_features": self.named_features,
            "requirements": self.requirements,
            "pins": [pin.to_dict() for pin in self.pins],
            "warnings": self.warnings,
        }


def inspect_model(path: Path, user_requirements: list[str] | None = None) -> ModelReport:
    if not path.is_file():
        raise LambdaserveError(
            f"{path} is not a file.",
            "Give the path of a model file (" + ", ".join(FORMAT_BY_SUFFIX) + ") or of a bundle directory.",
        )
    try:
        fmt = format_of(path)
    except ModelLoadError as exc:
        raise LambdaserveError(str(exc), "Rename the file with the suffix of its format.") from None
    report = ModelReport(
        path=path,
        format=fmt,
        size=path.stat().st_size,
        sha256=sha256_of(path),
        python=current_python_version(),
    )
    modules: list[str] = []
    if fmt in ("pickle", "joblib"):
        scan = _scan_pickle_file(path, fmt, report)
        report.imports = scan.imports
        report.dangerous = scan.dangerous
        report.refused_globals = scan.refused_globals
        report.by_value_classes = scan.by_value_classes
        report.by_value_functions = scan.by_value_functions
        report.by_value_imports = scan.by_value_imports
        report.recorded_versions = _one_version_each(scan.recorded_versions, report.warnings)
        report.named_features = scan.named_features
        modules = scan.modules
    elif fmt == "skops":
        modules = _inspect_skops(path, report)
    # A model fitted on a DataFrame needs pandas at prediction time, though its file may
    # not import it: the handler gives it a DataFrame with the fitted column names.
    extra = [*FORMAT_REQUIREMENTS[report.format], *(["pandas"] if report.named_features else [])]
    try:
        report.pins = pin_requirements(modules, report.recorded_versions, user_requirements or [], extra)
    except ValueError as exc:
        raise LambdaserveError(f"Bad --requirement: {exc}.") from None
    for pin in report.pins:
        if pin.version is None:
            report.warnings.append(
                f"{pin.name} (imported as {', '.join(pin.modules) or pin.name}) is not installed here and "
                f"the file records no version: pin it with --requirement {pin.name}==VERSION."
            )
    return report


def _scan_pickle_file(path: Path, fmt: str, report: ModelReport) -> PickleScan:
    """Scan a pickle or joblib file. joblib writes .pkl files too: they are recognised by
    their compression or their array blocks, and loaded with joblib."""
    with path.open("rb") as raw:
        head = raw.read(6)
        raw.seek(0)
        if head.startswith(b"PK"):
            raise LambdaserveError(
                f"{path.name} is a zip archive, not a pickle.",
                "If it is a skops file, name it .skops; PyTorch checkpoints are not supported.",
            )
        try:
            stream, report.compression = _joblib_stream(raw, head, path)
            scan = scan_pickle(stream, joblib=True)
        except TooLarge as exc:
            raise LambdaserveError(f"Refusing {path.name}: {exc}.", "Nothing was loaded.") from None
        except (zlib.error, OSError, EOFError, lzma.LZMAError) as exc:
            raise LambdaserveError(
                f"{path.name} looks {report.compression or 'compressed'} but does not decompress: {exc}."
            ) from None
        except ScanError as exc:
            raise LambdaserveError(
                f"Could not read {path.name} as a {fmt} file: {exc}.",
                "Check that the file is complete and was written by pickle, cloudpickle or joblib.dump.",
            ) from None
    if fmt == "pickle" and (report.compression or scan.joblib_arrays):
        report.format = "joblib"
        report.warnings.append(f"{path.name} was written by joblib.dump; it is loaded with joblib.load.")
    return scan


def _joblib_stream(raw: IO[bytes], head: bytes, path: Path) -> tuple[IO[bytes], str | None]:
    """The file's pickle stream: itself, or decompressed as it is read, within its bound (limits.py)."""
    name = next((name for magic, name in _JOBLIB_COMPRESSION if head.startswith(magic)), None)
    if name is None:
        return raw, None
    # The decompressors read from raw, which the caller closes: nothing of theirs to close.
    opened: Any
    if name == "zlib":
        opened = _ZlibReader(raw)
    elif name == "gzip":
        opened = gzip.GzipFile(fileobj=raw, mode="rb")
    elif name == "bz2":
        opened = bz2.BZ2File(raw, mode="rb")
    elif name in ("xz", "lzma"):
        opened = lzma.LZMAFile(raw, mode="rb")  # noqa: SIM115
    else:
        raise LambdaserveError(
            f"{path.name} is compressed with {name}, which lambdaserve cannot scan.",
            "Save it again with joblib.dump(model, path, compress=3) (zlib) or without compression.",
        )
    limit = expansion_limit(path.stat().st_size)
    return CappedReader(opened, limit, path.name), name  # type: ignore[return-value]


class _ZlibReader:
    """joblib's zlib format (one raw zlib stream), decompressed piece by piece as it is read."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.inflate = zlib.decompressobj()
        self.buffer = b""

    def _fill(self, size: int) -> None:
        while len(self.buffer) < size and not self.inflate.eof:
            chunk = self.inflate.unconsumed_tail or self.raw.read(1 << 16)
            if not chunk:
                break
            self.buffer += self.inflate.decompress(chunk, max(size - len(self.buffer), 1 << 16))

    def read(self, size: int = -1) -> bytes:
        self._fill(size if size >= 0 else 1 << 62)
        data, self.buffer = (self.buffer, b"") if size < 0 else (self.buffer[:size], self.buffer[size:])
        return data

    def readline(self, size: int = -1) -> bytes:
        line = b""
        while not line.endswith(b"\n") and (size < 0 or len(line) < size):
            piece = self.read(1)
            if not piece:
                break
            line += piece
        return line


def _inspect_skops(path: Path, report: ModelReport) -> list[str]:
    try:
        import skops.io
    except ImportError:
        raise LambdaserveError(
            "Reading .skops files needs skops.", "Install it: pip install 'lambdaserve[skops]'."
        ) from None
    try:
        check_zip(path)  # before skops or this reads any entry whole
        with zipfile.ZipFile(path) as archive:
            schema = json.loads(archive.read("schema.json"))
        report.untrusted_types = list(skops.io.get_untrusted_types(file=path))
    except TooLarge as exc:
        raise LambdaserveError(f"Refusing {path.name}: {exc}.", "Nothing was loaded.") from None
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError) as exc:
        raise LambdaserveError(f"{path.name} is not a skops file: {exc}.") from None
    types: dict[str, None] = {}
    versions: dict[str, list[str]] = {}
    report.named_features = _walk_skops(schema, types, versions)
    report.imports = list(types)
    report.recorded_versions = _one_version_each(versions, report.warnings)
    return list(dict.fromkeys(t.split(".", 1)[0] for t in types))


def _walk_skops(node: Any, types: dict[str, None], versions: dict[str, list[str]]) -> bool:
    """Collect every type the schema names and the scikit-learn versions it records; whether
    an object in it holds ``feature_names_in_`` (fitted on a DataFrame)."""
    named = False
    if isinstance(node, dict):
        module, name = node.get("__module__"), node.get("__class__")
        if isinstance(module, str) and isinstance(name, str):
            types.setdefault(f"{module}.{name}", None)
        content = node.get("content")
        if isinstance(content, dict):
            named = NAMED_FEATURES in content
            recorded = content.get("_sklearn_version")
            if isinstance(recorded, dict) and isinstance(recorded.get("content"), str):
                version = json.loads(recorded["content"]) if recorded.get("is_json") else recorded["content"]
                if isinstance(version, str) and version not in versions.get("scikit-learn", []):
                    versions.setdefault("scikit-learn", []).append(version)
        for value in node.values():
            named = _walk_skops(value, types, versions) or named
    elif isinstance(node, list):
        for value in node:
            named = _walk_skops(value, types, versions) or named
    return named


def _one_version_each(recorded: dict[str, list[str]], warnings: list[str]) -> dict[str, str]:
    chosen = {}
    for library, versions in recorded.items():
        chosen[library] = versions[0]
        if len(versions) > 1:
            warnings.append(
                f"The file records several {library} versions ({', '.join(versions)}); pinning "
                f"{versions[0]}. Refit and save the model under one version to remove the doubt."
            )
    return chosen
