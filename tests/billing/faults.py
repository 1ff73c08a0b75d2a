"""Real faults between Kanri and the processor, on loopback: no mocks of the SDK or of Kanri.

`AnswerDroppingProxy` forwards every HTTP request to the sandbox unchanged; for requests whose
method and path match `drop`, the sandbox acts on the request (so the charge happens) and the
proxy then closes the connection without passing the answer on: exactly a lost answer. For
requests matching `twice`, it sends the request to the sandbox twice and passes on the second
answer: what a caller sees when someone else made the same call just before it.
"""
import re
import socket
import threading


def _read_request(conn: socket.socket) -> bytes | None:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    lines = [line for line in head.split(b"\r\n")
             if not line.lower().startswith(b"connection:")]
    return b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n" + body


class AnswerDroppingProxy:
    def __init__(self, upstream: str):
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.drop: re.Pattern | None = None
        self.twice: re.Pattern | None = None
        self.dropped: list[str] = []
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(16)
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def drop_answers_to(self, pattern: str) -> None:
        """Drop the answer of requests whose first line ('POST /v1/...') matches."""
        self.drop = re.compile(pattern)

    def send_twice(self, pattern: str) -> None:
        self.twice = re.compile(pattern)

    def _forward(self, request: bytes) -> bytes:
        with socket.create_connection(self.upstream) as upstream:
            upstream.sendall(request)
            answer = b""
            while chunk := upstream.recv(65536):
                answer += chunk
        return answer

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            request = _read_request(conn)
            if request is None:
                return
            first_line = request.split(b"\r\n", 1)[0].decode()
            if self.twice is not None and self.twice.search(first_line):
                self._forward(request)
            answer = self._forward(request)
            if self.drop is not None and self.drop.search(first_line):
                self.dropped.append(first_line)
                return  # the sandbox acted; the caller never hears of it
            conn.sendall(answer)

    def close(self) -> None:
        # close() alone leaves the port listening while the accepting thread waits in accept():
        # shutting the socket down wakes it, and the port is free for good.
        self.server.shutdown(socket.SHUT_RDWR)
        self.server.close()
        self._thread.join(timeout=5)


def closed_port() -> int:
    """A loopback port nothing listens on: connecting to it is refused (a stopped service)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again when the block ends


def processor_down():
    """Point Kanri's processor client at a closed port for the block: the processor stopped."""
    from django.test import override_settings

    return override_settings(STRIPE_API_BASE=f"http://127.0.0.1:{closed_port()}")
