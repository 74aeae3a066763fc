"""What makes a pickle dangerous, and what else the scan looks for in one.

Kept apart from the scanner so the policy reads as data: the modules and names that give
a pickle power over the machine, the hooks through which code pickled by value runs
while a file loads, and where libraries record their version in pickled state.
"""

from __future__ import annotations

from dataclasses import dataclass

# Imports that give a pickle power over the machine. A module maps to "*" (all of it)
# or to the names in it that are dangerous.
# fmt: off
_WHOLE_MODULES = [
    "os", "posix", "nt", "subprocess", "_posixsubprocess", "sys", "shutil", "socket", "pty",
    "runpy", "importlib", "ctypes", "code", "codeop", "pdb", "bdb", "webbrowser",
    "multiprocessing", "asyncio", "signal", "pickle", "_pickle", "marshal", "shelve", "http",
    "urllib", "requests", "ftplib", "smtplib", "telnetlib",
]
_BUILTINS = frozenset({
    "eval", "exec", "execfile", "compile", "open", "__import__", "getattr", "setattr", "delattr",
    "globals", "locals", "vars", "input", "breakpoint", "apply",
})
# fmt: on
_FILES = frozenset({"open", "FileIO", "open_code"})
DANGEROUS: dict[str, frozenset[str] | str] = {
    **dict.fromkeys(_WHOLE_MODULES, "*"),
    "builtins": _BUILTINS,
    "__builtin__": _BUILTINS,
    "operator": frozenset({"attrgetter", "methodcaller"}),
    # joblib's pre-0.10 wrappers load arrays from other files beside the pickle.
    "joblib.numpy_pickle_compat": frozenset({"NDArrayWrapper", "ZNDArrayWrapper"}),
    "io": _FILES,
    "_io": _FILES,
}

# Special methods that a pickle's loading calls on the objects it builds. A class
# pickled by value that defines one of these runs its own code while the file loads.
# fmt: off
LOAD_TIME_HOOKS = frozenset({
    "__setstate__", "__new__", "__setitem__", "__setattr__", "append", "extend", "add", "__hash__",
    "__eq__", "__reduce__", "__reduce_ex__", "__init_subclass__", "__set_name__",
})
# fmt: on


# Keys under which libraries record their version in an object's pickled state.
VERSION_KEYS = {"_sklearn_version": "scikit-learn"}


@dataclass(frozen=True)
class Finding:
    what: str
    reason: str


def dangerous_reason(module: str, name: str) -> str | None:
    top = module.split(".", 1)[0]
    rule = DANGEROUS.get(module) or DANGEROUS.get(top)
    if rule == "*":
        return f"the {top} module can run programs, touch files or reach the network"
    if rule and name in rule:
        return f"{module}.{name} can run arbitrary code or reach files"
    return None
