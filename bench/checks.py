"""The issue's targets, each checked against the measurements: PASS or SHORTFALL, never hidden."""

from dataclasses import dataclass

from .common import MB, TargetResult
from .load import LoadReport
from .memory import RssCurve

WITHIN_FLOOR = 1.10  # (a) and (b) wall time over (c)
FASTER_THAN_SEED = 3.0  # (d) wall over (a)
LESS_CPU_THAN_SEED = 4.0  # (d) CPU over (a)
COLD_START_S = 2.0
PEAK_RSS_BYTES = 600 * MB
RSS_GROWTH = 1.10  # after 200 requests over after 20
# RSS after the load over the warmed-up baseline. glibc gives each worker thread that ran a
# transcription its own malloc arena and keeps what it freed there, so RSS climbs with the
# number of threads used (about +40% here) unless MALLOC_ARENA_MAX is set: that shows as a miss.
LOAD_RSS_RETURN = 1.10
# With one transcription slot (the default), 4 clients can at best match 1 client (one runs at
# a time); pipelining uploads gains ~3%, and runs differ by about 5% on a quiet machine.
THROUGHPUT_NOISE = 0.05


@dataclass(frozen=True)
class Check:
    passed: bool
    text: str

    def line(self) -> str:
        return f"- **{'PASS' if self.passed else 'SHORTFALL'}** {self.text}"


def target_checks(results: dict[str, TargetResult]) -> list[Check]:
    checks = []
    a, b, c, d = (results.get(k) for k in "abcd")
    if c is not None:
        for x in (a, b):
            if x is not None:
                ratio = x.wall_s / c.wall_s
                checks.append(
                    Check(
                        ratio <= WITHIN_FLOOR,
                        f"{x.key} wall time {ratio:.2f}x the floor (c) (target ≤ {WITHIN_FLOOR:.2f}x)",
                    )
                )
    if a is not None and d is not None:
        faster = d.wall_s / a.wall_s
        checks.append(
            Check(
                faster >= FASTER_THAN_SEED,
                f"a {faster:.1f}x faster than the seed (d) in wall time (target ≥ {FASTER_THAN_SEED:g}x)",
            )
        )
        if a.cpu_s and d.cpu_s:
            less = d.cpu_s / a.cpu_s
            checks.append(
                Check(
                    less >= LESS_CPU_THAN_SEED,
                    f"a uses {less:.1f}x less CPU than the seed (d) (target ≥ {LESS_CPU_THAN_SEED:g}x)",
                )
            )
        checks.append(
            Check(
                a.mean_wer <= d.mean_wer,
                f"a mean WER {a.mean_wer:.3f} vs the seed's {d.mean_wer:.3f} (target: equal or better)",
            )
        )
    for x in (a, b):
        if x is None:
            continue
        if x.cold_start_s is not None:
            checks.append(
                Check(
                    x.cold_start_s <= COLD_START_S,
                    f"{x.key} cold start {x.cold_start_s:.2f} s (target ≤ {COLD_START_S:g} s)",
                )
            )
        if x.peak_rss_bytes is not None:
            checks.append(
                Check(
                    x.peak_rss_bytes <= PEAK_RSS_BYTES,
                    f"{x.key} peak RSS {x.peak_rss_bytes / MB:.0f} MB "
                    f"(target ≤ {PEAK_RSS_BYTES / MB:.0f} MB)",
                )
            )
    return checks


def memory_checks(curve: RssCurve) -> list[Check]:
    return [
        Check(
            curve.growth <= RSS_GROWTH,
            f"a RSS after {curve.total} requests {curve.rss_after[curve.total] / MB:.0f} MB vs after "
            f"{curve.early} {curve.rss_after[curve.early] / MB:.0f} MB: {100 * (curve.growth - 1):+.1f}% "
            f"(target within {100 * (RSS_GROWTH - 1):.0f}%)",
        )
    ]


def load_checks(report: LoadReport) -> list[Check]:
    burst = report.burst
    errors = [o for o in burst.lost if o.status is None]
    other = [o for o in burst.lost if o.status is not None]
    statuses = sorted({o.status for o in other if o.status is not None})
    checks = [
        Check(
            not burst.lost,
            f"load: {len(burst.outcomes)} requests from {burst.clients} clients, every one a 200 or a "
            f"503 with Retry-After ({len(burst.ok)} / {len(burst.busy)}); connection errors or timeouts: "
            f"{len(errors)}, other statuses: {len(other)} {statuses or ''}".rstrip(),
        ),
        Check(
            not report.left_in_tmp,
            f"load: temp dirs empty afterwards ({len(report.left_in_tmp)} left) and slots free "
            f"(admitted {report.admitted_after})",
        )
        if report.admitted_after == 0
        else Check(False, f"load: {report.admitted_after} requests still admitted after the load"),
        Check(
            report.rss_ratio <= LOAD_RSS_RETURN,
            f"load: RSS {report.after_rss / MB:.0f} MB after vs {report.baseline_rss / MB:.0f} MB before "
            f"({100 * (report.rss_ratio - 1):+.1f}%, target within {100 * (LOAD_RSS_RETURN - 1):.0f}%)",
        ),
        Check(
            not burst.health_failures,
            f"load: /health answered every poll ({len(burst.health_failures)} failed)",
        ),
    ]
    if report.one is not None and report.four is not None:
        one, four = report.one.requests_per_minute(), report.four.requests_per_minute()
        checks.append(
            Check(
                four >= one * (1 - THROUGHPUT_NOISE),
                f"load: throughput at 4 clients {four:.1f} vs 1 client {one:.1f} answers per minute "
                f"({four / one:.2f}x; target at least equal, {THROUGHPUT_NOISE:.0%} allowed for noise)",
            )
        )
    return checks
