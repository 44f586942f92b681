"""Reads `oha --output-format json` on stdin; prints: requests/s, p50 ms, p99 ms, success rate."""
import json
import sys

report = json.load(sys.stdin)
summary, percentiles = report["summary"], report["latencyPercentiles"]
print(
    f"{summary['requestsPerSec']:.0f} {percentiles['p50'] * 1000:.3f} "
    f"{percentiles['p99'] * 1000:.3f} {summary['successRate']:.4f}"
)
