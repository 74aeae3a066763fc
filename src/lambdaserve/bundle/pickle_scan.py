"""Read what a pickle would do, without doing it.

``scan_pickle`` walks the opcode stream with ``pickletools.genops`` and keeps a
symbolic stack and memo: strings, numbers, tuples and dicts are kept as values, every
import (``GLOBAL``, ``STACK_GLOBAL``, ``INST``, extension codes) becomes a ``Global``
and every call a ``PickledCall``. Nothing is imported and nothing is called, so a hostile file
is harmless here. From that walk it reports:

- every module and global the file imports when loaded;
- those not on the allow-list of what models are made of (``runtime/allowlist.py``),
  saying why where the danger is known (process, file system, ``eval``/``exec``, ...),
  functions called while the file loads that are not reconstructors, reconstructors
  given arguments the load's guards refuse, and extension codes (``EXT``);
- code pickled by value (cloudpickle's classes and functions from a notebook or a
  script): it is data here, but runs when the model is used;
- library versions the file records (scikit-learn's ``_sklearn_version``).

joblib files are pickles with raw array bytes between opcodes: after each
``NumpyArrayWrapper`` is built the walk skips the bytes the array occupies, as joblib
reads them, and scans object arrays' nested pickles as well.

What this cannot prove: code pickled by value can do anything once it runs, and a class
imported by reference runs its own code (``__setstate__``, ``__reduce__`` targets) as
designed by its library. The scan tells what will be imported and called at load time,
not that the model's own code is benign.
"""

from __future__ import annotations

import contextlib
import pickletools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from lambdaserve.bundle.joblib_layout import JOBLIB_ARRAY_WRAPPERS, dtype_layout, mentions_wrapper, skip_bytes
from lambdaserve.bundle.pickle_values import OPAQUE, Global, PickledCall, ScanError, global_key
from lambdaserve.bundle.scan_rules import (
    LOAD_TIME_HOOKS,
    NAMED_FEATURES,
    VERSION_KEYS,
    Finding,
    call_finding,
    global_finding,
)

__all__ = ["Finding", "PickleScan", "ScanError", "scan_pickle"]

CLOUDPICKLE = "cloudpickle.cloudpickle"
CLOUDPICKLE_MODULES = (CLOUDPICKLE, "cloudpickle.cloudpickle_fast")
_BIG_BYTES = 4096


@dataclass
class PickleScan:
    protocol: int = 0
    opcodes: int = 0
    imports: list[str] = field(default_factory=list)
    dangerous: list[Finding] = field(default_factory=list)
    by_value_classes: list[str] = field(default_factory=list)
    by_value_functions: list[str] = field(default_factory=list)
    by_value_imports: list[str] = field(default_factory=list)
    recorded_versions: dict[str, list[str]] = field(default_factory=dict)
    joblib_arrays: int = 0
    refused_globals: list[str] = field(default_factory=list)  # what --trust must admit at load
    named_features: bool = False  # an object's state holds feature_names_in_ (fitted on a DataFrame)

    @property
    def modules(self) -> list[str]:
        """Top-level modules the file imports, in order of first use."""
        seen: dict[str, None] = {}
        for name in self.imports + self.by_value_imports:
            seen.setdefault(name.split(".", 1)[0], None)
        return list(seen)

    @property
    def has_by_value_code(self) -> bool:
        return bool(self.by_value_classes or self.by_value_functions)


def scan_pickle(stream: IO[bytes], *, joblib: bool = False) -> PickleScan:
    """Scan one pickle (``joblib=True``: a joblib stream, raw array blocks included).

    A joblib stream with arrays must end exactly where its pickle ends: bytes after the
    last STOP would mean the scan and joblib read the file differently, so it is refused.
    """
    scan = PickleScan()
    _Walker(stream, scan, joblib).run()
    if scan.joblib_arrays and stream.read(1):
        raise ScanError("data after the end of the pickle, which joblib would not read the way the scan did")
    _finish(scan)
    return scan


