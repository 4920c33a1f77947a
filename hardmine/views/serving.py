"""``hardmine gallery --serve``: a run's pages over http on 127.0.0.1, on the run's own port.

Served over http the browser keeps review decisions reliably (Chromium loses some on reloads of
``file://`` pages). The server answers loopback host names only (a page of another site that
rebinds its name to 127.0.0.1 is refused), never lists a folder, never follows a link out of the
run, and serves an original image only by the id of a sample of the run's own table. Review decisions
made on a served gallery are kept in the run folder (``decisions.json``, ``GET``/``POST /decisions``), so
they survive browsers and machines; only this server's own pages may store them.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import os
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

from hardmine.core.errors import HardmineError, warn
from hardmine.core.io import write_json
from hardmine.data.images import data_root
from hardmine.record.layout import DECISIONS_FILE
from hardmine.record.manifest import Manifest
from hardmine.record.record import RunFolder
from hardmine.views.gallery import default_round

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
DECISIONS_PATH = "/decisions"  # GET and POST the run's review decisions (decisions.json)
MAX_DECISIONS_BYTES = 16 * 2**20
DECISION_VALUES = ("keep", "relabel", "exclude")


def check_decisions(decisions: object, folder: RunFolder) -> dict[str, dict[str, str]]:
    """The decisions a page sent, as ``{image id: {decision, current, new_label}}``; raises ``ValueError``
    naming the first entry that is not of that shape, not an image of the run, or not a known decision."""
    if not isinstance(decisions, dict):
        raise ValueError("decisions must be an object of image id -> decision")
    known = set(folder.samples()["id"])
    for image_id, entry in decisions.items():
        if image_id not in known:
            raise ValueError(f"{image_id!r} is not an image of the run")
        if not isinstance(entry, dict) or entry.get("decision") not in DECISION_VALUES or not all(
                isinstance(entry.get(k, ""), str) for k in ("current", "new_label")):  # fmt: skip
            raise ValueError(f"the decision for {image_id!r} is not one of {', '.join(DECISION_VALUES)} with text "
                             "labels")
    return {i: {k: str(e.get(k, "")) for k in ("decision", "current", "new_label")} for i, e in decisions.items()}


class _RunFolderHandler(SimpleHTTPRequestHandler):
    """Files under the run folder only (symlinks out of it refused), asked for by a loopback host name
    (a page of another site that rebinds its name to 127.0.0.1 is refused); no listings, no request log."""

    def list_directory(self, path):
        self.send_error(404, "no listing")
        return None

    def translate_path(self, path: str) -> str:
        local = super().translate_path(path)
        root = os.path.realpath(self.directory)
        if os.path.commonpath([root, os.path.realpath(local)]) != root:
            return os.path.join(root, ".hardmine-outside")  # never exists: a 404
        return local

    def _loopback_host(self) -> bool:
        host = (self.headers.get("Host") or "").strip()
        name = host[1:].split("]")[0] if host.startswith("[") else host.rsplit(":", 1)[0]
        return name.lower() in LOOPBACK_HOSTS

    def do_GET(self):  # noqa: N802 - the standard library's name
        if not self._loopback_host():
            self.send_error(403, "only loopback host names are served")
            return
        if "\x00" in unquote(self.path):
            self.send_error(400, "a NUL byte is not part of any path")
            return
        try:
            self._get()
        except ConnectionError:  # the browser went away: nothing to answer
            return
        except (HardmineError, OSError, ValueError, KeyError) as exc:  # a damaged run file: one line, no traceback
            self.send_error(500, str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__)

    def _get(self) -> None:
        if self.path.split("?", 1)[0] in ("", "/"):  # the run's address opens the gallery a user wants first
            folder = RunFolder(self.directory)
            page = folder.gallery_path(default_round(folder))
            self.send_response(302)
            self.send_header("Location", "/" + page.relative_to(folder.root).as_posix())
            self.end_headers()
            return
        if self.path.split("?", 1)[0] == DECISIONS_PATH:
            self._send_decisions()
            return
        if self.path.startswith("/original/"):
            self._send_original(unquote(self.path.removeprefix("/original/").split("?", 1)[0]))
            return
        super().do_GET()

    def _send_original(self, sample_id: str) -> None:
        """The full-size image of a sample of the run's own table (by id: no path is ever taken from
        the request), for the gallery's zoom."""
        folder = RunFolder(self.directory)
        try:  # a sample table edited since the run recorded it could name any file: serve only a recorded one
            Manifest(folder.root).check_run_files()
            samples = folder.samples().set_index("id")
            root = data_root(folder.run_config().data.data).resolve()
        except HardmineError as exc:
            self.send_error(500, str(exc).splitlines()[0][:200])
            return
        path = Path(str(samples.at[sample_id, "path"])) if sample_id in samples.index else None
        if path is None or not path.is_file() or not path.resolve().is_relative_to(root):
            self.send_error(404, "no such image in the run's data")
            return
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", mimetypes.guess_type(path.name)[0] or "application/octet-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):  # noqa: N802 - the standard library's name
        """``POST /decisions``: the gallery's review decisions, kept in the run folder (``decisions.json``).

        Only a JSON body from a page of this server: a loopback Host, an Origin (when sent) of this server,
        and ``Content-Type: application/json``, which a page of another site cannot send without a CORS
        preflight this server never grants."""
        origin = self.headers.get("Origin")
        own = {f"http://{self.headers.get('Host', '')}"}
        if not self._loopback_host() or (origin is not None and origin not in own):
            self.send_error(403, "only this server's own pages may store decisions")
            return
        if self.path.split("?", 1)[0] != DECISIONS_PATH or self.headers.get("Content-Type") != "application/json":
            self.send_error(404, "POST only application/json to /decisions")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= MAX_DECISIONS_BYTES:
            self.send_error(413, f"decisions must be 1 to {MAX_DECISIONS_BYTES} bytes")
            return
        try:
            decisions = check_decisions(json.loads(self.rfile.read(length)), RunFolder(self.directory))
        except (ValueError, HardmineError) as exc:
            self.send_error(400, str(exc).splitlines()[0][:200])
            return
        write_json(Path(self.directory) / DECISIONS_FILE, decisions)
        self.send_response(204)
        self.end_headers()

    def _send_decisions(self) -> None:
        path = Path(self.directory) / DECISIONS_FILE
        data = path.read_bytes() if path.is_file() else b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_HEAD(self):  # noqa: N802
        if not self._loopback_host():
            self.send_error(403, "only loopback host names are served")
            return
        super().do_HEAD()

    def log_message(self, format, *args):  # noqa: A002 - the standard library's signature
        pass


