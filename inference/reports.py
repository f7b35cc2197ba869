"""Usage reports in the shape of OpenAI's usage API (`/v1/organization/usage/completions`), read
from the usage rows (inference.usage writes them).

Buckets are aligned on UTC minute, hour or day boundaries, as the database truncates times
(`TruncMinute`/`TruncHour`/`TruncDay`, on PostgreSQL and SQLite alike); the first bucket is
the one holding `start_time`, and only rows at or after `start_time` and before `end_time`
count. Every recorded call is one `num_model_requests`: calls that failed at the model server are
counted with the tokens they used (usually none); calls refused before any model server saw them
have no row. Ids on the wire are public ids.

Only the buckets of the requested page are computed, whatever the range: `end_time` is capped at
now, and a range is bounded per bucket width (MAX_RANGE_SECONDS), so a query costs at most one
page of buckets and one aggregate over the page's rows.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from django.db.models import Count, QuerySet, Sum
from django.db.models.functions import TruncDay, TruncHour, TruncMinute

from accounts.models import User
from gateway.errors import InvalidRequest
from inference.models import UsageRecord
from organizations.models import ApiKey

BUCKET_SECONDS = {"1m": 60, "1h": 3600, "1d": 86400}
_TRUNC = {"1m": TruncMinute, "1h": TruncHour, "1d": TruncDay}
# OpenAI's bucket counts per page: (default, max)
BUCKET_LIMITS = {"1m": (60, 1440), "1h": (24, 168), "1d": (7, 31)}
# The longest range one query may cover, per bucket width. OpenAI documents only the per-page
# bucket counts above; these bounds keep a client from paging a year minute by minute.
MAX_RANGE_SECONDS = {"1m": 7 * 86400, "1h": 93 * 86400, "1d": 3 * 366 * 86400}
_RANGE_NAMES = {"1m": "7 days", "1h": "93 days", "1d": "3 years"}
GROUP_FIELDS = ("project_id", "user_id", "api_key_id", "model", "batch")
_COLUMN = {
    "project_id": "project__public_id",
    "user_id": "user_id",
    "api_key_id": "api_key_id",
    "model": "model",
}


@dataclass(frozen=True)
class UsageQuery:
    start_time: int
    end_time: int | None = None
    bucket_width: str = "1d"
    group_by: tuple[str, ...] = ()
    project_ids: tuple[str, ...] = ()
    user_ids: tuple[str, ...] = ()
    api_key_ids: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    batch: bool | None = None
    limit: int | None = None
    page: str | None = None

    def checked(self, *, now: int) -> UsageQuery:
        """Raises InvalidRequest for the first bad parameter; `end_time` capped at `now`."""
        if self.bucket_width not in BUCKET_SECONDS:
            raise InvalidRequest("bucket_width must be 1m, 1h or 1d.", param="bucket_width")
        if self.start_time < 0:
            raise InvalidRequest("start_time must be a Unix time in seconds.", param="start_time")
        if self.end_time is not None and self.end_time <= self.start_time:
            raise InvalidRequest("end_time must be after start_time.", param="end_time")
        end = now if self.end_time is None else min(self.end_time, now)
        if end - self.start_time > MAX_RANGE_SECONDS[self.bucket_width]:
            raise InvalidRequest(
                f"With bucket_width={self.bucket_width} a report covers at most "
                f"{_RANGE_NAMES[self.bucket_width]}: start_time must be at or after "
                f"{end - MAX_RANGE_SECONDS[self.bucket_width]}, or use a wider bucket_width.",
                param="start_time",
            )
        for field in self.group_by:
            if field not in GROUP_FIELDS:
                raise InvalidRequest(
                    f"group_by accepts {', '.join(GROUP_FIELDS)}; not '{field}'.", param="group_by"
                )
        maximum = BUCKET_LIMITS[self.bucket_width][1]
        if self.limit is not None and not 1 <= self.limit <= maximum:
            raise InvalidRequest(
                f"limit must be between 1 and {maximum} for bucket_width={self.bucket_width}.", param="limit"
            )
        return replace(self, end_time=end)


@dataclass(frozen=True)
class BucketPage:
    """One page of OpenAI's page → bucket → results envelope (the usage and the costs reports).

    Buckets of `width` seconds, the first holding `start_time`, the range ending at `end`; the
    page cursor is the next bucket's start. Only the page's buckets exist, whatever the range."""

    start_time: int
    end: int
    width: int
    buckets: tuple[int, ...]
    after: int  # the start of the bucket after this page's last

    @classmethod
    def of(cls, *, start_time: int, end: int, width: int, limit: int, page: str | None) -> BucketPage:
        first = start_time - start_time % width
        start = first
        if page is not None:
            raw = page.removeprefix("page_")
            if not raw.isdigit() or int(raw) < first or (int(raw) - first) % width:
                raise InvalidRequest("page is not a cursor from a previous answer's next_page.", param="page")
            start = int(raw)
        count = max(0, min(limit, -(-(end - start) // width)))  # the page's buckets, never the range's
        return cls(
            start_time,
            end,
            width,
            tuple(start + index * width for index in range(count)),
            start + count * width,
        )

    @property
    def since(self) -> datetime:
        """Rows at or after this time belong to the page..."""
        return _utc(max(self.buckets[0] if self.buckets else self.after, self.start_time))

    @property
    def before(self) -> datetime:
        """...and rows before this one."""
        return _utc(min(self.end, self.after))

    def envelope(self, results: dict[int, list[dict[str, Any]]]) -> dict[str, Any]:
        has_more = self.after < self.end
        return {
            "object": "page",
            "data": [
                {
                    "object": "bucket",
                    "start_time": max(bucket, self.start_time),
                    "end_time": min(bucket + self.width, self.end),
                    "results": results.get(bucket, []),
                }
                for bucket in self.buckets
            ],
            "has_more": has_more,
            "next_page": f"page_{self.after}" if has_more else None,
        }


def _utc(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def usage_completions(*, organization_id: int, query: UsageQuery, now: int) -> dict[str, Any]:
    """One page of time buckets (OpenAI's `UsageResponse`) for an organization's chat usage."""
    query = query.checked(now=now)
    page = BucketPage.of(
        start_time=query.start_time,
        end=query.end_time if query.end_time is not None else now,
        width=BUCKET_SECONDS[query.bucket_width],
        limit=query.limit or BUCKET_LIMITS[query.bucket_width][0],
        page=query.page,
    )
    results: dict[int, list[dict[str, Any]]] = {}
    if page.buckets and query.batch is not True:  # every call here is a synchronous (non-batch) one
        for bucket, result in _aggregate(organization_id, query, page):
            results.setdefault(bucket, []).append(result)
    return page.envelope(results)


def _aggregate(organization_id: int, query: UsageQuery, page: BucketPage) -> list[tuple[int, dict[str, Any]]]:
    rows = UsageRecord.objects.filter(
        organization_id=organization_id, created_at__gte=page.since, created_at__lt=page.before
    ).exclude(endpoint="embeddings")  # OpenAI reports embeddings apart from completions
    if query.project_ids:
        rows = rows.filter(project__public_id__in=query.project_ids)
    if query.models:
        rows = rows.filter(model__in=query.models)
    if query.api_key_ids:
        keys = ApiKey.objects.filter(organization_id=organization_id, public_id__in=query.api_key_ids)
        rows = rows.filter(api_key_id__in=keys.values("pk"))
    if query.user_ids:
        rows = rows.filter(user_id__in=User.objects.filter(public_id__in=query.user_ids).values("pk"))
    columns = [_COLUMN[field] for field in query.group_by if field in _COLUMN]
    aggregated = (
        rows.annotate(bucket=_TRUNC[query.bucket_width]("created_at", tzinfo=UTC))
        .values("bucket", *columns)
        .annotate(
            input_tokens=Sum("prompt_tokens"),
            output_tokens=Sum("completion_tokens"),
            input_cached_tokens=Sum("cached_tokens"),
            num_model_requests=Count("pk"),
        )
        .order_by("bucket", *columns)
    )
    found = list(aggregated)
    key_ids = _public_ids(ApiKey, {row["api_key_id"] for row in found if row.get("api_key_id")})
    user_ids = _public_ids(User, {row["user_id"] for row in found if row.get("user_id")})
    out: list[tuple[int, dict[str, Any]]] = []
    for row in found:
        grouped = set(query.group_by)
        result = {
            "object": "organization.usage.completions.result",
            "input_tokens": row["input_tokens"] or 0,
            "output_tokens": row["output_tokens"] or 0,
            "input_cached_tokens": row["input_cached_tokens"] or 0,
            "input_audio_tokens": 0,
            "output_audio_tokens": 0,
            "num_model_requests": row["num_model_requests"],
            "project_id": row.get("project__public_id") if "project_id" in grouped else None,
            "user_id": user_ids.get(row.get("user_id")) if "user_id" in grouped else None,
            "api_key_id": key_ids.get(row.get("api_key_id")) if "api_key_id" in grouped else None,
            "model": row.get("model") if "model" in grouped else None,
            "batch": False if "batch" in grouped else None,
        }
        out.append((int(row["bucket"].timestamp()), result))
    return out


def _public_ids(model: Any, pks: set[int]) -> dict[int | None, str]:
    if not pks:
        return {}
    return dict(model.objects.filter(pk__in=pks).values_list("pk", "public_id"))


def usage_summary_by_project(rows: QuerySet[UsageRecord]) -> list[dict[str, Any]]:
    """Totals per project of a UsageRecord queryset (the Django admin's summary), biggest first."""
    summary = (
        rows.values("project__public_id", "project__name")
        .annotate(
            requests=Count("pk"),
            input_tokens=Sum("prompt_tokens"),
            output_tokens=Sum("completion_tokens"),
            total_tokens=Sum("total_tokens"),
        )
        .order_by("-total_tokens", "project__public_id")
    )
    return [dict(row) for row in summary]
