"""The app behind a real HTTP server (uvicorn, in a thread), as `vitlab serve` runs it, asked with Python's
urllib: what a client that sends its whole request before reading the answer sees."""
from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import pytest

pytest.importorskip("starlette", reason="the 'serve' extra is not installed (pip install 'vitlab[serve]')")
uvicorn = pytest.importorskip("uvicorn", reason="the 'serve' extra is not installed (pip install 'vitlab[serve]')")

from vitlab.serve.app import MAX_BYTES, create_app  # noqa: E402


@pytest.fixture(scope="module")
def url(explorer):
    server = uvicorn.Server(uvicorn.Config(create_app(explorer), host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/"
    server.should_exit = True
    thread.join(10)


def upload(url: str, data: bytes, name: str = "big.png") -> urllib.request.Request:
    boundary = "vitlab-test-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return urllib.request.Request(url + "predict", data=body, method="POST",
                                  headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})


def test_an_upload_over_the_limit_gets_the_413_message_not_a_reset(url):
    """urllib sends all 25 MB before it reads a byte: the server must take them in before it answers."""
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(upload(url, bytes(MAX_BYTES + 5 * 1024 * 1024)), timeout=60)
    assert e.value.code == 413
    assert f"the limit is {MAX_BYTES:,} bytes" in json.loads(e.value.read())["error"]
    good = urllib.request.urlopen(url + "examples/0.png", timeout=10).read()  # still serving
    assert json.loads(urllib.request.urlopen(upload(url, good, "0.png"), timeout=30).read())["predicted"]
