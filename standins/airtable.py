"""An Airtable REST API stand-in on 127.0.0.1, for tests and benchmarks.

It answers what pyairtable sends for records, the way Airtable does:

- GET    /v0/{base}/{table}            list, `pageSize`/`maxRecords`, `offset`
- GET    /v0/{base}/{table}/{record}   one record
- POST   /v0/{base}/{table}            create (at most 10, else 422)
- PATCH  /v0/{base}/{table}            update by id, or upsert with
  PUT                                  `performUpsert.fieldsToMergeOn`
                                       (`createdRecords`, `updatedRecords`)
- PATCH  /v0/{base}/{table}/{record}   update one record

Every request needs `Authorization: Bearer <api_key>` (401 otherwise). Like
Airtable, more than 5 requests in a second to one base answer 429
RATE_LIMIT_REACHED and refuse the base for the next 30 seconds; the stand-in
counts those. A text cell over 100,000 characters refuses the whole request
(422 INVALID_VALUE_FOR_COLUMN), nothing in it written. Faults can be
switched on: 429 for a while, 5xx answers (before or after the write), slow
answers.

    with AirtableStandIn() as airtable:
        settings.AIRTABLE_API_BASE_URL = airtable.url
        settings.AIRTABLE_API_KEY = airtable.api_key
        airtable.rate_limit_for(35)
        ...
        airtable.records("appXXXXXXXXXXXXXX", "Calls")
"""

import json
import secrets
import string
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

MAX_RECORDS_PER_REQUEST = 10
MAX_PAGE_SIZE = 100
# Airtable's limit for one long text cell; a longer value refuses the whole
# request, every record in it.
MAX_CELL_CHARS = 100_000
RATE_LIMIT_BODY = {
    "errors": [
        {
            "error": "RATE_LIMIT_REACHED",
            "message": "Rate limit exceeded. Please try again later",
        }
    ]
}


@dataclass(frozen=True)
class LoggedRequest:
    """One request as the stand-in saw it; `at` is time.monotonic()."""

    at: float
    method: str
    base_id: str
    table: str
    status: int
    records: int
    reason: str = ""


@dataclass
class _Fault:
    status: int
    after_write: bool


class _Reply(Exception):
    def __init__(self, status: int, body: dict):
        self.status = status
        self.body = body


def _error(status: int, kind: str, message: str) -> _Reply:
    return _Reply(status, {"error": {"type": kind, "message": message}})


