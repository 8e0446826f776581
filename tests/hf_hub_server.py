"""A Hugging Face hub on 127.0.0.1 for tests: as much of the hub's HTTP protocol as the installed
huggingface_hub's own ``hf_hub_download``, ``list_repo_tree`` and ``list_models`` use.

Read from huggingface_hub 1.33 (``file_download.get_hf_file_metadata``,
``_get_metadata_or_catch_error``, ``http_get``, ``hf_api.list_repo_tree``,
``utils/_http.hf_raise_for_status``). What a client asks and what this server answers, as
huggingface.co does:

- ``HEAD`` (metadata) and ``GET {endpoint}/{repo}/resolve/{revision}/{path}``:

  - a small (git) file: 200 with ``X-Repo-Commit`` (the commit, 40 hex digits), ``ETag`` (the
    file's git blob SHA-1, the name of its blob in the cache) and ``Content-Length``;
  - a large (LFS) file, the weights: 302 to the CDN with ``X-Repo-Commit``, ``X-Linked-Etag``
    (its SHA-256) and ``X-Linked-Size``. huggingface_hub follows a HEAD redirect only on a hub
    host; at a redirect to another host it takes the metadata from the 302 itself and then
    downloads from ``Location``. The CDN here is this same server under 127.0.0.1's other name,
    ``localhost`` (``GET /cdn/{sha256}``), so it is another host to huggingface_hub, as a real
    CDN is;
  - a file not in the repository: 404 with ``X-Error-Code: EntryNotFound`` and ``X-Repo-Commit``
    (huggingface_hub's ``RemoteEntryNotFoundError``); an unknown repository: 404
    ``RepoNotFound``; an unknown revision: 404 ``RevisionNotFound``.

- ``GET /api/models/{repo}/tree/{revision}``: the repository's files as JSON (``type``, ``path``,
  ``size``, ``oid``, ``lfs``), one page (upet lists ``lab-cosmo/upet`` to resolve versions);
- ``GET /api/models?author=ORG``: ORG's repositories (matgl lists them in an error message).

No Xet headers are sent, so huggingface_hub downloads over plain HTTP.

Failures a test asks for: a path in :attr:`HubServer.missing` answers 404 (EntryNotFound);
a path in :attr:`HubServer.short_in` is sent by the CDN as a complete answer of half the file
(the hub announced the whole size); a path in :attr:`HubServer.stop_in` is sent halfway by the
CDN, which then closes the connection, and the server stops: every later connection is closed
unanswered until :attr:`HubServer.stopped` is cleared (the server is back). A "truncated file"
is a file added already cut: the hub then describes the cut file, as a hub holding a cut upload
would.
Every request is recorded in :attr:`HubServer.requests` as ``(method, host, path)``.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import threading
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["HubServer"]

_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<revision>[^/]+)/(?P<path>.+)$")
_TREE = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/tree/(?P<revision>[^/]+)(?:/(?P<path>.*))?$")


@dataclass(frozen=True)
class _File:
    data: bytes
    lfs: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def git_sha1(self) -> str:
        return hashlib.sha1(b"blob %d\0" % len(self.data) + self.data).hexdigest()


class HubServer:
    """A threaded hub on ``127.0.0.1`` (random port); a context manager that starts and stops it.

    ``add(repo, path, data)`` publishes a file (``lfs=True``: served through the CDN, as the
    hub serves weights). :attr:`endpoint` is the value for ``HF_ENDPOINT``.
    """

    def __init__(self) -> None:
        self.files: dict[tuple[str, str], _File] = {}
        self.missing: set[tuple[str, str]] = set()
        self.short_in: set[tuple[str, str]] = set()
        self.stop_in: set[tuple[str, str]] = set()
        self.stopped = False
        self.requests: list[tuple[str, str, str]] = []
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.hub = self
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def cdn(self) -> str:
        return f"http://localhost:{self.port}"

    def add(self, repo: str, path: str, data: bytes, *, lfs: bool = True) -> None:
        self.files[(repo, path)] = _File(data, lfs)

    def commit(self, repo: str) -> str:
        """The repository's one commit (40 hex digits, fixed by its name)."""
        return hashlib.sha1(repo.encode()).hexdigest()

    def downloads(self) -> list[str]:
        """Paths of the GET requests for file bodies (resolve and CDN) so far."""
        return [path for method, _, path in self.requests if method == "GET" and "/api/" not in path]

    def __enter__(self) -> "HubServer":
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


