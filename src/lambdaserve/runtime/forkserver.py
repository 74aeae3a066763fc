"""Execution environments of the local Lambda (serve, invoke, package): forked from a
template that ran INIT.

    python -m lambdaserve.runtime.forkserver SOCKET_PATH TEMPLATE_ID

The template imports the handler once (INIT, with Lambda's error types: see
``lambda_init``), freezes the garbage collector so that forked children keep sharing the
loaded model's memory pages, and connects to the gateway's Unix socket. Each ``fork`` message
makes a child: a new execution environment that already holds the loaded model, as a
Lambda SnapStart environment is restored from a snapshot taken after INIT. The child
opens its own connection to the gateway and serves invocations, one message at a time.
Before it says hello, a child runs the handler module's ``after_restore()`` when there is
one (as SnapStart runs afterRestore hooks): lambdaserve's handler predicts its warm-up
sample again there, so the pages a request touches are copied before a request waits on
them (the first request of a new environment: about 1 ms instead of 5 to 12).

Frames: a 4-byte little-endian length, then a JSON object.

    template -> gateway  {"type": "template", "id", "pid", "initMs", "maxMemoryMB", "logs"}
                         | {"type": "initError", ...}
    gateway -> template  {"type": "fork", "envId"}
    child    -> gateway  {"type": "hello", "envId", "pid"}
    gateway -> child     {"type": "invoke", "requestIds", "events", "deadlineMs", "tail"},
                         then ``tail`` bytes: the events' text bodies, raw (``apigw.raw_bodies``)
    child    -> gateway  {"type": "result", "results": [{"payload"} | {"error"}], "durationMs",
                          "maxMemoryMB", "logs"}
    gateway -> child     {"type": "describe"}
    child    -> gateway  {"type": "description", ...}  (what the model says of itself: the
                          handler module's ``get_service().describe()``; ``package`` records it)

A batch of several events goes to the handler module's ``handle_batch`` when it has one
(lambdaserve's handler does: one model call for the batch); otherwise the handler is
called once per event. Everything printed during an invocation is captured and sent
back with the result, so the gateway can write it between START and END.
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
import os
import signal
import socket
import struct
import sys
import time
from typing import Any, BinaryIO

from lambdaserve.runtime.apigw import expand
from lambdaserve.runtime.lambda_init import (
    DEFAULT_HANDLER,
    InitFault,
    LocalContext,
    error_payload,
    load_handler,
    max_memory_mb,
)

_HEADER = struct.Struct("<I")


def send(sock: socket.socket, message: dict[str, Any]) -> None:
    data = json.dumps(message, default=str).encode()
    sock.sendall(_HEADER.pack(len(data)) + data)


def receive(stream: BinaryIO) -> dict[str, Any] | None:
    """The next frame; an invoke frame's raw tail (its text bodies) as bytes in ``tail``."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(header)
    data = stream.read(size)
    if len(data) != size:
        return None
    message: dict[str, Any] = json.loads(data)
    if "tail" in message:  # an invoke frame: its length in the JSON, its bytes after it
        length = int(message["tail"])
        message["tail"] = stream.read(length) if length > 0 else b""
        if len(message["tail"]) != length:
            return None
    return message


