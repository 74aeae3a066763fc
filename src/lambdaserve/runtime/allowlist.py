"""What a model file may import: an allow-list, enforced by the scan and again by the load.

A pickle names the globals it needs (``GLOBAL``, ``STACK_GLOBAL``) and calls some of them
while it loads. A deny-list of dangerous names is always one name short: ``os.system``
reached through another module (``posixpath`` + ``os.system``), a method of a dangerous
builtin (``builtins`` + ``eval.__call__``), a standard-library function that evaluates
its argument (``timeit.timeit``), a library function that imports or loads anything
(``pkgutil.resolve_name``, ``joblib.load``). So the rule is the other way round: a global
is admitted only if it is something models are made of:

- ``EXACT``: named globals: plain types, the reconstructors of numpy, pandas, scipy,
  scikit-learn, joblib and cloudpickle, a few standard-library types;
- classes (names that start with a capital, after underscores) in the namespaces of the
  libraries models are built with (scikit-learn, numpy's submodules, scipy's data
  structures, pandas' internals), outside their I/O and testing modules;
- functions of scikit-learn (score functions, metrics, kernels passed as
  hyperparameters), numpy's ufuncs and a vetted set of its pure functions, and
  ``scipy.special``.

Names are single identifiers: a dotted name (Python 3.4's "qualname" form, which walks
attributes at load time) is refused, and so is every module or name not admitted;
``trusted`` names (the user's ``--trust``, recorded in the bundle) are admitted as they are.

``check_global`` is the rule; ``bundle/pickle_scan.py`` applies it to every global a file
names, without loading anything. ``RestrictedUnpickler`` applies it again while loading,
and then checks the object each name resolved to (``check_resolved``): not a module, and
defined in an admitted namespace, so a name that an admitted module merely re-exports
(``sklearn.utils._joblib.load`` is ``joblib.load``) is refused there too. Some admitted
reconstructors could be abused through their arguments; the load gives them guards
(``GUARDED``) and the scan checks the same arguments.

What this cannot prove: that code pickled by value (a class from a notebook) is benign:
it is reported, and runs when the model is used. The classes admitted run their own
``__setstate__`` as their library wrote it.
"""

from __future__ import annotations

import _compat_pickle
import pickle
import re
from collections.abc import Callable, Iterable
from typing import IO, Any

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CLASS = re.compile(r"_*[A-Z][A-Za-z0-9_]*")
_SPARSE = re.compile(r"(csr|csc|coo|bsr|dia|dok|lil)_(matrix|array)")  # scipy.sparse's classes

