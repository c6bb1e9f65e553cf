"""``weights_server``: a threaded HTTP server on 127.0.0.1 that answers as Google Cloud Storage and the
Hugging Face hub do, for files the tests make (the machines here have no internet).

GCS side: ``GET/HEAD /<path>`` with Content-Length, Accept-Ranges, ETag, ``x-goog-hash: crc32c=..,md5=..``
(base64, as GCS sends them) and ``Range: bytes=N-`` -> 206 with Content-Range. Hub side:
``/<org>/<name>/resolve/<revision>/<file>`` with X-Repo-Commit, ETag (the sha256 for LFS files, with
X-Linked-Etag / X-Linked-Size), 404 + ``X-Error-Code: EntryNotFound`` for a file the repository lacks.
Failure modes per path: ``fail[path] = n`` answers the next n requests with 503; ``cut[path] = n`` sends
the full Content-Length but closes the connection after n bytes (once per listed value); ``corrupt`` serves
other bytes under the right headers. Every request is logged as (method, path, Range header).
"""
from __future__ import annotations

import base64
import hashlib
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

_CRC32C_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _CRC32C_TABLE.append(_c)


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), the checksum GCS publishes beside md5."""
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC32C_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


class WeightsServer:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}  # GCS paths ("/vit_models/augreg/x.npz") and hub paths
        self.fail: dict[str, int] = {}
        self.cut: dict[str, list[int]] = {}
        self.corrupt: set[str] = set()
        self.slow: dict[str, float] = {}  # seconds to spread a body over (to overlap two clients)
        self.log: list[tuple[str, str, str | None]] = []
        self.commit = "0123456789abcdef0123456789abcdef01234567"
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_HEAD(self) -> None:
                self.answer(body=False)

            def do_GET(self) -> None:
                self.answer(body=True)

            def answer(self, body: bool) -> None:
                path = self.path.split("?", 1)[0]
                path = urllib.parse.unquote(path)
                server.log.append((self.command, path, self.headers.get("Range")))
                hub = "/resolve/" in path
                if hub:  # /<org>/<name>/resolve/<rev>/<file> -> stored as /<org>/<name>/<file>
                    repo, _, rest = path.partition("/resolve/")
                    path = repo + "/" + rest.split("/", 1)[1]
                if server.fail.get(path, 0) > 0:
                    server.fail[path] -= 1
                    return self.status(503, "Service Unavailable")
                data = server.files.get(path)
                if data is None:
                    return self.status(404, "Not Found", {"X-Error-Code": "EntryNotFound"} if hub else {})
                md5, sha = hashlib.md5(data).digest(), hashlib.sha256(data).hexdigest()
                headers = {"Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
                if hub:
                    headers.update({"X-Repo-Commit": server.commit, "ETag": f'"{sha}"', "X-Linked-Etag": f'"{sha}"',
                                    "X-Linked-Size": str(len(data))})
                else:
                    crc = base64.b64encode(crc32c(data).to_bytes(4, "big")).decode()
                    headers.update({"ETag": f'"{md5.hex()}"',
                                    "x-goog-hash": f"crc32c={crc},md5={base64.b64encode(md5).decode()}"})
                served = bytes(b ^ 0xFF for b in data[:16]) + data[16:] if path in server.corrupt else data
                start, code = 0, 200
                rng = self.headers.get("Range")
                if rng and rng.startswith("bytes=") and self.headers.get("If-Range") in (None, headers["ETag"]):
                    start = int(rng[6:].split("-")[0])
                    code = 206
                    headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
                part = served[start:]
                headers["Content-Length"] = str(len(part))
                self.send_response(code)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                if not body:
                    return
                cuts = server.cut.get(path)
                if cuts:
                    n = cuts.pop(0)
                    self.wfile.write(part[:n])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if path in server.slow:
                    for i in range(0, len(part), max(1, len(part) // 10)):
                        self.wfile.write(part[i:i + max(1, len(part) // 10)])
                        self.wfile.flush()
                        time.sleep(server.slow[path] / 10)
                    return
                self.wfile.write(part)

            def status(self, code: int, reason: str, extra: dict | None = None) -> None:
                self.send_response(code, reason)
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def gets(self, path: str) -> list[tuple[str, str, str | None]]:
        return [e for e in self.log if e[1] == path and e[0] == "GET"]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def weights_server(tmp_path, monkeypatch):
    """The server, with vitlab pointed at it (VITLAB_OFFICIAL_URL = <server>/vit_models/), an empty cache
    (VITLAB_CACHE) and no retry wait."""
    from vitlab.weights import hub

    s = WeightsServer()
    monkeypatch.setenv("VITLAB_OFFICIAL_URL", s.url + "/vit_models/")
    monkeypatch.setenv("VITLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("VITLAB_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "BACKOFF_S", 0.0)
    yield s
    s.close()