class _Handler(http.server.BaseHTTPRequestHandler):
    """One request of the hub or its CDN (HTTP/1.0: one request per connection)."""

    def log_message(self, *args) -> None:  # keep the test output clean
        pass

    def do_HEAD(self) -> None:  # noqa: N802 (http.server's name)
        self._answer(body=False)

    def do_GET(self) -> None:  # noqa: N802
        self._answer(body=True)

    # ------------------------------------------------------------------------------------------

    @property
    def hub(self) -> HubServer:
        return self.server.hub

    def _answer(self, body: bool) -> None:
        hub = self.hub
        hub.requests.append((self.command, (self.headers.get("Host") or "").rsplit(":", 1)[0], self.path))
        if hub.stopped:  # a stopped server: the connection closes without an answer
            self.close_connection = True
            return
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        if path.startswith("/cdn/"):
            self._cdn(path[len("/cdn/"):], body)
        elif match := _RESOLVE.match(path):
            self._resolve(match["repo"], match["revision"], match["path"], body)
        elif match := _TREE.match(path):
            self._tree(match["repo"], match["revision"], match["path"] or "")
        elif path == "/api/models":
            author = parse_qs(parts.query).get("author", [""])[0]
            repos = sorted({repo for repo, _ in hub.files if repo.split("/")[0] == author})
            self._send(200, json.dumps([{"id": r, "modelId": r} for r in repos]).encode(),
                       {"Content-Type": "application/json"}, body)
        else:
            self._send(404, b"Not Found", {}, body)

    def _resolve(self, repo: str, revision: str, path: str, body: bool) -> None:
        hub = self.hub
        if not any(r == repo for r, _ in hub.files):
            self._send(404, b"Repository not found", {"X-Error-Code": "RepoNotFound"}, body)
            return
        commit = hub.commit(repo)
        if revision not in ("main", commit):
            self._send(404, b"Revision not found", {"X-Error-Code": "RevisionNotFound"}, body)
            return
        file = hub.files.get((repo, path))
        if file is None or (repo, path) in hub.missing:
            self._send(404, b"Entry not found", {"X-Error-Code": "EntryNotFound",
                                                 "X-Error-Message": "Entry not found",
                                                 "X-Repo-Commit": commit}, body)
            return
        if file.lfs:
            self._send(302, b"", {"Location": f"{hub.cdn}/cdn/{file.sha256}", "X-Repo-Commit": commit,
                                  "X-Linked-Etag": f'"{file.sha256}"', "X-Linked-Size": str(len(file.data)),
                                  "ETag": f'"{file.git_sha1}"'}, body)
            return
        self._send(200, file.data, {"X-Repo-Commit": commit, "ETag": f'"{file.git_sha1}"'}, body)

    def _cdn(self, sha256: str, body: bool) -> None:
        hub = self.hub
        key = next((k for k, f in hub.files.items() if f.lfs and f.sha256 == sha256), None)
        if key is None:
            self._send(404, b"NoSuchKey", {}, body)
            return
        data = hub.files[key].data
        if key in hub.short_in:
            data = data[: len(data) // 2]
        if key not in hub.stop_in or not body:
            self._send(200, data, {"Content-Type": "application/octet-stream"}, body)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        hub.stopped = True  # the server goes down mid-transfer
        self.close_connection = True

    def _tree(self, repo: str, revision: str, folder: str) -> None:
        hub = self.hub
        if revision not in ("main", hub.commit(repo)) or not any(r == repo for r, _ in hub.files):
            self._send(404, b"Not found", {"X-Error-Code": "RepoNotFound"}, True)
            return
        entries = []
        for (r, path), file in sorted(hub.files.items()):
            if r != repo or (folder and not path.startswith(folder.rstrip("/") + "/")):
                continue
            entry = {"type": "file", "path": path, "size": len(file.data), "oid": file.git_sha1}
            if file.lfs:
                entry["lfs"] = {"oid": file.sha256, "size": len(file.data), "pointerSize": 134}
            entries.append(entry)
        self._send(200, json.dumps(entries).encode(), {"Content-Type": "application/json"}, True)

    def _send(self, status: int, data: bytes, headers: dict[str, str], body: bool) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body and data:
            self.wfile.write(data)
