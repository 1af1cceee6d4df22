"""S3 requests per row, as SeaweedFS itself counts them (its Prometheus counter, scraped before and after)."""

from __future__ import annotations

import re
import time
import urllib.request

from datastore.testing.servers import S3Server

REQUEST_METRIC = "SeaweedFS_s3_request_total"


_SAMPLE_LINE = re.compile(r"^(\w+)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape_requests(url: str) -> dict[str, tuple[str, float]]:
    """SeaweedFS's S3 request counters: label set → (request type, count).

    A series of a deleted bucket disappears, so an empty result is possible; :func:`check_metrics`
    makes sure once that the counter exists at all.

    Raises:
        OSError: the metrics endpoint did not answer.
    """
    with urllib.request.urlopen(url, timeout=10) as resp:
        text = resp.read().decode(errors="replace")
    counters: dict[str, tuple[str, float]] = {}
    for line in text.splitlines():
        match = _SAMPLE_LINE.match(line)
        if match and match.group(1) == REQUEST_METRIC:
            labels = dict(_LABEL.findall(match.group(2) or ""))
            counters[match.group(2) or ""] = (labels.get("type", "?"), float(match.group(3)))
    return counters


def check_metrics(s3: S3Server) -> str:
    """Why SeaweedFS's request counter cannot be used, or "" when it counts a known request."""
    if not s3.metrics_url:
        return "SeaweedFS has no metrics port"
    try:
        before = settled_requests(s3.metrics_url)
        s3.client().list_buckets()
        delta = request_delta(before, settled_requests(s3.metrics_url))
    except (OSError, ValueError) as exc:
        return f"SeaweedFS metrics unusable: {exc}"
    if sum(delta.values()) != 1:
        return f"{REQUEST_METRIC} counted {sum(delta.values())} requests for one ListBuckets"
    return ""


def settled_requests(url: str) -> dict[str, tuple[str, float]]:
    """:func:`scrape_requests` once the counters stop moving.

    SeaweedFS counts a request after its handler returns, which can be just after the client has
    its answer and exited; scrape until two scrapes 0.3 s apart agree (at most ~3 s).
    """
    last = scrape_requests(url)
    for _ in range(10):
        time.sleep(0.3)
        now = scrape_requests(url)
        if now == last:
            break
        last = now
    return last


def request_delta(before: dict[str, tuple[str, float]], after: dict[str, tuple[str, float]]) -> dict[str, int]:
    """Requests per type between two scrapes (per label set, so a series SeaweedFS dropped in
    between, e.g. of an idle bucket, does not count negative)."""
    by_type: dict[str, int] = {}
    for key, (kind, count) in after.items():
        delta = count - before.get(key, (kind, 0.0))[1]
        if delta > 0:
            by_type[kind] = by_type.get(kind, 0) + round(delta)
    return dict(sorted(by_type.items(), key=lambda kv: -kv[1]))

