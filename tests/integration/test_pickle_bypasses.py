"""Pickles that reach a dangerous callable without naming it plainly: each refused on every path.

The forms are those reported against deny-list scanners (picklescan's and fickling's
advisories, and the three found against lambdaserve's own deny-list): a dangerous function
reached as an attribute path through another module, a method of a dangerous builtin, a
standard-library function that evaluates its argument, resolvers and importers that turn a
string into a callable, wrappers (functools.partial, copyreg._reconstructor) around a
dangerous class, gadgets inside trusted libraries (numpy's runstring), nested pickles, and
a class pickled by value whose __setstate__ runs at load.

Each payload writes a marker file when it runs. A control first loads it with plain
``pickle`` in a subprocess, so a form that no longer works in this Python is not mistaken
for a refused one. Then ``inspect``, ``invoke``, ``serve`` and the console must refuse it,
and the marker must not exist. Last, the restricted unpickler alone (the scan disabled)
refuses what the scan could miss: a name an admitted module re-exports from elsewhere.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import httpx
import pytest
from gateway_support import Served, ServerPool
from typer.testing import CliRunner

from lambdaserve.cli.app import app
from lambdaserve.runtime.allowlist import RefusedGlobal, restricted_load


class G:
    """A global, as STACK_GLOBAL names it (protocol 4: the name may be dotted)."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name