# fmt: off
_NUMPY_UFUNCS = frozenset({
    "abs", "absolute", "acos", "acosh", "add", "arccos", "arccosh", "arcsin", "arcsinh", "arctan",
    "arctan2", "arctanh", "asin", "asinh", "atan", "atan2", "atanh", "bitwise_and", "bitwise_count",
    "bitwise_invert", "bitwise_left_shift", "bitwise_not", "bitwise_or", "bitwise_right_shift",
    "bitwise_xor", "cbrt", "ceil", "conj", "conjugate", "copysign", "cos", "cosh", "deg2rad", "degrees",
    "divide", "divmod", "equal", "exp", "exp2", "expm1", "fabs", "float_power", "floor", "floor_divide",
    "fmax", "fmin", "fmod", "frexp", "gcd", "greater", "greater_equal", "heaviside", "hypot", "invert",
    "isfinite", "isinf", "isnan", "isnat", "lcm", "ldexp", "left_shift", "less", "less_equal", "log",
    "log10", "log1p", "log2", "logaddexp", "logaddexp2", "logical_and", "logical_not", "logical_or",
    "logical_xor", "matmul", "matvec", "maximum", "minimum", "mod", "modf", "multiply", "negative",
    "nextafter", "not_equal", "positive", "pow", "power", "rad2deg", "radians", "reciprocal",
    "remainder", "right_shift", "rint", "sign", "signbit", "sin", "sinh", "spacing", "sqrt", "square",
    "subtract", "tan", "tanh", "true_divide", "trunc", "vecdot", "vecmat",
})
# Pure functions models pass as hyperparameters (FunctionTransformer(func=...), aggregations).
_NUMPY_FUNCTIONS = frozenset({
    "mean", "median", "average", "sum", "prod", "max", "min", "amax", "amin", "std", "var", "ptp",
    "nanmean", "nanmedian", "nansum", "nanprod", "nanmax", "nanmin", "nanstd", "nanvar",
    "percentile", "quantile", "nanpercentile", "nanquantile", "argmax", "argmin", "cumsum", "cumprod",
    "clip", "round", "around", "sort", "unique", "asarray", "array", "ravel", "transpose", "dot",
    "hstack", "vstack", "concatenate", "where", "count_nonzero", "any", "all", "diff", "digitize",
    "searchsorted", "interp", "histogram", "bincount", "nan_to_num", "isclose", "real", "imag", "angle",
})
_NUMPY_TYPES = frozenset({
    "ndarray", "dtype", "bool", "bool_", "byte", "bytes_", "cdouble", "character", "clongdouble",
    "complex128", "complex256", "complex64", "complexfloating", "csingle", "datetime64", "double",
    "flexible", "float128", "float16", "float32", "float64", "floating", "generic", "half", "inexact",
    "int16", "int32", "int64", "int8", "int_", "intc", "integer", "intp", "long", "longdouble",
    "longlong", "number", "object_", "record", "short", "signedinteger", "single", "str_",
    "timedelta64", "ubyte", "uint", "uint16", "uint32", "uint64", "uint8", "uintc", "uintp", "ulong",
    "ulonglong", "unsignedinteger", "ushort", "void", "ufunc", "matrix", "recarray",
})
_CLOUDPICKLE = frozenset({
    "_make_function", "_make_skeleton_class", "_make_skeleton_enum", "_class_setstate",
    "_function_setstate", "_builtin_type", "_make_cell", "_make_empty_cell", "subimport",
    "dynamic_subimport", "_make_dict_keys", "_make_dict_values", "_make_dict_items", "_make_typevar",
    "_make__new__factory", "_get_dataclass_field_type_sentinel", "_make_code",
})
_PANDAS = frozenset({
    "DataFrame", "Series", "Index", "RangeIndex", "MultiIndex", "CategoricalIndex", "DatetimeIndex",
    "TimedeltaIndex", "PeriodIndex", "IntervalIndex", "Categorical", "CategoricalDtype", "StringDtype",
    "Timestamp", "Timedelta", "Period", "Interval", "NaT", "NA", "BooleanDtype", "Int64Dtype",
    "Float64Dtype", "Int32Dtype", "DatetimeTZDtype", "ArrowDtype",
})
EXACT: dict[str, frozenset[str]] = {
    "builtins": frozenset({
        "set", "frozenset", "slice", "complex", "bytes", "bytearray", "dict", "list", "tuple", "int",
        "float", "bool", "str", "object", "range", "NotImplemented", "Ellipsis", "type",
    }),
    "copyreg": frozenset({"_reconstructor", "__newobj__", "__newobj_ex__"}),
    "_codecs": frozenset({"encode"}),
    "collections": frozenset({"OrderedDict", "defaultdict", "deque", "Counter"}),
    "functools": frozenset({"partial"}),
    "datetime": frozenset({"datetime", "date", "time", "timedelta", "timezone"}),
    "decimal": frozenset({"Decimal"}),
    "fractions": frozenset({"Fraction"}),
    "re": frozenset({"_compile"}),
    "numpy": _NUMPY_TYPES | _NUMPY_UFUNCS | _NUMPY_FUNCTIONS,
    "numpy.core.multiarray": frozenset({"_reconstruct", "scalar"}),
    "numpy._core.multiarray": frozenset({"_reconstruct", "scalar"}),
    "numpy.core.numeric": frozenset({"_frombuffer"}),
    "numpy._core.numeric": frozenset({"_frombuffer"}),
    "numpy.ma.core": frozenset({"_mareconstruct", "MaskedArray"}),
    "numpy.random._pickle": frozenset({"__randomstate_ctor", "__generator_ctor", "__bit_generator_ctor"}),
    "numpy.random.bit_generator": frozenset({"SeedSequence", "__pyx_unpickle_SeedSequence"}),
    "joblib.numpy_pickle": frozenset({"NumpyArrayWrapper"}),
    "pandas": _PANDAS,
    "pandas._libs.internals": frozenset({"_unpickle_block"}),
    "pandas._libs.arrays": frozenset({"__pyx_unpickle_NDArrayBacked"}),
    "pandas._libs.tslibs.timestamps": frozenset({"_unpickle_timestamp"}),
    "pandas._libs.tslibs.timedeltas": frozenset({"_timedelta_unpickle"}),
    "pandas._libs.tslibs.nattype": frozenset({"__nat_unpickle"}),
    "pandas.core.indexes.base": frozenset({"_new_Index"}),
    "pandas.core.internals.blocks": frozenset({"new_block"}),
    "cloudpickle.cloudpickle": _CLOUDPICKLE,
    "cloudpickle.cloudpickle_fast": _CLOUDPICKLE,
}
# Namespaces whose classes models are made of: a name ending in "." is its submodules only
# (numpy's and pandas' top levels are EXACT), any other the module and its submodules.
CLASS_NAMESPACES = (
    "sklearn.", "numpy.", "pandas.", "scipy.sparse", "scipy.interpolate", "scipy.stats",
    "scipy.spatial", "scipy.special", "scipy._lib.array_api_compat",
)
# Namespaces whose functions too (score functions, metrics, kernels, scipy.special's ufuncs).
FUNCTION_NAMESPACES = ("sklearn.", "scipy.special", "scipy._lib.array_api_compat")
# Inside those: modules that read or write files, reach the network, load pickles or run
# code by design, and re-exports of such functions. Never admitted, whatever the name.
EXCLUDED = (
    "sklearn.datasets", "sklearn.utils._testing", "sklearn.utils.estimator_checks",
    "sklearn.utils._joblib", "sklearn.utils._show_versions", "sklearn.utils.parallel",
    "sklearn.utils.fixes", "sklearn.externals._packaging",
    "numpy.testing", "numpy.f2py", "numpy.distutils", "numpy.ctypeslib", "numpy.lib.npyio",
    "numpy.lib._npyio_impl", "numpy.lib.format", "numpy.lib._datasource", "numpy.lib.utils",
    "numpy.lib._utils_impl", "numpy._utils", "numpy._pytesttester", "numpy.lib.recfunctions",
    "pandas.io", "pandas.util", "pandas.testing", "pandas._testing", "pandas.plotting",
    "pandas.core.computation",
    "scipy._lib._testutils",
)
# fmt: on


