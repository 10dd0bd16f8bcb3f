"""``xrouter keys usage ID``: a key's requests, tokens, cost and latency per bucket."""

from __future__ import annotations

import argparse
import json

from xrouter.keys.service import KeyService
from xrouter.usage.service import UsageService


async def print_usage(reports: UsageService, keys: KeyService, args: argparse.Namespace) -> int:
    """Print the usage series of ``args.id`` as a table (only buckets with requests) or JSON."""
    info = await keys.get(args.id)
    series = await reports.series(info.id, args.granularity, args.start, args.end)
    if args.json:
        data = [
            {
                "start": point.start.isoformat(),
                "requests": point.totals.requests,
                "errors": point.totals.errors,
                "prompt_tokens": point.totals.prompt_tokens,
                "completion_tokens": point.totals.completion_tokens,
                "cost_rub": round(point.totals.cost_rub, 6),
                "average_latency_ms": point.totals.average_latency_ms,
            }
            for point in series.points
        ]
        print(json.dumps({"id": info.id, "granularity": series.granularity, "data": data}))
        return 0
    zone = reports.calendar.zone
    rows = [("START", "REQUESTS", "ERRORS", "TOKENS", "COST RUB", "AVG MS")]
    for point in series.points:
        totals = point.totals
        if not totals.requests:
            continue
        rows.append(
            (
                point.start.astimezone(zone).strftime("%Y-%m-%d %H:%M"),
                str(totals.requests),
                str(totals.errors),
                str(totals.total_tokens),
                f"{totals.cost_rub:.4f}",
                f"{totals.average_latency_ms or 0:.0f}",
            )
        )
    total = series.totals
    rows.append(
        (
            "TOTAL",
            str(total.requests),
            str(total.errors),
            str(total.total_tokens),
            f"{total.cost_rub:.4f}",
            f"{total.average_latency_ms or 0:.0f}",
        )
    )
    print(f"{info.id} ({info.name}), per {series.granularity}:")
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    return 0