class C:
    """A call: ``func(*args)`` with REDUCE."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func, self.args = func, args


def _string(text: str) -> bytes:
    data = text.encode()
    return (
        b"\x8c" + bytes([len(data)]) + data
        if len(data) < 256
        else b"X" + len(data).to_bytes(4, "little") + data
    )


def _emit(value: Any) -> bytes:
    if isinstance(value, G):
        return _string(value.module) + _string(value.name) + b"\x93"
    if isinstance(value, C):
        return _emit(value.func) + b"(" + b"".join(_emit(a) for a in value.args) + b"tR"
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, bool):
        return b"\x88" if value else b"\x89"
    if isinstance(value, int):
        return b"J" + value.to_bytes(4, "little", signed=True)
    if isinstance(value, bytes):
        return b"C" + bytes([len(value)]) + value
    if isinstance(value, list):
        return b"](" + b"".join(_emit(v) for v in value) + b"e"
    if isinstance(value, dict):
        return b"}(" + b"".join(_emit(k) + _emit(v) for k, v in value.items()) + b"u"
    raise TypeError(value)


def pickled(value: Any) -> bytes:
    return b"\x80\x04" + _emit(value) + b"."


def forms(marker: Path) -> dict[str, bytes]:
    """Each form, as a pickle that creates ``marker`` when loaded with plain pickle."""
    touch = f"touch {marker}"
    code = f"open({str(marker)!r}, 'w').close()"
    os_module = C(G("importlib", "import_module"), "os")
    return {
        # module posixpath, name "os.system": the attribute path walks to os.system
        "attribute-path": pickled(C(G("posixpath", "os.system"), touch)),
        "builtin-method": pickled(C(G("builtins", "eval.__call__"), code)),
        "stdlib-evaluator": pickled(C(G("timeit", "timeit"), code, "pass", G("time", "perf_counter"), 1)),
        "name-resolver": pickled(C(C(G("pkgutil", "resolve_name"), "os:system"), touch)),
        "importer-and-getattr": pickled(C(C(G("builtins", "getattr"), os_module, "system"), touch)),
        "attrgetter": pickled(C(C(C(G("operator", "attrgetter"), "system"), os_module), touch)),
        "partial": pickled(C(C(G("functools", "partial"), G("os", "system"), touch))),
        "reconstructor-of-popen": pickled(
            C(
                G("copyreg", "_reconstructor"),
                G("subprocess", "Popen"),
                G("subprocess", "Popen"),
                ["touch", str(marker)],
            )
        ),
        "profiler": pickled(C(G("cProfile", "run"), code)),
        "run-code": pickled(C(G("runpy", "_run_code"), code, {})),
        "nested-pickle": pickled(C(G("pickle", "loads"), pickled(C(G("os", "system"), touch)))),
        "file-object": pickled(C(G("_io", "FileIO"), str(marker), "w")),
        # protocol 0's GLOBAL with a dotted name (refused by the scan; pickle itself does not walk it)
        "protocol-0-dotted": b"cposixpath\nos.system\n(V" + touch.encode() + b"\ntR.",
        "by-value-setstate": _by_value_setstate(marker),
    }


def _by_value_setstate(marker: Path) -> bytes:
    """A class defined here, pickled by value by cloudpickle, whose __setstate__ runs at load."""
    namespace: dict[str, Any] = {}
    exec(
        "class Model:\n"
        "    def predict(self, x):\n        return x\n"
        "    def __setstate__(self, state):\n"
        f"        open({str(marker)!r}, 'w').close()\n",
        namespace,
    )
    model = namespace["Model"]()
    model.fitted = True
    return bytes(cloudpickle.dumps(model))


def is_live(payload: bytes, marker: Path) -> bool:
    """Plain pickle, in a process of its own, runs the payload: the marker appears."""
    path = marker.with_suffix(".pickle")
    path.write_bytes(payload)
    subprocess.run(
        [sys.executable, "-c", f"import pickle; pickle.loads(open({str(path)!r}, 'rb').read())"],
        capture_output=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    alive = marker.exists()
    marker.unlink(missing_ok=True)
    return alive


FORMS = sorted(forms(Path("/x")))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    pool = ServerPool()
    try:
        yield pool.start(tmp_path_factory.mktemp("bypass") / "state")
    finally:
        pool.stop_all()


@pytest.mark.parametrize("form", FORMS)
def test_a_bypass_form_is_refused_by_inspect_invoke_serve_and_the_console(
    form: str, tmp_path: Path, served: Served
) -> None:
    # GIVEN a payload that, loaded with plain pickle, runs a command
    marker = tmp_path / "ran"
    payload = forms(marker)[form]
    live = is_live(payload, marker)
    if form != "protocol-0-dotted":  # pickle never walked dotted names in protocol 0
        assert live, f"{form}: the payload no longer runs with plain pickle in this Python"
    model = tmp_path / "model.pickle"
    model.write_bytes(payload)
    runner = CliRunner()
    state = ["--state-dir", str(tmp_path / "state")]
    # WHEN it is inspected: THEN it is flagged
    report = runner.invoke(app, ["inspect", str(model), "--json"])
    assert report.exit_code == 0, report.stderr
    assert json.loads(report.stdout)["dangerous"], report.stdout
    # WHEN it is invoked, served, packaged: THEN each refuses before loading anything
    for command in (
        ["invoke", str(model), "--env", "local", "--data", "[1]"],
        ["serve", str(model), "--port", "0", *state],
        ["package", str(model), "-o", str(tmp_path / "bundle")],
    ):
        refused = runner.invoke(app, command)
        assert refused.exit_code == 1, (command, refused.stdout)
        assert "Refusing model.pickle" in refused.stderr
        assert "Traceback" not in refused.stderr
    # WHEN it is uploaded and published in the console: THEN it is refused, nothing published
    headers = {"Authorization": f"Bearer {served.admin_token}"}
    with httpx.Client(base_url=served.base, headers=headers, timeout=60) as admin:
        sent = admin.post("/_/api/uploads", params={"filename": "model.pickle"}, content=payload)
        assert sent.status_code == 201
        name = f"bypass-{form}"
        answer = admin.post(f"/_/api/models/{name}/versions", json={"upload": sent.json()["upload"]})
        assert answer.status_code == 422
        assert answer.json()["needs_trust"] is True
        assert admin.get(f"/_/api/models/{name}").status_code == 404
    # AND nothing ran
    assert not marker.exists()


def test_an_extension_code_is_flagged_since_the_file_does_not_say_what_it_loads(tmp_path: Path) -> None:
    # EXT1 240: what it stands for lives in copyreg's registry of the process that loads it
    model = tmp_path / "model.pickle"
    model.write_bytes(b"\x80\x02\x82\xf0(X\x02\x00\x00\x00idtR.")
    report = CliRunner().invoke(app, ["inspect", str(model)])
    assert "an extension code (EXT1 240)" in report.stdout


def test_the_restricted_unpickler_refuses_what_the_scan_could_miss(tmp_path: Path) -> None:
    # GIVEN a name the scan admits without loading anything (a class-shaped name in
    # scikit-learn), which resolves to a class defined elsewhere: scikit-learn re-exports
    # numbers.Integral. Harmless here, but the scan cannot tell from the name.
    import sklearn.utils._param_validation as validation

    assert validation.Integral.__module__ == "numbers"
    payload = pickled(C(G("sklearn.utils._param_validation", "Integral")))
    from lambdaserve.bundle.pickle_scan import scan_pickle

    assert scan_pickle(io.BytesIO(payload)).dangerous == []
    # WHEN it is loaded by the restricted unpickler, the scan left out
    # THEN the object the name resolved to is refused: it is not scikit-learn's
    with pytest.raises(RefusedGlobal, match=r"numbers\.Integral, which the allow-list does not admit"):
        restricted_load(io.BytesIO(payload))
    # AND every form above is refused by the unpickler alone, without the scan, before it runs
    marker = tmp_path / "ran"
    for form, payload in forms(marker).items():
        if form == "by-value-setstate":
            continue  # admitted globals; the scan flags the hook (the unpickler cannot see calls)
        with pytest.raises(pickle.UnpicklingError):
            restricted_load(io.BytesIO(payload))
        assert not marker.exists(), form


def test_trust_admits_exactly_the_names_refused_and_the_load_holds_to_them(tmp_path: Path) -> None:
    # GIVEN a model of the user's own that keeps a reference to os.getcwd (harmless, refused)
    from sklearn.linear_model import LinearRegression

    model = LinearRegression().fit([[1.0], [2.0]], [1.0, 2.0])
    model.helper = os.getcwd
    path = tmp_path / "model.pickle"
    path.write_bytes(pickle.dumps(model))
    # WHEN it is packaged with --trust: THEN the bundle records exactly that name
    packaged = CliRunner().invoke(
        app,
        ["package", str(path), "--trust", "--env", "local", "--sample", "[[3.0]]", "-o", str(tmp_path / "b")],
    )
    assert packaged.exit_code == 0, packaged.stderr
    manifest = (tmp_path / "b" / "lambdaserve.json").read_text()
    assert f'"{os.getcwd.__module__}.getcwd"' in manifest

    # AND the load admits that name and nothing more
    def trusted(data: bytes) -> Any:
        return restricted_load(io.BytesIO(data), [f"{os.getcwd.__module__}.getcwd"])

    assert trusted(path.read_bytes()).helper is os.getcwd
    with pytest.raises(RefusedGlobal, match=r"system"):
        trusted(pickled(C(G(os.getcwd.__module__, "system"), "true")))
