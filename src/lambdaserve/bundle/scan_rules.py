"""What a pickle may import, what makes one dangerous, and what else the scan looks for in one.

Kept apart from the scanner so the policy reads as data. Admission is the allow-list
(``lambdaserve.runtime.allowlist``, which the load enforces too): a global that is not on
it is refused unless trusted. The deny-list below no longer decides anything: it says
*why* a refused global is dangerous, where that is known (process, files, network, code).
Also here: the hooks through which code pickled by value runs while a file loads, and
where libraries record their version in pickled state.
"""

from __future__ import annotations

from dataclasses import dataclass

from lambdaserve.runtime.allowlist import check_call, check_global

# Imports that give a pickle power over the machine. A module maps to "*" (all of it)
# or to the names in it that are dangerous.
# fmt: off
_WHOLE_MODULES = [
    "os", "posix", "nt", "subprocess", "_posixsubprocess", "sys", "shutil", "socket", "pty",
    "runpy", "importlib", "ctypes", "_ctypes", "code", "codeop", "pdb", "bdb", "webbrowser",
    "multiprocessing", "asyncio", "signal", "pickle", "_pickle", "marshal", "shelve", "http",
    "urllib", "requests", "ftplib", "smtplib", "telnetlib", "timeit", "profile", "cProfile",
    "trace", "doctest", "pkgutil", "zipimport", "tempfile", "distutils", "pip", "venv",
    "ensurepip", "idlelib", "lib2to3", "dill", "cloudpickle", "joblib", "torch", "aiohttp",
    "ssl", "xmlrpc",
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
# The attribute scikit-learn sets on an estimator fitted on a DataFrame: the handler then
# builds a DataFrame for every request, so the model's environment needs pandas.
NAMED_FEATURES = "feature_names_in_"


@dataclass(frozen=True)
class Finding:
    what: str
    reason: str


def dangerous_reason(module: str, name: str) -> str | None:
    """Why ``module.name`` is known to be dangerous, or None (not known: not that it is safe)."""
    top = module.split(".", 1)[0]
    rule = DANGEROUS.get(module) or DANGEROUS.get(top)
    first, _, rest = name.partition(".")
    if rule == "*":
        return f"the {top} module can run programs, touch files or reach the network"
    if rule and first in rule:
        return f"{module}.{first} can run arbitrary code or reach files"
    if rest:  # "os.system" reached through posixpath: the attribute path names the danger
        return dangerous_reason(first, rest.partition(".")[0])
    return None


def global_finding(module: str, name: str) -> Finding | None:
    """Why a pickle may not import ``module.name`` (dangerous, or not on the allow-list), or None."""
    why = check_global(module, name)
    if why is None:
        return None
    dotted = f"{module}.{name}"
    reason = dangerous_reason(module, name)
    return Finding(dotted, reason or f"{why}; lambdaserve cannot tell what it does when the file loads")


def call_finding(module: str, name: str) -> Finding | None:
    """Why a pickle may not call the admitted ``module.name`` while it loads, or None.

    A global refused already is reported once, as refused.
    """
    if check_global(module, name):
        return None
    why = check_call(module, name)
    return Finding(f"a call to {module}.{name}", why) if why else None