def _in(module: str, namespaces: Iterable[str]) -> bool:
    return any(
        module.startswith(n) if n.endswith(".") else module == n or module.startswith(n + ".")
        for n in namespaces
    )


def _excluded(module: str) -> bool:
    return any(module == e or module.startswith(e + ".") for e in EXCLUDED)


# What a file may call while it loads, beyond classes: constructors and reconstructors.
_NOT_CALLED = _NUMPY_UFUNCS | _NUMPY_FUNCTIONS
_RECONSTRUCTOR = re.compile(r"newObj|__pyx_unpickle_\w+|_unpickle_\w+|_?_reconstruct\w*|__\w+_ctor")


def python3_name(module: str, name: str) -> tuple[str, str]:
    """The Python 3 name of a global a protocol 0-2 pickle names as Python 2 did (as pickle maps it)."""
    mapped = _compat_pickle.NAME_MAPPING.get((module, name))
    if mapped:
        return mapped[0], mapped[1]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


def check_call(module: str, name: str, trusted: Iterable[str] = ()) -> str | None:
    """None when a file may call the admitted global ``module.name`` while it loads; else why not.

    Objects are rebuilt by their classes and their libraries' reconstructors; calling
    anything else at load time (numpy.mean, a score function) is not how models load.
    """
    module, name = python3_name(module, name)
    if f"{module}.{name}" in set(trusted) or _CLASS.fullmatch(name) or _SPARSE.fullmatch(name):
        return None
    if name in EXACT.get(module, ()) and name not in _NOT_CALLED:
        return None
    if _RECONSTRUCTOR.fullmatch(name):
        return None
    return "a function called while the file loads: models are rebuilt by classes and reconstructors"


def check_global(module: str, name: str, trusted: Iterable[str] = ()) -> str | None:
    """None when a model file may import ``module.name``; else why it may not."""
    if f"{module}.{name}" in set(trusted):
        return None
    if not (isinstance(module, str) and isinstance(name, str)):
        return "the module or name is not a string"
    module, name = python3_name(module, name)
    if not all(_IDENTIFIER.fullmatch(part) for part in module.split(".")):
        return "the module is not a module name"
    if not _IDENTIFIER.fullmatch(name):
        # "os.system" from posixpath, "eval.__call__" from builtins: a path walked at load time.
        return "a dotted name: it reaches an attribute of another object when the file loads"
    if name in EXACT.get(module, ()):
        return None
    if module == "__main__":
        return (
            "defined in the script that saved the model, so it exists only there; save the model "
            "with cloudpickle, which carries such classes and functions in the file"
        )
    if _excluded(module):
        return f"{module} reads or writes files, reaches the network or runs code"
    if _in(module, CLASS_NAMESPACES) and (_CLASS.fullmatch(name) or _SPARSE.fullmatch(name)):
        return None
    if _in(module, FUNCTION_NAMESPACES):
        return None
    return "not on the allow-list of what models are made of"


def check_resolved(module: str, name: str, obj: Any, trusted: Iterable[str] = ()) -> str | None:
    """None when the object ``module.name`` resolved to is what the name admits; else why not."""
    module, name = python3_name(module, name)
    if f"{module}.{name}" in set(trusted) or name in EXACT.get(module, ()):
        return None
    if isinstance(obj, type(re)):
        return "it is a module"
    defined = getattr(obj, "__module__", None)
    if not isinstance(defined, str):
        return "it says nothing of where it was defined"
    if _excluded(defined) or not (_in(defined, CLASS_NAMESPACES) or _in(defined, FUNCTION_NAMESPACES)):
        return f"it is {defined}.{getattr(obj, '__qualname__', name)}, which the allow-list does not admit"
    if not _in(module, FUNCTION_NAMESPACES) and not isinstance(obj, type):
        return "the allow-list admits classes from there, and it is not a class"
    return None


