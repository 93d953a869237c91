"""Train a model on Kubernetes in the cleanest grid window of two clusters.

``train_model`` plans at once, creates the training Job **suspended** in the cluster whose grid is
expected to be cleanest (so a bad spec fails now), waits in the triggerer for the window (re-planning as
forecasts change), moves the Job if the window opened elsewhere, unsuspends it, and waits for it to
finish. Its XCom is the record for the carbon ledger: where and when it ran, the decision, and the
"start at once at home" counterfactual.

Set up:

- two ``kubernetes`` connections, ``kubernetes_frankfurt`` and ``kubernetes_paris`` (kubeconfig in the
  ``kube_config`` extra, or ``in_cluster``), each cluster with a namespace ``ml``;
- a carbon connection for zones ``DE`` and ``FR`` (param ``carbon_conn_id``, default Electricity Maps);
- an image with the training script (``example_dags/workloads/train_logreg.py``) at ``params.script`` and
  ``airflow_provider_gridaware.workload`` importable (it is standard library only: vendor it);
- ``checkpoint_dir`` on a volume both clusters can reach, if a paused run should resume where it stopped.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, Param, task

from airflow_provider_gridaware.operators.kubernetes import GridAwareKubernetesJobOperator, KubernetesCluster

with DAG(
    dag_id="example_kubernetes_training",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    tags=["gridaware", "example", "kubernetes"],
    params={
        "carbon_conn_id": Param("gridaware_electricitymaps_default", type="string"),
        "script": Param("/opt/gridaware/train_logreg.py", type="string", description="the script in the image"),
        "output_dir": Param("/data/models/churn", type="string"),
        "checkpoint_dir": Param("/data/checkpoints/churn", type="string"),
        "not_before": Param("", type="string", description="optional ISO time: do not start before it"),
    },
) as dag:
    train = GridAwareKubernetesJobOperator(
        task_id="train_model",
        clusters=[
            # Home first: "start at once here" is the counterfactual the savings are measured against.
            KubernetesCluster(zone="DE", conn_id="kubernetes_frankfurt", namespace="ml"),
            # Moving the training data to Paris costs egress: FR must be that much cleaner to win.
            KubernetesCluster(zone="FR", conn_id="kubernetes_paris", namespace="ml", penalty=0.05),
        ],
        conn_id="{{ params.carbon_conn_id }}",
        duration=timedelta(minutes=30),
        deadline=timedelta(hours=12),
        gpu_model="A100",  # the carbon ledger estimates the energy from this profile
        gpu_count=1,
        earliest_start="{{ params.not_before }}",
        priority_class="flexible",
        image="registry.example.com/ml/churn-train:1.0",
        cmds=["python", "{{ params.script }}"],
        arguments=["--output", "{{ params.output_dir }}", "--steps", "200"],
        container_resources=None,
        checkpoint_path="{{ params.checkpoint_dir }}",
        grace_period_seconds=60,
        on_kill_action="delete",
        job_poll_interval=5,
    )

    @task
    def report(result: dict[str, Any]) -> str:
        decision = result.get("decision") or {}
        plan = decision.get("plan") or {}
        counterfactual = result.get("counterfactual") or {}
        line = (
            f"trained in {result['zone']} ({result['cluster']}) from {result['start_time']} to {result['end_time']}: "
            f"{plan.get('reason')}; expected {plan.get('expected_signals')} vs at once at home {counterfactual.get('signals')}"
        )
        print(line)
        return line

    report(train.output)
