"""Console sessions and uploaded file names: the pure parts of the console's security."""

from __future__ import annotations

import pytest

from lambdaserve.console.sessions import MAX_SESSIONS, SESSION_TTL_S, SessionBook
from lambdaserve.console.uploads import UploadRefused, safe_file_name


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_session_id_is_random_and_stored_only_as_a_hash() -> None:
    book = SessionBook("token")
    first, session = book.open()
    second, _ = book.open()
    assert first != second
    assert book.find(first) is session
    assert first not in repr(book.__dict__)
    assert book.find("not-a-session") is None


def test_a_session_ends_when_its_cookie_does_and_on_sign_out() -> None:
    clock = Clock()
    book = SessionBook("token", clock=clock)
    early, _ = book.open()
    clock.now += 60
    later, _ = book.open()
    clock.now += SESSION_TTL_S - 30
    assert book.find(early) is None  # signed in more than SESSION_TTL_S ago, however used
    assert book.find(later) is not None
    book.close(later)
    assert book.find(later) is None


def test_signing_in_in_a_loop_keeps_at_most_the_newest_sessions() -> None:
    book = SessionBook("token")
    ids = [book.open()[0] for _ in range(MAX_SESSIONS + 10)]
    assert book.find(ids[0]) is None
    assert book.find(ids[-1]) is not None


def test_the_admin_token_is_compared_whole() -> None:
    book = SessionBook("s3cret-token")
    assert book.is_admin_token("s3cret-token")
    assert book.is_admin_token(" s3cret-token\n")  # pasted with white space
    assert not book.is_admin_token("s3cret")
    assert not book.is_admin_token("")


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("model.pickle", "model.pickle"),
        ("../../etc/passwd.pkl", "passwd.pkl"),
        ("C:\\Users\\me\\Model v2.JOBLIB", "Model-v2.joblib"),
        (".hidden.onnx", "hidden.onnx"),
        ("....pkl", "model.pkl"),
        ("na\u00efve b\u00e4yes.skops", "na-ve-b-yes.skops"),
    ],
)
def test_an_uploaded_file_keeps_only_a_safe_name_and_its_models_suffix(given: str, kept: str) -> None:
    assert safe_file_name(given) == kept


@pytest.mark.parametrize("given", ["notes.txt", "model", "", "model.pickle.exe", "archive.tar.gz"])
def test_a_name_without_a_model_suffix_is_refused(given: str) -> None:
    with pytest.raises(UploadRefused) as refused:
        safe_file_name(given)
    assert refused.value.status == 400