class _Walker:
    """One pickle stream's symbolic run. Nested streams (joblib object arrays) get their own."""

    def __init__(self, stream: IO[bytes], scan: PickleScan, joblib: bool) -> None:
        self.stream = stream
        self.scan = scan
        self.joblib = joblib
        self.stack: list[Any] = []
        self.metastack: list[list[Any]] = []
        self.memo: dict[int, Any] = {}

    def run(self) -> None:
        try:
            for op, arg, _pos in self._ops():
                self.scan.opcodes += 1
                self.step(op.name, arg)
        except (ValueError, IndexError, KeyError, TypeError) as exc:
            raise ScanError(f"not a pickle stream this scanner can follow ({exc})") from None

    def _ops(self) -> Iterator[tuple[pickletools.OpcodeInfo, Any, int | None]]:
        return pickletools.genops(self.stream)

    def pop_mark(self) -> list[Any]:
        items = self.stack
        self.stack = self.metastack.pop()
        return items

    def step(self, name: str, arg: Any) -> None:
        stack = self.stack
        if name in _LITERALS:
            stack.append(OPAQUE if isinstance(arg, (bytes, bytearray)) and len(arg) > _BIG_BYTES else arg)
        elif name in _CONSTANTS:
            stack.append(_CONSTANTS[name])
        elif name == "PROTO":
            self.scan.protocol = max(self.scan.protocol, arg)
        elif name in ("FRAME", "STOP"):
            pass
        elif name == "MARK":
            self.metastack.append(stack)
            self.stack = []
        elif name in ("EMPTY_LIST", "EMPTY_SET"):
            stack.append([])
        elif name == "EMPTY_DICT":
            stack.append({})
        elif name == "EMPTY_TUPLE":
            stack.append(())
        elif name in ("LIST", "FROZENSET"):
            self._push(list(self.pop_mark()))
        elif name == "TUPLE":
            self._push(tuple(self.pop_mark()))
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            popped = tuple(stack[-n:])
            del stack[-n:]
            stack.append(popped)
        elif name == "DICT":
            items = self.pop_mark()
            self._push(_dict_from(items))
        elif name == "APPEND":
            value = stack.pop()
            if isinstance(stack[-1], list):
                stack[-1].append(value)
        elif name in ("APPENDS", "ADDITEMS"):
            items = self.pop_mark()
            if isinstance(self.stack[-1], list):
                self.stack[-1].extend(items)
        elif name == "SETITEM":
            value, key = stack.pop(), stack.pop()
            _set_item(stack[-1], key, value)
        elif name == "SETITEMS":
            items = self.pop_mark()
            for i in range(0, len(items) - 1, 2):
                _set_item(self.stack[-1], items[i], items[i + 1])
        elif name == "POP":
            if stack:
                stack.pop()
            else:
                self.pop_mark()
        elif name == "POP_MARK":
            self.pop_mark()
        elif name == "DUP":
            stack.append(stack[-1])
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            self.memo[int(arg)] = stack[-1]
        elif name == "MEMOIZE":
            self.memo[len(self.memo)] = stack[-1]
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            stack.append(self.memo.get(int(arg), OPAQUE))
        elif name == "GLOBAL":
            module, _, attr = arg.partition(" ")
            stack.append(self.imported(module, attr))
        elif name == "STACK_GLOBAL":
            attr, module = stack.pop(), stack.pop()
            if not (isinstance(module, str) and isinstance(attr, str)):
                self.flag("a computed import", "the module or name to import is built at load time")
                stack.append(OPAQUE)
            else:
                stack.append(self.imported(module, attr))
        elif name in ("EXT1", "EXT2", "EXT4"):
            # The load would look the code up in copyreg's registry (and its cache, which
            # skips find_class): what it names is not in the file.
            self.flag(f"an extension code ({name} {arg})", "the global it stands for is not in the file")
            stack.append(OPAQUE)
        elif name == "INST":
            module, _, attr = arg.partition(" ")
            self._push(self.called(self.imported(module, attr), tuple(self.pop_mark())))
        elif name == "OBJ":
            items = self.pop_mark()
            self._push(self.called(items[0], tuple(items[1:])))
        elif name == "REDUCE":
            args, func = stack.pop(), stack.pop()
            stack.append(self.called(func, args))
        elif name == "NEWOBJ":
            args, cls = stack.pop(), stack.pop()
            stack.append(self.instantiated(cls, args))
        elif name == "NEWOBJ_EX":
            _kwargs, args, cls = stack.pop(), stack.pop(), stack.pop()
            stack.append(self.instantiated(cls, args))
        elif name == "BUILD":
            state = stack.pop()
            self.built(stack[-1], state)
        elif name == "BINPERSID":
            stack.pop()
            stack.append(OPAQUE)
        elif name in ("PERSID", "NEXT_BUFFER"):
            stack.append(OPAQUE)
        elif name == "READONLY_BUFFER":
            pass
        else:
            raise ScanError(f"unknown opcode {name}")

    def _push(self, value: Any) -> None:
        self.stack.append(value)

    def flag(self, what: str, reason: str) -> None:
        finding = Finding(what, reason)
        if finding not in self.scan.dangerous:
            self.scan.dangerous.append(finding)

    def imported(self, module: str, name: str) -> Global:
        imported = Global(module, name)
        dotted = str(imported)
        if dotted not in self.scan.imports:
            self.scan.imports.append(dotted)
        finding = global_finding(module, name)
        if finding:
            self.flag(finding.what, finding.reason)
            if dotted not in self.scan.refused_globals:
                self.scan.refused_globals.append(dotted)
        return imported

    def called(self, func: Any, args: Any) -> PickledCall:
        call = PickledCall(func, args)
        if self.joblib and global_key(func) not in JOBLIB_ARRAY_WRAPPERS and mentions_wrapper(args):
            # joblib spots its wrappers with isinstance(); one built any other way (a
            # subclass, copyreg._reconstructor) would make joblib read raw bytes where
            # this scan reads opcodes.
            raise ScanError("a joblib array wrapper built indirectly")
        args = args if isinstance(args, tuple) else ()
        if isinstance(func, Global):
            finding = call_finding(func.module, func.name) or _guarded_finding(func, args)
            if finding:
                self.flag(finding.what, finding.reason)
        if isinstance(func, Global) and func.module in CLOUDPICKLE_MODULES:
            self._cloudpickle_call(func.name, args, call)
        elif isinstance(func, PickledCall) and not _is_builtin_type(func):
            # Calling something the pickle itself built (a function made from pickled
            # code, the result of getattr, ...) runs code while the file loads.
            self.flag("a call to an object built by the pickle", "code from the file runs while it loads")
        return call

    def instantiated(self, cls: Any, args: Any) -> PickledCall:
        """``cls.__new__(cls, *args)``: builds an object without calling code from the file."""
        if self.joblib and global_key(cls) not in JOBLIB_ARRAY_WRAPPERS and mentions_wrapper(args):
            raise ScanError("a joblib array wrapper built indirectly")
        return PickledCall(cls, args)

    def _cloudpickle_call(self, name: str, args: tuple[Any, ...], call: PickledCall) -> None:
        scan = self.scan
        if name == "subimport" and args and isinstance(args[0], str):
            if args[0] not in scan.by_value_imports:
                scan.by_value_imports.append(args[0])
        elif name in ("_make_skeleton_class", "_make_skeleton_enum") and len(args) > 1:
            class_name = args[1] if isinstance(args[1], str) else "<unnamed class>"
            scan.by_value_classes.append(class_name)
        elif name == "_function_setstate" and len(args) == 2:
            # The function's names travel in its slot state, not in _make_function's arguments.
            parts = args[1] if isinstance(args[1], tuple) else ()
            names = [p.get(k) for p in parts if isinstance(p, dict) for k in ("__qualname__", "__name__")]
            scan.by_value_functions.append(next((n for n in names if isinstance(n, str)), "<function>"))
        elif name == "_class_setstate" and len(args) == 2 and isinstance(args[0], PickledCall):
            class_dict = args[1][0] if isinstance(args[1], tuple) and args[1] else None
            hooks = sorted(LOAD_TIME_HOOKS & set(class_dict)) if isinstance(class_dict, dict) else []
            if hooks:
                cls_args = args[0].args if isinstance(args[0].args, tuple) else ()
                class_name = cls_args[1] if len(cls_args) > 1 and isinstance(cls_args[1], str) else "a class"
                self.flag(
                    f"{class_name} (pickled by value) defines {', '.join(hooks)}",
                    "its code runs while the file loads",
                )

    def built(self, obj: Any, state: Any) -> None:
        if isinstance(obj, PickledCall):
            obj.state = state
        for part in state if isinstance(state, tuple) else (state,):
            if isinstance(part, dict):
                if NAMED_FEATURES in part:
                    self.scan.named_features = True
                for key, library in VERSION_KEYS.items():
                    version = part.get(key)
                    if isinstance(version, str):
                        versions = self.scan.recorded_versions.setdefault(library, [])
                        if version not in versions:
                            versions.append(version)
        if self.joblib and isinstance(obj, PickledCall) and global_key(obj.func) in JOBLIB_ARRAY_WRAPPERS:
            self._skip_joblib_array(state)

    def _skip_joblib_array(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise ScanError("a joblib array wrapper without its usual state")
        count = 1
        for dim in state.get("shape") or ():
            if not isinstance(dim, int):
                raise ScanError("a joblib array with an unreadable shape")
            count *= dim
        itemsize, has_objects = dtype_layout(state.get("dtype"))
        self.scan.joblib_arrays += 1
        if has_objects:  # joblib writes (and reads) a nested pickle even for an empty array
            _Walker(self.stream, self.scan, joblib=True).run()
            return
        if state.get("numpy_array_alignment_bytes") is not None:
            padding = self.stream.read(1)
            if padding:
                self.stream.read(padding[0])
        skip_bytes(self.stream, count * itemsize)


_LITERALS = frozenset(
    {
        "INT",
        "BININT",
        "BININT1",
        "BININT2",
        "LONG",
        "LONG1",
        "LONG4",
        "STRING",
        "BINSTRING",
        "SHORT_BINSTRING",
        "BINBYTES",
        "SHORT_BINBYTES",
        "BINBYTES8",
        "BYTEARRAY8",
        "UNICODE",
        "SHORT_BINUNICODE",
        "BINUNICODE",
        "BINUNICODE8",
        "FLOAT",
        "BINFLOAT",
    }
)
_CONSTANTS = {"NONE": None, "NEWTRUE": True, "NEWFALSE": False}


def _dict_from(items: list[Any]) -> dict[Any, Any]:
    result: dict[Any, Any] = {}
    for i in range(0, len(items) - 1, 2):
        _set_item(result, items[i], items[i + 1])
    return result


def _set_item(target: Any, key: Any, value: Any) -> None:
    if isinstance(target, dict):
        with contextlib.suppress(TypeError):  # an unhashable key the scan does not need
            target[key] = value


def _guarded_finding(func: Global, args: tuple[Any, ...]) -> Finding | None:
    """The arguments the load's guards (runtime/allowlist.py GUARDED) refuse, found without loading."""
    key = (func.module, func.name)
    first = args[0] if args else None
    if key == ("builtins", "bytearray") and args and not isinstance(first, (bytes, bytearray, str)):
        return Finding("bytearray() of a size", "builds a buffer of any size while the file loads")
    if key == ("_codecs", "encode") and (len(args) < 2 or args[1] not in ("latin1", "latin-1")):
        return Finding("_codecs.encode() with a codec other than latin1", "decodes data while the file loads")
    if func.name == "_reconstruct" and func.module.endswith(".multiarray"):
        shape = args[1] if len(args) > 1 else None
        if not (isinstance(shape, tuple) and any(dim == 0 for dim in shape)):
            return Finding("numpy _reconstruct() of a size", "allocates an array while the file loads")
    return None


def _is_builtin_type(value: PickledCall) -> bool:
    # cloudpickle's _builtin_type("CodeType") returns a type; calling it constructs data.
    return global_key(value.func) in {(m, "_builtin_type") for m in CLOUDPICKLE_MODULES}


def _finish(scan: PickleScan) -> None:
    # Methods belong to their class's entry ("Topics.fit", "make.<locals>.Topics.fit").
    scan.by_value_functions = [
        f
        for f in dict.fromkeys(scan.by_value_functions)
        if not any(f".{c}." in f".{f}" for c in scan.by_value_classes)
    ]
    scan.by_value_classes = list(dict.fromkeys(scan.by_value_classes))