def _bytearray(*args: Any) -> bytearray:
    # Pickle protocol 5 rebuilds bytearrays from bytes; bytearray(10**12) would be a memory bomb.
    if args and not isinstance(args[0], (bytes, bytearray, str)):
        raise pickle.UnpicklingError("bytearray() is admitted with bytes only")
    return bytearray(*args)


def _codecs_encode(obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    # Protocol 2 writes bytes as latin-1 text; other codecs (zlib, base64, ...) are not data.
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode() is admitted with latin1 only, not {encoding!r}")
    import _codecs

    return bytes(_codecs.encode(obj, encoding, errors))


def _guard_reconstruct(real: Callable[..., Any]) -> Callable[..., Any]:
    def reconstruct(subtype: Any, shape: Any, dtype: Any) -> Any:
        # numpy pickles an empty array and fills it with BUILD; a shape here allocates memory.
        if not (isinstance(shape, tuple) and any(dim == 0 for dim in shape)):
            raise pickle.UnpicklingError("numpy's _reconstruct() is admitted with an empty shape only")
        return real(subtype, shape, dtype)

    return reconstruct


def _guard_subimport(real: Callable[..., Any]) -> Callable[..., Any]:
    def subimport(name: str) -> Any:
        # Code pickled by value imports what its globals need; a module is data until code runs.
        if not (isinstance(name, str) and all(_IDENTIFIER.fullmatch(p) for p in name.split("."))):
            raise pickle.UnpicklingError(f"cloudpickle's subimport() of {name!r}")
        return real(name)

    return subimport


GUARDED: dict[tuple[str, str], Callable[[Any], Callable[..., Any]]] = {
    ("builtins", "bytearray"): lambda _real: _bytearray,
    ("_codecs", "encode"): lambda _real: _codecs_encode,
    ("numpy.core.multiarray", "_reconstruct"): _guard_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _guard_reconstruct,
    ("cloudpickle.cloudpickle", "subimport"): _guard_subimport,
    ("cloudpickle.cloudpickle_fast", "subimport"): _guard_subimport,
}


class RefusedGlobal(pickle.UnpicklingError):
    """A model file names a global the allow-list does not admit."""

    def __init__(self, module: str, name: str, why: str) -> None:
        super().__init__(f"{module}.{name}: {why}")
        self.module, self.name, self.why = module, name, why


def find_admitted(module: str, name: str, trusted: Iterable[str], resolve: Callable[[str, str], Any]) -> Any:
    """``resolve(module, name)`` if the allow-list admits it and what it resolves to."""
    why = check_global(module, name, trusted)
    if why:
        raise RefusedGlobal(module, name, why)
    obj = resolve(module, name)
    why = check_resolved(module, name, obj, trusted)
    if why:
        raise RefusedGlobal(module, name, why)
    guard = GUARDED.get(python3_name(module, name))
    return guard(obj) if guard else obj


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that imports only what the allow-list admits."""

    def __init__(self, file: IO[bytes], trusted: Iterable[str] = ()) -> None:
        super().__init__(file)
        self.trusted = frozenset(trusted)

    def find_class(self, module: str, name: str) -> Any:
        return find_admitted(module, name, self.trusted, super().find_class)


def restricted_load(file: IO[bytes], trusted: Iterable[str] = ()) -> Any:
    return RestrictedUnpickler(file, trusted).load()


def restricted_joblib_load(path: Any, trusted: Iterable[str] = ()) -> Any:
    """``joblib.load`` with joblib's own unpickler restricted to the allow-list.

    joblib reads its arrays with its own ``NumpyUnpickler`` (compression, array blocks);
    a subclass of it that admits globals as ``RestrictedUnpickler`` does takes its place
    for this one load (INIT is single-threaded).
    """
    import joblib
    import joblib.numpy_pickle as numpy_pickle

    original = numpy_pickle.NumpyUnpickler
    admitted = frozenset(trusted)

    class RestrictedNumpyUnpickler(original):  # type: ignore[misc, valid-type]
        def find_class(self, module: str, name: str) -> Any:
            return find_admitted(module, name, admitted, super().find_class)

    numpy_pickle.NumpyUnpickler = RestrictedNumpyUnpickler
    try:
        return joblib.load(path)
    finally:
        numpy_pickle.NumpyUnpickler = original
