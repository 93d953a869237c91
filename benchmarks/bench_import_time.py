"""Import cost of the provider as a DAG file pays it: wall time and `-X importtime` self times.

Run: .venv/bin/python benchmarks/bench_import_time.py
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

RUNS = 7
STATEMENTS = {
    "python (empty)": "pass",
    "import airflow_provider_gridaware": "import airflow_provider_gridaware",
    "import airflow_provider_gridaware.signals": "import airflow_provider_gridaware.signals",
    "import airflow.sdk": "import airflow.sdk",
    "import airflow.sdk + hooks.ukci": "import airflow.sdk, airflow_provider_gridaware.hooks.ukci",
    "import airflow.sdk + operators.carbon_report": "import airflow.sdk, airflow_provider_gridaware.operators.carbon_report",
}


def wall_ms(statement: str) -> float:
    samples = []
    for _ in range(RUNS):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", statement], check=True)
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def own_import_us(statement: str) -> int:
    """Cumulative microseconds that -X importtime attributes to our package's top-level import."""
    err = subprocess.run([sys.executable, "-X", "importtime", "-c", statement], capture_output=True, text=True).stderr
    total = 0
    for line in err.splitlines():
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and parts[2] == "airflow_provider_gridaware":
            total = int(parts[1])
    return total


def main() -> None:
    print(f"median wall time of a fresh interpreter over {RUNS} runs")
    for label, statement in STATEMENTS.items():
        print(f"  {label:<40} {wall_ms(statement):8.1f} ms")
    print(
        f"  -X importtime, cumulative for 'airflow_provider_gridaware': {own_import_us('import airflow_provider_gridaware')} us"
    )


if __name__ == "__main__":
    main()
