"""Train on AWS Batch in the cleaner of two regions, and pause/resume batch-class jobs for a grid event.

What it shows:

* ``GridAwareBatchOperator``: two candidate job queues, each labelled with the grid zone of its region
  (home zone first). At start it checks both queues, then waits in the triggerer for the window with the
  lowest carbon intensity across both zones (a ``penalty`` makes the far region prove itself: egress);
  in the window it submits to the released zone's queue, tagged ``gridaware.io/...`` and with the
  checkpoint contract in the container's environment, and waits deferrably for the job. A retry
  reattaches to the stored job instead of submitting twice. Its XCom is the decision, zone, region,
  queue and every AWS job id (for the carbon ledger).
* ``PauseBatchJobsOperator`` / ``ResumeBatchJobsOperator`` (second DAG, triggered by a grid event):
  AWS Batch cannot suspend, so a pause terminates the ``batch``-class jobs with a recognisable reason
  and a resume resubmits them as their next attempt; the waiting operator follows its job to the
  resubmitted successor, and the ledger still sees one logical job.

Connections: ``aws_default`` (region and credentials; ``endpoint_url`` in its extra for moto or
LocalStack) and a carbon connection for both zones (param ``carbon_conn_id``, default Electricity Maps).
Neither is needed to parse this file. Run by hand (``schedule=None``); the optional param ``not_before``
(an ISO time) keeps the job from starting earlier.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag

from airflow_provider_gridaware.hooks.batch import BatchQueue
from airflow_provider_gridaware.operators.batch import (
    GridAwareBatchOperator,
    PauseBatchJobsOperator,
    ResumeBatchJobsOperator,
)

QUEUES = [
    BatchQueue(zone="IE", job_queue="gpu-training", region_name="eu-west-1"),
    # Moving the data to Stockholm costs egress: Sweden must be clearly cleaner to be chosen.
    BatchQueue(zone="SE", job_queue="gpu-training", region_name="eu-north-1", penalty=0.2),
]


@dag(
    dag_id="example_batch_dispatch",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    tags=["gridaware", "example", "aws"],
    params={
        "carbon_conn_id": Param("gridaware_electricitymaps_default", type="string"),
        "not_before": Param("", type="string", description="optional ISO time: do not start before it"),
    },
    doc_md=__doc__,
)
def example_batch_dispatch() -> None:
    GridAwareBatchOperator(
        task_id="train_model",
        queues=QUEUES,
        job_name="train-model-{{ dag_run.run_after | ds_nodash }}",  # a manual run has no logical date
        job_definition="train-model",
        duration=timedelta(hours=4),
        deadline=timedelta(hours=24),
        conn_id="{{ params.carbon_conn_id }}",
        # An empty not_before renders as no earliest start.
        earliest_start="{{ params.not_before }}",
        priority_class="batch",
        interruptible=True,
        gpu_model="A10G",  # the carbon ledger estimates the energy from this profile
        gpu_count=4,
        pue=1.1,
        container_overrides={"command": ["python", "train.py", "--epochs", "20"]},
        checkpoint_path="s3://my-bucket/checkpoints/train-model/{{ run_id }}",
        grace_period_seconds=30,
        retries=2,
    )


@dag(
    dag_id="example_batch_grid_event",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    tags=["gridaware", "example", "aws"],
    params={"event": "demand flexibility event"},
    doc_md=__doc__,
)
def example_batch_grid_event() -> None:
    pause = PauseBatchJobsOperator(
        task_id="pause_batch_jobs",
        queues=QUEUES,
        priority_class="batch",
        reason="{{ params.event }}",
    )
    resume = ResumeBatchJobsOperator(
        task_id="resume_batch_jobs",
        queues=QUEUES,
        priority_class="batch",
        # In a real grid-event DAG a sensor waits for the event's end between the two.
        trigger_rule="all_done",
    )
    pause >> resume


example_batch_dispatch()
example_batch_grid_event()
