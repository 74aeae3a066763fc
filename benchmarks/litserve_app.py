"""The newsgroups model under LitServe 0.2 with server-side batching: the batching server
the issue's "Speed" targets name. Started by ``harness.launch_litserve`` (not a test module):

    MODEL_PATH=examples/newsgroups/model.pickle PORT=8000 python benchmarks/litserve_app.py

The body is the same as lambdaserve's and the Flask baseline's: a JSON array of posts, answered
with the JSON array of ``model.predict``. LitServe batches *requests*: each holds a list of
posts, so ``batch`` concatenates the lists into one ``predict`` call and ``unbatch`` cuts
the answers back per request.

Settings, from the environment: LITSERVE_WORKERS inference worker processes
(``workers_per_device`` on the CPU; default 2), LITSERVE_API_SERVERS uvicorn processes
(LitServe's default: one per worker), LITSERVE_MAX_BATCH_SIZE requests per ``predict``
call (64), LITSERVE_BATCH_TIMEOUT seconds a worker waits for a batch to fill (0.005). The
benchmark runs the best of them for each load: ``LITSERVE`` in test_versus_flask.py.

LitServe's path for a request: a uvicorn process parses it and puts it on a
multiprocessing.Manager queue; an inference worker takes up to max_batch_size requests
off that queue (waiting up to batch_timeout for it to fill) and puts each answer on
another Manager queue, which a thread of the uvicorn process reads. ``fast_queue=True``
(ZeroMQ) is not used: in 0.2.x it has no effect (``LitServer`` passes
``TransportConfig(transport_config=...)``, a field that does not exist, so the transport
stays "mp").
"""

from __future__ import annotations

import os
import pickle
import signal
from typing import Any

import litserve as ls


class NewsgroupsAPI(ls.LitAPI):
    def setup(self, device: str) -> None:
        with open(os.environ["MODEL_PATH"], "rb") as f:
            self.model = pickle.load(f)

    def decode_request(self, request):
        # ``request`` is the parsed JSON body, a list of posts. No annotation: LitServe would
        # take it for the type FastAPI should parse the request into.
        return list(request)

    def batch(self, inputs: list[list[str]]) -> tuple[list[str], list[int]]:
        return [post for posts in inputs for post in posts], [len(posts) for posts in inputs]

    def predict(self, x: tuple[list[str], list[int]]) -> tuple[list[Any], list[int]]:
        posts, sizes = x
        return self.model.predict(posts).tolist(), sizes

    def unbatch(self, output: tuple[list[Any], list[int]]) -> list[list[Any]]:
        predictions, sizes = output
        answers, start = [], 0
        for size in sizes:
            answers.append(predictions[start : start + size])
            start += size
        return answers

    def encode_response(self, output: list[Any]) -> list[Any]:
        return output


MAIN_PID = os.getpid()


def _stop(signum: int, frame: Any) -> None:
    """SIGTERM: LitServe stops its processes on KeyboardInterrupt; the default would orphan them."""
    if os.getpid() == MAIN_PID:
        raise KeyboardInterrupt
    # A forked uvicorn process that inherited this handler: uvicorn replays SIGTERM after
    # its own graceful shutdown, so die of it as usual.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def main() -> None:
    workers = int(os.environ.get("LITSERVE_WORKERS", "2"))
    api_servers = os.environ.get("LITSERVE_API_SERVERS")
    api = NewsgroupsAPI(
        max_batch_size=int(os.environ.get("LITSERVE_MAX_BATCH_SIZE", "64")),
        batch_timeout=float(os.environ.get("LITSERVE_BATCH_TIMEOUT", "0.005")),
    )
    server = ls.LitServer(api, accelerator="cpu", workers_per_device=workers, timeout=30)
    signal.signal(signal.SIGTERM, _stop)
    server.run(
        host="127.0.0.1",
        port=int(os.environ.get("PORT", "8000")),
        num_api_servers=int(api_servers) if api_servers else None,
        log_level="warning",
        generate_client_file=False,  # it would write client.py into the working directory
    )


if __name__ == "__main__":  # LitServe spawns its inference workers, which import this module
    main()
