"""A misbehaving HTTP server for pull tests: a real ``http.server`` on 127.0.0.1 in a thread.

It serves a directory (a repo written by the real ostree) like a static web
server (keep-alive, ``Range``), except for paths that match a rule, which get
one of the answers a hostile or broken server can give:

==================  =========================================================
``one-byte-resume``  declares the whole length, sends 1 byte, closes; answers
                     every ``Range`` resume the same way
``trickle``          sends one byte every 0.2 s (slow-loris)
``stall``            sends the headers and half the body, then nothing
``stall-headers``    accepts the request and never answers
``endless``          a body with no length that never ends
``oversized``        declares a 1 TiB ``Content-Length``
``redirect-loop``    302 to itself, forever
``redirect``         302 to ``/_real/PATH`` (served normally): a good redirect
``wrong-checksum``   the bytes of another file with the same suffix
``truncated``        the first half of the file (with a matching length)
``trailing``         the file followed by 1 MiB of garbage
``404``, ``500``     that status
==================  =========================================================

Rules are ``fnmatch`` patterns on the path below the served root (``*.filez``,
``archive/objects/ab/cdef.filez``); :attr:`log` records every request
``(path, Range header)``.  Used by tests of pull (and meant for summaries and
deltas: any file can be given any answer).
"""

from __future__ import annotations

import fnmatch
import os
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

BEHAVIOURS = ("one-byte-resume", "trickle", "stall", "stall-headers", "endless", "oversized", "redirect-loop",
              "redirect", "wrong-checksum", "truncated", "trailing", "404", "500")


class MisbehavingServer:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.rules: dict[str, str] = {}
        self.log: list[tuple[str, str | None]] = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"fixture": self})
        self.httpd = _Server(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        daemon=True)
        self._thread.start()

    def set(self, pattern: str, behaviour: str) -> None:
        assert behaviour in BEHAVIOURS, behaviour
        self.rules[pattern] = behaviour

    def reset(self) -> None:
        """Back to a well-behaved server (and an empty log)."""
        self.rules.clear()
        with self._lock:
            self.log.clear()

    def requests_for(self, pattern: str) -> int:
        with self._lock:
            return sum(1 for p, _r in self.log if fnmatch.fnmatchcase(p, pattern))

    def close(self) -> None:
        self.stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> MisbehavingServer:
        return self

    def __exit__(self, *a: object) -> None:
        self.close()

    def _rule(self, rel: str) -> str | None:
        for pat, b in self.rules.items():
            if fnmatch.fnmatchcase(rel, pat):
                return b
        return None

    def _record(self, rel: str, rng: str | None) -> None:
        with self._lock:
            self.log.append((rel, rng))


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients hanging up on a misbehaving answer is the point


class _Handler(BaseHTTPRequestHandler):
    fixture: MisbehavingServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        fx = self.fixture
        rel = unquote(urlsplit(self.path).path).lstrip("/")
        rng = self.headers.get("Range")
        fx._record(rel, rng)
        real = rel.startswith("_real/")
        if real:
            rel = rel[len("_real/"):]
        behaviour = None if real else fx._rule(rel)
        path = (fx.root / rel).resolve()
        if not path.is_relative_to(fx.root):
            self._status(403)
            return
        if behaviour == "404":
            self._status(404)
            return
        if behaviour == "500":
            self._status(500)
            return
        if behaviour == "redirect-loop":
            self._redirect(self.path)
            return
        if behaviour == "redirect":
            self._redirect("/_real/" + rel)
            return
        if behaviour == "stall-headers":
            fx.stopping.wait(600)
            self.close_connection = True
            return
        if behaviour == "endless":
            self._endless()
            return
        if behaviour == "oversized":
            self.send_response(200)
            self.send_header("Content-Length", str(1 << 40))
            self.end_headers()
            self.wfile.write(b"\0" * 1024)
            self.close_connection = True
            return
        if not path.is_file():
            self._status(404)
            return
        data = path.read_bytes()
        if behaviour == "wrong-checksum":
            data = _other_file(path).read_bytes()
        elif behaviour == "truncated":
            data = data[:len(data) // 2]
        elif behaviour == "trailing":
            data = data + os.urandom(1 << 20)
        start = 0
        if rng and rng.startswith("bytes=") and rng.endswith("-") and rng[6:-1].isdigit():
            start = int(rng[6:-1])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            if behaviour == "one-byte-resume":
                self.wfile.write(body[:1])
                self.wfile.flush()
                self.close_connection = True
            elif behaviour == "trickle":
                for i in range(len(body)):
                    if fx.stopping.wait(0.2):
                        break
                    self.wfile.write(body[i:i + 1])
                    self.wfile.flush()
                self.close_connection = True
            elif behaviour == "stall":
                self.wfile.write(body[:len(body) // 2])
                self.wfile.flush()
                fx.stopping.wait(600)
                self.close_connection = True
            else:
                self.wfile.write(body)
        except OSError:
            self.close_connection = True

    def _status(self, code: int) -> None:
        body = f"{code}\n".encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _endless(self) -> None:
        self.send_response(200)
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        chunk = b"\x55" * 65536
        deadline = time.monotonic() + 600
        try:
            while not self.fixture.stopping.is_set() and time.monotonic() < deadline:
                self.wfile.write(chunk)
        except OSError:
            pass


def _other_file(path: Path) -> Path:
    """Another file of the repo with the same suffix (a valid object with the wrong checksum)."""
    objects = next(p for p in path.parents if p.name == "objects")
    for p in sorted(objects.rglob(f"*{path.suffix}")):
        if p != path:
            return p
    raise AssertionError(f"no other {path.suffix} file near {path}")


NGINX = "/usr/sbin/nginx"


class Nginx:
    """nginx (Debian's nginx-light) serving *root* on a free loopback port, stopped by :meth:`close`."""

    def __init__(self, root: Path, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (workdir / d).mkdir(exist_ok=True)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        user = "user root;\n" if os.geteuid() == 0 else ""
        conf = workdir / "nginx.conf"
        conf.write_text(f"""{user}worker_processes 2;
daemon off;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log;
events {{ worker_connections 512; }}
http {{
  access_log {workdir}/access.log;
  client_body_temp_path {workdir}/body;
  proxy_temp_path {workdir}/proxy;
  fastcgi_temp_path {workdir}/fastcgi;
  uwsgi_temp_path {workdir}/uwsgi;
  scgi_temp_path {workdir}/scgi;
  default_type application/octet-stream;
  sendfile on;
  keepalive_requests 100000;
  server {{
    listen 127.0.0.1:{self.port};
    root {root};
    location / {{ }}
  }}
}}
""")
        self.workdir = workdir
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([NGINX, "-c", str(conf), "-p", str(workdir)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                    self.close()
                    raise RuntimeError(f"nginx did not start: {err}") from None
                time.sleep(0.05)

    def requests(self) -> list[str]:
        """Request lines of the access log (``GET /path HTTP/1.1``)."""
        log = self.workdir / "access.log"
        if not log.exists():
            return []
        return [line.split('"')[1] for line in log.read_text().splitlines() if line.count('"') >= 2]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()

    def __enter__(self) -> Nginx:
        return self

    def __exit__(self, *a: object) -> None:
        self.close()