def run_port(run_dir: str | os.PathLike) -> int:
    """The run's own port (49152-65535, from its identity): the browser keeps a page's decisions per
    origin, so serving a run again on the same port finds them again."""
    digest = hashlib.sha256(RunFolder(run_dir).identity().encode()).digest()
    return 49152 + int.from_bytes(digest[:4], "big") % 16384


def serve_run(run_dir: str | os.PathLike, port: int | None = None) -> ThreadingHTTPServer:
    """An http server for ``run_dir``'s galleries on 127.0.0.1, not yet serving.

    Call ``serve_forever()`` on it (``shutdown()`` from another thread stops it).
    ``port`` None takes the run's own port (:func:`run_port`; any free one, with a warning, when it is
    taken), 0 any free port; the bound one is ``server.server_address[1]``. Only the loopback
    interface is bound, and the handler keeps requests inside the folder.
    """
    if port is not None and not 0 <= port <= 65535:
        raise HardmineError(f"--port {port} is not valid; expected 0 (any free port) to 65535")
    root = RunFolder(run_dir).root
    handler = partial(_RunFolderHandler, directory=str(root))
    wanted = run_port(root) if port is None else port
    try:
        return ThreadingHTTPServer(("127.0.0.1", wanted), handler)
    except OSError as exc:
        if port is None:
            warn(f"the run's own port {wanted} is taken, so this page opens on another: decisions made on "
                 f"port {wanted} are not shown there (download them first, or free the port)")  # fmt: skip
            return ThreadingHTTPServer(("127.0.0.1", 0), handler)
        raise HardmineError(f"cannot serve on 127.0.0.1:{port} ({exc.strerror or exc}); "
                            "choose another --port, or 0 for any free port") from None  # fmt: skip


def served_url(server: ThreadingHTTPServer, run_dir: str | os.PathLike, page: Path) -> str:
    """The http address of ``page`` (a file inside ``run_dir``) on ``server``."""
    relative = Path(page).resolve().relative_to(RunFolder(run_dir).root.resolve())
    return f"http://127.0.0.1:{server.server_address[1]}/{relative.as_posix()}"