def connect(path: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    return sock


@contextlib.contextmanager
def captured() -> Any:
    """Collect what Python code prints (stdout and stderr) as log lines."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        yield buffer


def _invoke(handler: Any, batch: Any, message: dict[str, Any]) -> dict[str, Any]:
    ids = message["requestIds"]
    tail = message.get("tail", b"")
    events = [expand(event, tail) for event in message["events"]]  # the gateway sends them compact
    contexts = [LocalContext(request_id, int(message["deadlineMs"])) for request_id in ids]
    started = time.perf_counter()
    with captured() as output:
        if batch is not None and len(events) > 1:
            try:
                results = [{"payload": p} for p in batch(events, contexts)]
            except Exception as exc:
                results = [{"error": error_payload(exc)}] * len(events)
        else:
            results = []
            for event, context in zip(events, contexts, strict=True):
                try:
                    payload = handler(event, context)
                    json.dumps(payload)
                    results.append({"payload": payload})
                except TypeError as exc:
                    results.append({"error": error_payload(exc, "Runtime.MarshalError")})
                except Exception as exc:
                    results.append({"error": error_payload(exc)})
    return {
        "type": "result",
        "results": results,
        "durationMs": (time.perf_counter() - started) * 1000,
        "maxMemoryMB": max_memory_mb(),
        "logs": output.getvalue().splitlines(),
    }


def _describe(module: Any) -> dict[str, Any]:
    get_service = getattr(module, "get_service", None)
    with captured():
        description = get_service().describe() if callable(get_service) else {}
    return {"type": "description", **description}


def serve_environment(path: str, env_id: str, module: Any, handler: Any) -> None:
    restore = getattr(module, "after_restore", None)
    batch = getattr(module, "handle_batch", None)
    if callable(restore):
        with contextlib.suppress(Exception), captured():
            restore()
    sock = connect(path)
    send(sock, {"type": "hello", "envId": env_id, "pid": os.getpid()})
    stream = sock.makefile("rb")
    while (message := receive(stream)) is not None:
        if message.get("type") == "invoke":
            send(sock, _invoke(handler, batch, message))
        elif message.get("type") == "describe":
            send(sock, _describe(module))


def _init_in_background() -> bool:
    """A background INIT (a stage waiting to flip, LAMBDASERVE_INIT_IDLE=1) runs at idle CPU
    priority, so that it takes no CPU from the requests being served meanwhile; only where
    the normal priority can be taken back after INIT (as root, or with RLIMIT_NICE >= 20),
    as the environments forked from this process inherit it."""
    if os.environ.pop("LAMBDASERVE_INIT_IDLE", "") != "1" or not hasattr(os, "SCHED_IDLE"):
        return False
    import resource

    if os.geteuid() != 0 and resource.getrlimit(resource.RLIMIT_NICE)[0] < 20:
        return False
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except OSError:
        return False
    return True


def _leave_background() -> None:
    with contextlib.suppress(OSError):
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


def main() -> int:
    path, template_id = sys.argv[1], sys.argv[2]
    task_root = os.environ.get("LAMBDA_TASK_ROOT")
    if task_root and task_root not in sys.path:
        sys.path.insert(0, task_root)
    started = time.perf_counter()
    background = _init_in_background()
    with captured() as output:
        try:
            module, handler = load_handler(os.environ.get("_HANDLER") or DEFAULT_HANDLER)
            failure = None
        except InitFault as exc:
            failure = error_payload(exc, exc.error_type)
        except Exception as exc:  # raised by INIT code itself: reported under its own type
            failure = error_payload(exc)
    control = connect(path)
    logs = output.getvalue().splitlines()
    if failure is not None:
        send(control, {"type": "initError", "id": template_id, "logs": logs, **failure})
        return 1
    if background:
        _leave_background()
    init_ms = (time.perf_counter() - started) * 1000
    gc.collect()
    gc.freeze()  # children share these objects' pages: no GC pass touches them
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped without waiting
    ready = {"type": "template", "id": template_id, "pid": os.getpid(), "initMs": init_ms}
    send(control, {**ready, "maxMemoryMB": max_memory_mb(), "logs": logs})
    stream = control.makefile("rb")
    while (message := receive(stream)) is not None:
        if message.get("type") != "fork":
            continue
        pid = os.fork()
        if pid == 0:  # the new execution environment
            control.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            try:
                serve_environment(path, message["envId"], module, handler)
            finally:
                os._exit(0)
        send(control, {"type": "forked", "envId": message["envId"], "pid": pid})
    return 0


if __name__ == "__main__":
    sys.exit(main())
