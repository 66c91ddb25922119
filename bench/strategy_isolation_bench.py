"""Can a strategy slow the stop? Engage -> acknowledged-HALTED latency through a real engine process's
admin API, with a noop strategy (the floor) and with a strategy that burns CPU for 5 s on every bar, run
in its own process (the engine's default). No control plane: this isolates the engine's own part of the
kill path. Writes bench/results/strategy_isolation.json.

    .venv/bin/python -m bench.strategy_isolation_bench --trials 100
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "engine"))  # the engine-process and test-strategy helpers

from engine_process import stop  # noqa: E402
from test_engine_strategy_isolation import engage_release_latencies, health, strategy_engine  # noqa: E402

from bench.kill_switch_bench import pct  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "strategy_isolation.json"


def measure(strategy: dict, trials: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        engine = strategy_engine(Path(tmp), strategy)
        try:
            with engine.http() as http:
                if strategy["name"] == "cpuBurner":
                    while health(http)["bars"] < 1:
                        time.sleep(0.1)
                latencies = engage_release_latencies(http, trials)
        finally:
            stop(engine)
    return pct([x * 1000 for x in latencies])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=100)
    args = parser.parse_args()
    floor = measure({"name": "noop"}, args.trials)
    burner = measure({"name": "cpuBurner", "params": {"burnSeconds": 5}}, args.trials)
    out = {
        "trials": args.trials,
        "engage_to_ack_ms_noop": floor,
        "engage_to_ack_ms_cpu_burner_5s": burner,
        "p99_over_floor_ms": round(burner["p99"] - floor["p99"], 2),
        "inline_cpu_burner": "engine not ready within 30 s (every bar blocks the event loop for 5 s)",
        "machine": f"{platform.machine()}, Python {platform.python_version()}",
    }
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
