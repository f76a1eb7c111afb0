"""A tiny SMTP sink on a free port: it accepts every message and remembers it.

Enough of RFC 5321 for Django's SMTP backend (EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP,
QUIT; no TLS, no AUTH). ``delay`` slows each accepted message, so a sending round
lasts long enough for the fault injector to kill the sender in the middle of it.
"""

import collections
import socketserver
import threading
import time
from email import message_from_bytes
from email.header import decode_header, make_header


class _Session(socketserver.StreamRequestHandler):
    def handle(self):
        sink: SmtpSink = self.server.sink
        sink.session_opened()
        try:
            self._reply("220 chaos-sink ESMTP")
            rcpts: list[str] = []
            while line := self.rfile.readline():
                verb = line[:4].upper()
                if verb == b"QUIT":
                    self._reply("221 bye")
                    return
                if verb in (b"EHLO", b"HELO"):
                    self._reply("250 chaos-sink")
                elif verb == b"RCPT":
                    rcpts.append(line.split(b":", 1)[1].strip().strip(b"<>").decode())
                    self._reply("250 ok")
                elif verb == b"DATA":
                    self._reply("354 go ahead")
                    sink.accept(rcpts, self._read_data())
                    rcpts = []
                    self._reply("250 queued")
                elif verb == b"RSET":
                    rcpts = []
                    self._reply("250 ok")
                else:  # MAIL, NOOP and whatever else: fine
                    self._reply("250 ok")
        finally:
            sink.session_closed()

    def _read_data(self) -> bytes:
        lines = []
        while (line := self.rfile.readline()) not in (b".\r\n", b".\n", b""):
            lines.append(line[1:] if line.startswith(b"..") else line)
        return b"".join(lines)

    def _reply(self, text: str) -> None:
        self.wfile.write(text.encode() + b"\r\n")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        """A sender killed mid-session resets the connection: that is the point."""


class SmtpSink:
    """Received messages counted by (recipient, subject, body)."""

    def __init__(self, delay: float = 0.03):
        self.delay = delay
        self.received: collections.Counter = collections.Counter()
        self.total = 0
        self.open_sessions = 0
        self.in_session = 0  # messages accepted by the sessions open now
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Session)
        self._server.sink = self
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> "SmtpSink":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def session_opened(self) -> None:
        with self._lock:
            self.open_sessions += 1

    def session_closed(self) -> None:
        with self._lock:
            self.open_sessions -= 1
            if not self.open_sessions:
                self.in_session = 0

    def accept(self, rcpts: list[str], data: bytes) -> None:
        time.sleep(self.delay)
        msg = message_from_bytes(data)
        subject = str(make_header(decode_header(msg.get("Subject", ""))))
        body = msg.get_payload(decode=True) or b""
        text = body.decode(msg.get_content_charset() or "utf-8", "replace").strip()
        with self._lock:
            for rcpt in rcpts:
                self.received[(rcpt.lower(), subject, text)] += 1
            self.total += 1
            self.in_session += 1

    def sending(self) -> bool:
        """A sender is in the middle of a round: a session is open and took a message."""
        with self._lock:
            return self.open_sessions > 0 and self.in_session > 0
