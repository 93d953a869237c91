"""Grid-aware scheduling for Apache Airflow: carbon- and price-aware time windows and regions.

Importing this package must stay cheap: DAG files import it on every parse. Nothing here loads an
HTTP client, numpy or a cloud SDK; those load inside the functions that need them.
"""

from __future__ import annotations

__version__ = "0.1.0.dev0"

__all__ = ["__version__"]
