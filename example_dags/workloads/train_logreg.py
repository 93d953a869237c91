"""A tiny CPU training job for the grid-aware Kubernetes example: logistic regression, pure Python.

Runs inside the Job's container: ``python train_logreg.py --output DIR [--steps N]``. It follows the
checkpoint contract through :class:`airflow_provider_gridaware.workload.Checkpointing` (standard library
only, vendor it into the image): resumes from the last checkpoint, checkpoints every few steps, and on
SIGTERM (the Job was suspended for a grid event) saves and exits so the next run continues where it left.
Writes ``model.json`` and ``metrics.json`` to ``--output``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
from pathlib import Path
from typing import Any

from airflow_provider_gridaware.workload import Checkpointing

FEATURES = 4
TRUE_WEIGHTS = [1.5, -2.0, 0.75, 0.0]


def make_data(n: int, seed: int = 7) -> list[tuple[list[float], int]]:
    """Separable-ish synthetic data: labels from a known linear rule plus noise."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        x = [rng.gauss(0, 1) for _ in range(FEATURES)]
        margin = sum(w * v for w, v in zip(TRUE_WEIGHTS, x, strict=True)) + 0.3 + rng.gauss(0, 0.5)
        rows.append((x, 1 if margin > 0 else 0))
    return rows


def sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z)) if z >= 0 else math.exp(z) / (1 + math.exp(z))


def step(state: dict[str, Any], data: list[tuple[list[float], int]], rate: float) -> float:
    """One full-batch gradient step; returns the log loss before it."""
    w, b = state["weights"], state["bias"]
    grad_w, grad_b, loss = [0.0] * FEATURES, 0.0, 0.0
    for x, y in data:
        p = sigmoid(sum(wi * xi for wi, xi in zip(w, x, strict=True)) + b)
        loss -= y * math.log(p + 1e-12) + (1 - y) * math.log(1 - p + 1e-12)
        for i in range(FEATURES):
            grad_w[i] += (p - y) * x[i]
        grad_b += p - y
    n = len(data)
    state["weights"] = [wi - rate * g / n for wi, g in zip(w, grad_w, strict=True)]
    state["bias"] = b - rate * grad_b / n
    return loss / n


def accuracy(state: dict[str, Any], data: list[tuple[list[float], int]]) -> float:
    hits = sum(
        (sigmoid(sum(wi * xi for wi, xi in zip(state["weights"], x, strict=True)) + state["bias"]) > 0.5) == bool(y)
        for x, y in data
    )
    return hits / len(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--checkpoint-every", type=int, default=20)
    args = parser.parse_args()

    ckpt = Checkpointing.from_env()
    data = make_data(600)
    train, test = data[:500], data[500:]
    state = ckpt.load() or {"step": 0, "weights": [0.0] * FEATURES, "bias": 0.0, "losses": []}
    resumed_at = state["step"]
    while state["step"] < args.steps:
        state["losses"].append(step(state, train, rate=0.5))
        state["step"] += 1
        if ckpt.stop_requested:  # SIGTERM: the grid asked us to pause
            ckpt.save(state)
            print(f"paused at step {state['step']}: checkpoint saved", flush=True)
            ckpt.exit_for_pause()
        if state["step"] % args.checkpoint_every == 0:
            ckpt.save(state)
    ckpt.save(state)

    args.output.mkdir(parents=True, exist_ok=True)
    metrics = {
        "steps": state["step"],
        "resumed_at_step": resumed_at,
        "final_loss": state["losses"][-1],
        "test_accuracy": accuracy(state, test),
        "job_id": ckpt.job_id,
        "zone": ckpt.zone,
        "attempt": ckpt.attempt,
    }
    (args.output / "model.json").write_text(json.dumps({"weights": state["weights"], "bias": state["bias"]}))
    (args.output / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(f"trained: {metrics}", flush=True)


if __name__ == "__main__":
    main()
