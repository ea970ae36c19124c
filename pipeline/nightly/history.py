"""What the collector already holds for a night and for the nights before it (over its HTTP API).

Nightly run ids have the form ``n.<night>.<format>-<mode>-t<threads>.<job key>.a<attempt>``; the
12-hex job key names the job (home phone x configuration) independently of the attempt, so a
re-run of a night finds which jobs already have a final result from the run ids alone.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.errors import ResultError

RUN_ID_RE = re.compile(r"^n\.(?P<night>[A-Za-z0-9._-]+?)\.[^.]+\.(?P<key>[0-9a-f]{12})\.a(?P<attempt>\d+)$")
# a stored job with one of these statuses is done; the others (the phone dropped, the app hung,
# the phone was too hot) are tried again when the night is run again
FINAL_STATUSES = frozenset({"ok", "golden_mismatch", "load_failed", "invalid_job"})


def nightly_run_id(night: str, fmt: str, mode: str, threads: int, key: str, attempt: int,
                   dynamic: str | None = None) -> str:
    """``n.NIGHT.FORMAT-MODE-tTHREADS[-skipN-HASH].KEY.aATTEMPT``; a dynamic configuration is named by
    its unit count and a hash of its key (run ids allow no '+' and stay short; the key is in the result)."""
    tag = ""
    if dynamic:
        import hashlib

        tag = f"-skip{len(dynamic.split('+'))}-{hashlib.sha256(dynamic.encode()).hexdigest()[:8]}"
    return f"n.{night}.{fmt}-{mode}-t{threads}{tag}.{key}.a{attempt}"


def job_key_of(run_id: str) -> str | None:
    m = RUN_ID_RE.match(run_id or "")
    return m.group("key") if m else None


class CollectorClient:
    """Reads runs back from the collector (``GET /api/v1/runs``, ``GET /api/v1/runs/{id}``)."""

    def __init__(self, url: str, token: str | None = None, timeout_s: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.timeout_s = timeout_s

    def _get(self, path: str, params: dict[str, Any] | None = None):
        import httpx

        try:
            r = httpx.get(f"{self.url}{path}", params=params, headers=self.headers, timeout=self.timeout_s)
        except httpx.HTTPError as err:
            raise ResultError(f"the collector {self.url} cannot be reached ({type(err).__name__}: {err})",
                              next_step="Start it (python -m results.collector) or check --collector.") from None
        if r.status_code != 200:
            raise ResultError(f"the collector {self.url} answered HTTP {r.status_code} to GET {path}: {r.text[:300]}",
                              next_step="Check the collector's log and --collector-token.")
        return r.json()

    def summaries(self, **filters: Any) -> list[dict[str, Any]]:
        """Every matching run summary (paged through, newest first)."""
        out: list[dict[str, Any]] = []
        params = {k: v for k, v in filters.items() if v is not None}
        offset = 0
        while True:
            page = self._get("/api/v1/runs", {**params, "limit": 1000, "offset": offset})
            runs = page.get("runs") or []
            out.extend(runs)
            offset += len(runs)
            if not runs or offset >= int(page.get("total") or 0):
                return out

    def document(self, run_id: str) -> dict[str, Any]:
        return self._get(f"/api/v1/runs/{run_id}")

    # -- nights ----------------------------------------------------------------------------------
    def done_keys(self, night: str) -> set[str]:
        """Job keys of the night that already have a stored result with a final status."""
        return {k for s in self.summaries(run_set=night)
                if s.get("status") in FINAL_STATUSES and (k := job_key_of(s.get("run_id", ""))) is not None}

    def attempts_used(self, night: str) -> dict[str, int]:
        """Per job key, the highest attempt number stored in the night (new run ids continue from it)."""
        used: dict[str, int] = {}
        for s in self.summaries(run_set=night):
            m = RUN_ID_RE.match(s.get("run_id", ""))
            if m:
                used[m.group("key")] = max(used.get(m.group("key"), 0), int(m.group("attempt")))
        return used

    def night_documents(self, night: str) -> list[dict[str, Any]]:
        return [self.document(s["run_id"]) for s in self.summaries(run_set=night)
                if job_key_of(s.get("run_id", "")) is not None]

    def previous_nights(self, night: str, *, count: int, lookback_days: int = 60) -> list[str]:
        """The ``count`` nightly run sets before ``night`` (by their first start), oldest first."""
        since = (datetime.now(UTC) - timedelta(days=lookback_days)).strftime("%Y-%m-%d")
        first: dict[str, str] = {}
        for s in self.summaries(since=since):
            rs = s.get("run_set")
            if not rs or job_key_of(s.get("run_id", "")) is None:
                continue
            started = str(s.get("started_at") or "")
            if rs not in first or started < first[rs]:
                first[rs] = started
        mine = first.get(night)
        others = sorted((t, rs) for rs, t in first.items() if rs != night and (mine is None or t < mine))
        return [rs for _, rs in others[-count:]] if count > 0 else []

    def history_documents(self, nights: list[str]) -> list[list[dict[str, Any]]]:
        """The ok documents of each night (only those are compared), in the order given."""
        return [[self.document(s["run_id"]) for s in self.summaries(run_set=name, status="ok")
                 if job_key_of(s.get("run_id", "")) is not None] for name in nights]
