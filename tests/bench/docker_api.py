"""The Docker Engine API over its unix socket, for the benches that time the engine itself.

The CLI costs tens of milliseconds per call on a loaded machine (a Go binary starting), which
would be most of what a latency bench measures; one HTTP request on the socket costs about a
millisecond. `Events` reads the engine's events stream in a thread: every event carries the
engine's own timestamp (`timeNano`, the same wall clock as `time.time_ns()` here).
"""
import http.client, json, os, queue, socket, threading, time, urllib.parse

SOCKET = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock").removeprefix("unix://")


class _Conn(http.client.HTTPConnection):
    def __init__(self, timeout=60):
        super().__init__("localhost", timeout=timeout)

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(SOCKET)


def call(method, path, body=None, ok=(200, 201, 204, 304)):
    """One request; returns the decoded JSON answer (or None). Raises on a status outside `ok`."""
    c = _Conn()
    try:
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": "application/json"} if data is not None else {}
        c.request(method, path, body=data, headers=headers)
        r = c.getresponse()
        raw = r.read()
        if r.status not in ok:
            raise RuntimeError(f"{method} {path}: {r.status} {raw.decode(errors='replace').strip()}")
        return json.loads(raw) if raw.strip() else None
    finally:
        c.close()


def remove(name):
    """`docker rm -f`; returns when the engine answers (the container and its name are gone)."""
    call("DELETE", f"/containers/{urllib.parse.quote(name)}?force=1", ok=(204, 404))


def run(name, body):
    """`docker run -d`: create, then start. Returns the id."""
    cid = call("POST", f"/containers/create?name={urllib.parse.quote(name)}", body)["Id"]
    call("POST", f"/containers/{cid}/start")
    return cid


def inspect(name):
    return call("GET", f"/containers/{urllib.parse.quote(name)}/json", ok=(200,))


class Events:
    """Container events matching `filters` (Docker's filter syntax), from now on."""

    def __init__(self, filters):
        self.q = queue.Queue()
        self.seen = []
        q = urllib.parse.quote(json.dumps(filters))
        self.conn = _Conn(timeout=None)
        self.conn.request("GET", f"/events?filters={q}")
        self.resp = self.conn.getresponse()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            while True:
                line = self.resp.readline()
                if not line:
                    return
                if line.strip():
                    self.q.put(json.loads(line))
        except Exception:  # the stream closed under the reader (`close`)
            return

    def wait(self, pred, timeout=30):
        """The first event since the last `mark` for which `pred(event)` holds (it may have
        come already: events are kept, not consumed)."""
        end = time.monotonic() + timeout
        i = 0
        while True:
            while i < len(self.seen):
                if pred(self.seen[i]):
                    return self.seen[i]
                i += 1
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError("no matching engine event")
            try:
                self.seen.append(self.q.get(timeout=left))
            except queue.Empty:
                pass

    def mark(self):
        """Forget the events seen so far (and any already queued)."""
        self.seen = []
        while not self.q.empty():
            self.q.get_nowait()

    def close(self):
        try:
            self.conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.conn.close()


def attr(ev, key):
    return ev.get("Actor", {}).get("Attributes", {}).get(key)