class AirtableStandIn:
    """A threaded HTTP server on a random loopback port; see the module doc."""

    def __init__(
        self,
        *,
        api_key: str = "patStandIn.0000000000000000",
        rate_limit: int = 5,
        penalty_seconds: float = 30.0,
    ):
        self.api_key = api_key
        self.rate_limit = rate_limit
        self.penalty_seconds = penalty_seconds
        self._lock = threading.Lock()
        self._tables: dict[tuple[str, str], dict[str, dict]] = {}
        self._log: list[LoggedRequest] = []
        self._started: list[str] = []
        self._arrivals: dict[str, deque[float]] = {}
        self._penalty_until: dict[str, float] = {}
        self._over_rate: dict[str, int] = {}
        self._rate_limited_until = 0.0
        self._rate_limited_base: str | None = None
        self._faults: deque[_Fault] = deque()
        self._slow: deque[float] = deque()
        self._select_options: dict[str, set[str]] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- life cycle -------------------------------------------------------

    def start(self) -> "AirtableStandIn":
        handler = type("Handler", (_Handler,), {"standin": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="airtable-standin",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "AirtableStandIn":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # --- switches ---------------------------------------------------------

    def rate_limit_for(self, seconds: float, *, base_id: str | None = None) -> None:
        """Answer 429 RATE_LIMIT_REACHED to every request (or one base's)."""
        with self._lock:
            self._rate_limited_until = time.monotonic() + seconds
            self._rate_limited_base = base_id

    def fail_next(
        self, count: int = 1, *, status: int = 500, after_write: bool = False
    ) -> None:
        """The next `count` requests answer `status`; with `after_write` the
        change is made first, as when Airtable writes and the answer is lost."""
        with self._lock:
            self._faults.extend(_Fault(status, after_write) for _ in range(count))

    def select_options(self, field: str, options: list[str]) -> None:
        """Make `field` a single select with these options: a record with any
        other value refuses its whole request (422), as Airtable does when
        the API may not create options."""
        with self._lock:
            self._select_options[field] = set(options)

    def slow_next(self, count: int = 1, *, seconds: float) -> None:
        """The next `count` requests wait `seconds` before answering."""
        with self._lock:
            self._slow.extend([seconds] * count)

    # --- what happened ----------------------------------------------------

    def records(self, base_id: str, table: str) -> list[dict]:
        """The table's records (id, createdTime, fields), oldest first."""
        with self._lock:
            rows = self._tables.get((base_id, table), {}).values()
            return [json.loads(json.dumps(row)) for row in rows]

    def requests(self, base_id: str | None = None) -> list[LoggedRequest]:
        with self._lock:
            return [r for r in self._log if base_id in (None, r.base_id)]

    def started(self, base_id: str | None = None) -> int:
        """Requests that have arrived, including those still being answered."""
        with self._lock:
            return sum(1 for b in self._started if base_id in (None, b))

    def max_requests_in_window(self, base_id: str, *, window: float = 1.0) -> int:
        """The most requests that reached one base within any `window` s."""
        times = sorted(r.at for r in self.requests(base_id))
        best, start = 0, 0
        for end, at in enumerate(times):
            while at - times[start] >= window:
                start += 1
            best = max(best, end - start + 1)
        return best

    def requests_per_second(self, base_id: str) -> dict[int, int]:
        """Requests to one base counted per whole second since the first."""
        times = [r.at for r in self.requests(base_id)]
        counts: dict[int, int] = {}
        for at in times:
            second = int(at - times[0])
            counts[second] = counts.get(second, 0) + 1
        return counts

    def over_rate_429s(self, base_id: str) -> int:
        """429s answered because the base got more than 5 requests a second."""
        with self._lock:
            return self._over_rate.get(base_id, 0)

    # --- the API ----------------------------------------------------------

    def _admit(self, base_id: str, now: float) -> _Fault | None:
        """Airtable's own rate limit, then the switched-on faults.

        Returns a fault to answer once the change is made, if one is due.
        """
        with self._lock:
            arrivals = self._arrivals.setdefault(base_id, deque())
            arrivals.append(now)
            while arrivals and arrivals[0] <= now - 1.0:
                arrivals.popleft()
            if now < self._penalty_until.get(base_id, 0.0):
                raise _Reply(429, RATE_LIMIT_BODY)
            if len(arrivals) > self.rate_limit:
                self._over_rate[base_id] = self._over_rate.get(base_id, 0) + 1
                self._penalty_until[base_id] = now + self.penalty_seconds
                raise _Reply(429, RATE_LIMIT_BODY)
            if now < self._rate_limited_until and self._rate_limited_base in (
                None,
                base_id,
            ):
                raise _Reply(429, RATE_LIMIT_BODY)
            fault = self._faults.popleft() if self._faults else None
            delay = self._slow.popleft() if self._slow else 0.0
        if delay:
            time.sleep(delay)
        if fault and not fault.after_write:
            raise _error(fault.status, "SERVER_ERROR", "stand-in fault")
        return fault

    def handle(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        body: Any,
        *,
        arrived: float,
    ) -> dict:
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if len(parts) not in (3, 4) or parts[0] != "v0":
            raise _error(404, "NOT_FOUND", "Could not find what you are looking for")
        base_id, table = parts[1], parts[2]
        record_id = parts[3] if len(parts) == 4 else None
        fault = self._admit(base_id, arrived)
        with self._lock:
            rows = self._tables.setdefault((base_id, table), {})
            if method == "GET":
                result = self._get(rows, record_id, query)
            elif method == "POST" and not record_id:
                result = self._create(rows, body)
            elif method in ("PATCH", "PUT"):
                result = self._update(rows, record_id, body, replace=method == "PUT")
            else:
                raise _error(
                    404, "NOT_FOUND", "Could not find what you are looking for"
                )
        if fault:
            raise _error(fault.status, "SERVER_ERROR", "stand-in fault")
        return result

    def _get(self, rows: dict, record_id: str | None, query: dict) -> dict:
        if record_id:
            if record_id not in rows:
                raise _error(404, "MODEL_ID_NOT_FOUND", "Record not found")
            return rows[record_id]
        ordered = list(rows.values())
        if "maxRecords" in query:
            ordered = ordered[: int(query["maxRecords"][0])]
        size = min(int(query.get("pageSize", [MAX_PAGE_SIZE])[0]), MAX_PAGE_SIZE)
        offset = query.get("offset", ["itr0"])[0]
        try:
            start = int(offset.removeprefix("itr").split("/")[0])
        except ValueError as exc:
            raise _error(422, "LIST_RECORDS_ITERATOR_NOT_AVAILABLE", offset) from exc
        page = {"records": ordered[start : start + size]}
        if start + size < len(ordered):
            page["offset"] = f"itr{start + size}/{ordered[start + size]['id']}"
        return page

    def _records_in(self, body: Any) -> list[dict]:
        records = body.get("records") if isinstance(body, dict) else None
        if not isinstance(records, list) or not records:
            raise _error(422, "INVALID_RECORDS", "Expected a non-empty records array")
        if len(records) > MAX_RECORDS_PER_REQUEST:
            raise _error(
                422,
                "INVALID_RECORDS",
                f"You can only send up to {MAX_RECORDS_PER_REQUEST} records "
                "per request",
            )
        # Called with self._lock held (handle).
        select_options = self._select_options
        for record in records:
            fields = record.get("fields", {}) if isinstance(record, dict) else {}
            for name, value in fields.items():
                if isinstance(value, str) and len(value) > MAX_CELL_CHARS:
                    raise _error(
                        422,
                        "INVALID_VALUE_FOR_COLUMN",
                        f'Field "{name}" cannot accept the provided value',
                    )
                options = select_options.get(name)
                if options is not None and value not in (None, "", *options):
                    raise _error(
                        422,
                        "INVALID_MULTIPLE_CHOICE_OPTIONS",
                        "Insufficient permissions to create new select option "
                        f'""{value}""',
                    )
        return records

    def _create(self, rows: dict, body: Any) -> dict:
        if isinstance(body, dict) and "fields" in body and "records" not in body:
            return self._new(rows, body["fields"])
        return {
            "records": [
                self._new(rows, r.get("fields", {})) for r in self._records_in(body)
            ]
        }

    def _update(
        self, rows: dict, record_id: str | None, body: Any, *, replace: bool
    ) -> dict:
        if record_id:
            if record_id not in rows:
                raise _error(404, "MODEL_ID_NOT_FOUND", "Record not found")
            return self._change(rows[record_id], body.get("fields", {}), replace)
        records = self._records_in(body)
        upsert = (body.get("performUpsert") or {}).get("fieldsToMergeOn")
        if not upsert:
            missing = [r for r in records if r.get("id") not in rows]
            if missing:
                raise _error(404, "MODEL_ID_NOT_FOUND", "Record not found")
            return {
                "records": [
                    self._change(rows[r["id"]], r.get("fields", {}), replace)
                    for r in records
                ]
            }
        result: dict[str, list] = {
            "createdRecords": [],
            "updatedRecords": [],
            "records": [],
        }
        for record in records:
            fields = record.get("fields", {})
            if any(fields.get(name) in (None, "") for name in upsert):
                raise _error(
                    422,
                    "INVALID_VALUE_FOR_COLUMN",
                    f"Every record needs a value for each of {upsert}",
                )
            matches = [
                row
                for row in rows.values()
                if all(row["fields"].get(n) == fields[n] for n in upsert)
            ]
            if len(matches) > 1:
                raise _error(
                    422,
                    "INVALID_RECORDS",
                    "More than one record matches the fields to merge on",
                )
            if matches:
                row = self._change(matches[0], fields, replace)
                result["updatedRecords"].append(row["id"])
            else:
                row = self._new(rows, fields)
                result["createdRecords"].append(row["id"])
            result["records"].append(row)
        return result

    @staticmethod
    def _clean(fields: dict) -> dict:
        # Airtable leaves empty cells out of the records it returns.
        return {k: v for k, v in fields.items() if v not in (None, "", [])}

    def _new(self, rows: dict, fields: dict) -> dict:
        alphabet = string.ascii_letters + string.digits
        record_id = "rec" + "".join(secrets.choice(alphabet) for _ in range(14))
        created = datetime.now(UTC).isoformat(timespec="milliseconds")
        rows[record_id] = {
            "id": record_id,
            "createdTime": created.replace("+00:00", "Z"),
            "fields": self._clean(fields),
        }
        return json.loads(json.dumps(rows[record_id]))

    def _change(self, row: dict, fields: dict, replace: bool) -> dict:
        merged = fields if replace else {**row["fields"], **fields}
        row["fields"] = self._clean(merged)
        return json.loads(json.dumps(row))

    def _record(self, request: LoggedRequest) -> None:
        with self._lock:
            self._log.append(request)


class _Handler(BaseHTTPRequestHandler):
    standin: AirtableStandIn
    server_version = "AirtableStandIn/1"

    def log_message(self, format, *args) -> None:  # noqa: A002
        pass

    def _serve(self) -> None:
        arrived = time.monotonic()
        split = urlsplit(self.path)
        parts = [unquote(p) for p in split.path.strip("/").split("/")]
        base_id = parts[1] if len(parts) > 1 else ""
        table = parts[2] if len(parts) > 2 else ""
        with self.standin._lock:
            self.standin._started.append(base_id)
        status, body, records = 200, {}, 0
        try:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if self.headers.get("Authorization") != f"Bearer {self.standin.api_key}":
                raise _error(401, "AUTHENTICATION_REQUIRED", "Authentication required")
            try:
                payload = json.loads(raw) if raw else {}
            except ValueError as exc:
                raise _error(400, "INVALID_REQUEST_BODY", "Invalid JSON") from exc
            if isinstance(payload, dict) and isinstance(payload.get("records"), list):
                records = len(payload["records"])
            body = self.standin.handle(
                self.command,
                split.path,
                parse_qs(split.query),
                payload,
                arrived=arrived,
            )
        except _Reply as reply:
            status, body = reply.status, reply.body
        reason = ""
        if status == 429:
            reason = "RATE_LIMIT_REACHED"
        self.standin._record(
            LoggedRequest(
                arrived, self.command, base_id, table, status, records, reason
            )
        )
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (a timeout): Airtable would not notice either.
            pass

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve
