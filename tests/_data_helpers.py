"""Shared helpers for the tests of `hat_cli/data` (not a conftest: other test files own that)."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
IWSLT = SHARED_DATA / "iwslt14-de-en"
MULTI30K_RAW = SHARED_DATA / "multi30k" / "raw"
MULTI30K_TOK = SHARED_DATA / "multi30k" / "tok"


def require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real data {path} is not available on this machine")
    return path


def gunzip_to(src: Path, dst: Path) -> Path:
    dst.write_bytes(gzip.decompress(src.read_bytes()))
    return dst


# -- a local HTTP server for the download tests (no internet here) -----------------------------------
import http.server
import re
import threading
from contextlib import contextmanager


class FileServer:
    """Serves ``files`` ({name: bytes}) on 127.0.0.1 with HTTP Range support.

    ``cut_after[name] = n`` makes the next request for ``name`` send n bytes (announcing the full
    length) and drop the connection, once. Every request's path and Range header are recorded."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.content_types: dict[str, str] = {}
        self.cut_after: dict[str, int] = {}
        self.requests: list[tuple[str, str | None]] = []

    def handler(self):
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                name = self.path.lstrip("/").split("?")[0]
                from urllib.parse import unquote

                name = unquote(name)
                server.requests.append((name, self.headers.get("Range")))
                if name not in server.files:
                    self.send_error(404, "Not Found")
                    return
                body = server.files[name]
                start, status = 0, 200
                match = re.match(r"bytes=(\d+)-$", self.headers.get("Range") or "")
                if match:
                    start = int(match.group(1))
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.end_headers()
                        return
                    status = 206
                self.send_response(status)
                self.send_header("Content-Type", server.content_types.get(name, "application/octet-stream"))
                self.send_header("Content-Length", str(len(body) - start))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.end_headers()
                cut = server.cut_after.pop(name, None)
                payload = body[start:] if cut is None else body[start : start + cut]
                self.wfile.write(payload)
                self.wfile.flush()
                if cut is not None:
                    self.close_connection = True

        return Handler

    @contextmanager
    def running(self):
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{httpd.server_address[1]}"
        finally:
            httpd.shutdown()
            httpd.server_close()
