"""A small Hugging Face Hub stand-in on 127.0.0.1 for tests (standard library only).

It answers what the real `huggingface_hub` client asks:
`HEAD`/`GET /{repo}/resolve/{revision}/{file}` with `X-Repo-Commit`, `ETag`, `Content-Length` and the
`X-Error-Code` of misses; `/api/models/{repo}/revision/{rev}` and `/tree/{rev}`; and, for `hat zoo push`,
`/api/repos/create`, `/api/models/{repo}/preupload/{rev}` (every file "regular") and
`/api/models/{repo}/commit/{rev}` (base64 contents in the ndjson body), `/api/validate-yaml`. `StaticServer` serves plain
files (the authors' original checkpoint URLs). Every request is logged in `.requests`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Repo:
    files: dict[str, bytes]
    commit: str
    history: list[str] = field(default_factory=list)


def commit_sha(files: dict[str, bytes], parent: str = "") -> str:
    digest = hashlib.sha1(parent.encode())
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return digest.hexdigest()


class _Server:
    handler_base: type[BaseHTTPRequestHandler]

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._httpd is not None
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "_Server":
        owner = self

        class Handler(self.handler_base):  # type: ignore[misc, valid-type]
            server_owner = owner

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    server_owner: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep pytest output quiet
        pass

    def _log(self) -> None:
        self.server_owner.requests.append((self.command, self.path))

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, head: bool = False) -> None:
        self.send_response(status)
        headers = dict(headers or {})
        headers.setdefault("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if not head and body:
            self.wfile.write(body)

    def _json(self, status: int, document, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(document).encode(), {"Content-Type": "application/json", **(headers or {})})

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""


class HubServer(_Server):
    """Model repositories in memory: ``add_repo("hat-cli/x", {"model.safetensors": b"..."})``."""

    def __init__(self) -> None:
        super().__init__()
        self.repos: dict[str, Repo] = {}
        self.handler_base = _HubHandler

    def add_repo(self, repo_id: str, files: dict[str, bytes]) -> str:
        commit = commit_sha(files)
        self.repos[repo_id] = Repo(dict(files), commit, [commit])
        return commit


class _HubHandler(_Handler):
    server_owner: HubServer

    def _repo_and_rest(self, path: str, marker: str) -> tuple[str, list[str]] | None:
        parts = [urllib.parse.unquote(p) for p in path.split("?")[0].strip("/").split("/")]
        if marker not in parts:
            return None
        index = parts.index(marker)
        return "/".join(parts[:index]), parts[index + 1 :]

    def _lookup(self, repo_id: str, revision: str, head: bool = False):
        repo = self.server_owner.repos.get(repo_id)
        if repo is None:
            self._send(404, b"Repository not found", {"X-Error-Code": "RepoNotFound"}, head)
            return None
        if revision not in ("main", repo.commit) and revision not in repo.history:
            self._send(404, b"Revision not found", {"X-Error-Code": "RevisionNotFound"}, head)
            return None
        return repo

    # -------------------------------------------------------------------------------- downloads
    def do_HEAD(self) -> None:
        self._log()
        self._resolve(head=True)

    def do_GET(self) -> None:
        self._log()
        path = self.path.split("?")[0]
        if path.startswith("/api/models/"):
            return self._api_get(path[len("/api/models/") :])
        self._resolve(head=False)

    def _resolve(self, head: bool) -> None:
        found = self._repo_and_rest(self.path, "resolve")
        if found is None or len(found[1]) < 2:
            return self._send(404, b"Not found", {}, head)
        repo_id, (revision, *file_parts) = found
        repo = self._lookup(repo_id, revision, head)
        if repo is None:
            return
        filename = "/".join(file_parts)
        if filename not in repo.files:
            return self._send(404, b"Entry not found", {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": repo.commit}, head)
        data = repo.files[filename]
        headers = {
            "X-Repo-Commit": repo.commit,
            "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
            "Content-Type": "application/octet-stream",
        }
        self._send(200, data, headers, head)

    def _api_get(self, rest: str) -> None:
        parts = [urllib.parse.unquote(p) for p in rest.strip("/").split("/")]
        if len(parts) >= 4 and parts[2] in ("revision", "tree"):
            repo_id, kind, revision = "/".join(parts[:2]), parts[2], parts[3]
            repo = self._lookup(repo_id, revision)
            if repo is None:
                return
            if kind == "revision":
                return self._json(200, {"id": repo_id, "sha": repo.commit, "siblings": [{"rfilename": f} for f in sorted(repo.files)]})
            entries = [
                {"type": "file", "path": f, "size": len(d), "oid": hashlib.sha1(d).hexdigest()} for f, d in sorted(repo.files.items())
            ]
            return self._json(200, entries)
        if len(parts) == 2:  # repo_info
            repo = self._lookup("/".join(parts), "main")
            if repo is not None:
                return self._json(200, {"id": "/".join(parts), "sha": repo.commit, "siblings": [{"rfilename": f} for f in sorted(repo.files)]})
            return
        self._send(404, b"Not found")

    # ---------------------------------------------------------------------------------- uploads
    def do_POST(self) -> None:
        self._log()
        path = self.path.split("?")[0]
        body = self._body()
        if path == "/api/repos/create":
            payload = json.loads(body or b"{}")
            repo_id = "/".join(p for p in (payload.get("organization"), payload["name"]) if p)
            if repo_id in self.server_owner.repos:
                return self._json(409, {"error": "You already created this model repo"})
            self.server_owner.repos[repo_id] = Repo({}, "0" * 40, [])
            return self._json(200, {"url": f"{self.server_owner.url}/{repo_id}", "name": repo_id})
        if path == "/api/validate-yaml":  # model card metadata: the front matter must be a YAML mapping
            import yaml

            content = json.loads(body)["content"]
            try:
                front = content.split("---\n")[1] if content.startswith("---\n") else ""
                ok = isinstance(yaml.safe_load(front) if front else {}, dict)
            except (yaml.YAMLError, IndexError):
                ok = False
            return self._json(200 if ok else 400, {"errors": [] if ok else [{"message": "invalid metadata"}], "warnings": []})
        found = self._repo_and_rest(path.replace("/api/models/", "/", 1), "preupload") or self._repo_and_rest(
            path.replace("/api/models/", "/", 1), "commit"
        )
        if found is None:
            return self._send(404, b"Not found")
        repo_id, _ = found
        repo = self.server_owner.repos.get(repo_id)
        if repo is None:
            return self._send(404, b"Repository not found", {"X-Error-Code": "RepoNotFound"})
        if "/preupload/" in path:
            files = json.loads(body)["files"]
            return self._json(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]})
        new_files = dict(repo.files)
        for line in body.splitlines():
            item = json.loads(line)
            if item["key"] == "file":
                value = item["value"]
                new_files[value["path"]] = base64.b64decode(value["content"])
            elif item["key"] == "deletedFile":
                new_files.pop(item["value"]["path"], None)
            elif item["key"] != "header":
                return self._json(400, {"error": f"unsupported operation {item['key']} in this test server"})
        repo.files = new_files
        repo.commit = commit_sha(new_files, repo.commit)
        repo.history.append(repo.commit)
        return self._json(200, {"commitUrl": f"{self.server_owner.url}/{repo_id}/commit/{repo.commit}", "commitOid": repo.commit, "success": True})


class StaticServer(_Server):
    """Plain files by URL path: ``files["/s/abc/model.pt"] = b"..."``."""

    def __init__(self, files: dict[str, bytes] | None = None) -> None:
        super().__init__()
        self.files: dict[str, bytes] = dict(files or {})
        self.handler_base = _StaticHandler


class _StaticHandler(_Handler):
    server_owner: StaticServer

    def do_GET(self) -> None:
        self._log()
        data = self.server_owner.files.get(self.path.split("?")[0])
        if data is None:
            return self._send(404, b"Not found")
        self._send(200, data, {"Content-Type": "application/octet-stream"})
