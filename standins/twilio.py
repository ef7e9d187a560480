"""A stand-in for Twilio's Messages API on 127.0.0.1, for tests and benchmarks.

It answers `POST /2010-04-01/Accounts/<sid>/Messages.json` the way Twilio
does (201 and a message resource, or Twilio's JSON error body), checks basic
auth, and records every message it accepts; `GET` on the same path lists
them newest first (filters To, From, PageSize) and `GET .../Messages/<SM>.json`
fetches one. Faults are switched on from the
test::

    with TwilioStandIn() as twilio, override_settings(TWILIO_API_BASE_URL=twilio.url):
        twilio.fail_next(1, status=500)       # next request answers 500
        twilio.reject("+15005550001", 21211)  # invalid number, every time
        twilio.slow_next(2, seconds=1.5)      # next two answers are late
        ...
        assert len(twilio.messages) == 1

It only ever listens on loopback. `python -m standins.twilio` runs one in
the foreground for manual use.
"""

import base64
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

DEFAULT_ACCOUNT_SID = "AC00000000000000000000000000000000"
DEFAULT_AUTH_TOKEN = "test_auth_token_0000000000000000"

_MESSAGES = re.compile(r"^/2010-04-01/Accounts/(?P<sid>AC\w+)/Messages\.json$")
_MESSAGE = re.compile(
    r"^/2010-04-01/Accounts/(?P<sid>AC\w+)/Messages/(?P<msid>SM\w+)\.json$"
)

# Twilio's own wording for the errors the stand-in can give.
ERROR_MESSAGES = {
    20003: "Authenticate",
    20404: "The requested resource was not found",
    20429: "Too Many Requests",
    20500: "Internal Server Error",
    20503: "Service Unavailable",
    21211: "The 'To' number is not a valid phone number.",
    21604: "A 'To' phone number is required.",
    21602: "Message body is required.",
    21603: "A 'From' phone number is required.",
    21610: "Attempt to send to unsubscribed recipient",
    21614: "'To' number is not a valid mobile number",
}


@dataclass
class _Fault:
    remaining: int
    status: int = 0
    code: int | None = None
    seconds: float = 0.0
    after_accept: bool = False


@dataclass
class RecordedRequest:
    """One request as it arrived, and the status the stand-in answered."""

    method: str
    path: str
    form: dict[str, str]
    status: int = 0


@dataclass
class _State:
    messages: list[dict] = field(default_factory=list)
    requests: list[RecordedRequest] = field(default_factory=list)
    failures: list[_Fault] = field(default_factory=list)
    delays: list[_Fault] = field(default_factory=list)
    rejections: dict[tuple[str, str], int] = field(default_factory=dict)
    latency: float = 0.0


class TwilioStandIn:
    """A threaded HTTP server acting as Twilio's Messages API.

    `url` is the base to put in TWILIO_API_BASE_URL; `messages` lists the
    accepted messages (dicts as Twilio would answer them, plus
    "status_callback"); `requests` lists every request with its answer.
    """

    def __init__(
        self,
        *,
        account_sid: str = DEFAULT_ACCOUNT_SID,
        auth_token: str = DEFAULT_AUTH_TOKEN,
        port: int = 0,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self._port = port
        self._lock = threading.Lock()
        self._state = _State()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle --------------------------------------------------------

    def start(self) -> "TwilioStandIn":
        handler = type("Handler", (_Handler,), {"standin": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", self._port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            name="twilio-standin",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "TwilioStandIn":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the Twilio stand-in is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # --- what happened ----------------------------------------------------

    @property
    def messages(self) -> list[dict]:
        with self._lock:
            return list(self._state.messages)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._state.requests)

    def messages_to(self, number: str) -> list[dict]:
        return [m for m in self.messages if m["to"] == number]

    def reset(self) -> None:
        with self._lock:
            self._state = _State()

    # --- faults -----------------------------------------------------------

    def fail_next(self, count: int = 1, *, status: int = 500) -> None:
        """The next `count` requests answer `status` (500, 503, 429)."""
        with self._lock:
            self._state.failures.append(
                _Fault(remaining=count, status=status, code=20000 + status)
            )

    def slow_next(
        self, count: int = 1, *, seconds: float, after_accept: bool = False
    ) -> None:
        """The next `count` requests are answered after `seconds`.

        With `after_accept`, the message is taken (and recorded) first and
        only the answer is late: a client that gives up or dies meanwhile
        never learns that Twilio has it.
        """
        with self._lock:
            self._state.delays.append(
                _Fault(remaining=count, seconds=seconds, after_accept=after_accept)
            )

    def set_latency(self, seconds: float) -> None:
        """Every request is answered after `seconds` until set back to 0."""
        with self._lock:
            self._state.latency = seconds

    def reject(self, number: str, code: int = 21211, *, from_number: str = "") -> None:
        """Answer 400 with `code` for every message to `number`.

        With `from_number`, only messages from that sender are refused (an
        opt-out, 21610, is per sender number at Twilio).
        """
        with self._lock:
            self._state.rejections[(number, from_number)] = code

    # --- the API ----------------------------------------------------------

    def _take_fault(self, faults: list[_Fault]) -> _Fault | None:
        if not faults:
            return None
        fault = faults[0]
        fault.remaining -= 1
        if fault.remaining <= 0:
            faults.pop(0)
        return fault

    def handle(self, method: str, path: str, auth: str, form: dict) -> tuple:
        """Answer one request: (status, body dict), and record it."""
        with self._lock:
            recorded = RecordedRequest(method=method, path=path, form=form)
            self._state.requests.append(recorded)
            delay = self._take_fault(self._state.delays)
            wait = (delay.seconds if delay else 0.0) + self._state.latency
            late_answer = bool(delay and delay.after_accept)
        if wait and not late_answer:
            time.sleep(wait)
        with self._lock:
            status, body = self._answer(method, path, auth, form)
            recorded.status = status
        if wait and late_answer:
            time.sleep(wait)
        return status, body

    def _answer(self, method: str, path: str, auth: str, form: dict) -> tuple:
        list_match = _MESSAGES.match(path)
        one_match = _MESSAGE.match(path)
        match = list_match or one_match
        if not match:
            return _error(404, 20404)
        if match["sid"] != self.account_sid or not self._authorised(auth):
            return _error(401, 20003)
        fault = self._take_fault(self._state.failures)
        if fault is not None:
            return _error(fault.status, fault.code)
        if one_match and method == "GET":
            for message in self._state.messages:
                if message["sid"] == one_match["msid"]:
                    return 200, message
            return _error(404, 20404)
        if list_match and method == "GET":
            return 200, self._page(path, form)
        if not (list_match and method == "POST"):
            return _error(405, 20404)

        to, sender, text = form.get("To"), form.get("From"), form.get("Body")
        if not to:
            return _error(400, 21604)
        if not sender and not form.get("MessagingServiceSid"):
            return _error(400, 21603)
        if not text:
            return _error(400, 21602)
        code = self._state.rejections.get(
            (to, sender or "")
        ) or self._state.rejections.get((to, ""))
        if code:
            return _error(400, code)

        message = _message(self.account_sid, to, sender or "", text)
        message["status_callback"] = form.get("StatusCallback", "")
        self._state.messages.append(message)
        return 201, message

    def _page(self, path: str, query: dict) -> dict:
        """Messages newest first, filtered by To and From, like Twilio's list."""
        found = [
            message
            for message in reversed(self._state.messages)
            if query.get("To", message["to"]) == message["to"]
            and query.get("From", message["from"]) == message["from"]
        ]
        size = int(query.get("PageSize") or 50)
        return {
            "messages": found[:size],
            "end": max(min(size, len(found)) - 1, 0),
            "first_page_uri": f"{path}?PageSize={size}&Page=0",
            "next_page_uri": None,
            "page": 0,
            "page_size": size,
            "previous_page_uri": None,
            "start": 0,
            "uri": f"{path}?PageSize={size}&Page=0",
        }

    def _authorised(self, header: str) -> bool:
        expected = base64.b64encode(
            f"{self.account_sid}:{self.auth_token}".encode()
        ).decode()
        return header == f"Basic {expected}"


def _error(status: int, code: int) -> tuple[int, dict]:
    return status, {
        "code": code,
        "message": ERROR_MESSAGES.get(code, "Error"),
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def _message(account_sid: str, to: str, sender: str, text: str) -> dict:
    sid = f"SM{uuid.uuid4().hex}"
    now = format_datetime(datetime.now(UTC))
    uri = f"/2010-04-01/Accounts/{account_sid}/Messages/{sid}.json"
    return {
        "account_sid": account_sid,
        "api_version": "2010-04-01",
        "body": text,
        "date_created": now,
        "date_sent": None,
        "date_updated": now,
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": sender,
        "messaging_service_sid": None,
        "num_media": "0",
        "num_segments": "1",
        "price": None,
        "price_unit": "USD",
        "sid": sid,
        "status": "queued",
        "subresource_uris": {"media": uri.replace(".json", "/Media.json")},
        "to": to,
        "uri": uri,
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    standin: TwilioStandIn

    def do_POST(self) -> None:
        self._serve("POST")

    def do_GET(self) -> None:
        self._serve("GET")

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode() if length else ""
        path, _, query = self.path.partition("?")
        # A POST carries its parameters in the body, a GET in the query.
        form = {key: values[-1] for key, values in parse_qs(raw or query).items()}
        status, body = self.standin.handle(
            method, path, self.headers.get("Authorization", ""), form
        )
        payload = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up or was killed while we held the answer.
            self.close_connection = True

    def log_message(self, format, *args) -> None:  # noqa: A002
        # Quiet: tests and benchmarks read `requests`, not stderr.
        pass


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    options = parser.parse_args()
    with TwilioStandIn(port=options.port) as standin:
        print(f"Twilio stand-in on {standin.url} (Ctrl-C to stop)", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
