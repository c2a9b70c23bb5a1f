"""klines: Binance klines into the warehouse, every hour.

backfill -> load -> run_models -> test (and seed -> run_models), one BashOperator each,
calling the klines binary.

Each run covers its data interval: `--from` is the interval's start and `--to` its end, so
`airflow dags backfill` (or catchup) becomes a klines backfill of exactly those hours. A manual
run, whose interval is empty in Airflow 3, covers the hour before its logical date. klines
keeps only closed candles, resumes from its checkpoints and loads every staged file exactly
once, so retries and re-runs are safe.

Worker setup (see the README, "Airflow"):
  KLINES_BIN          the klines binary (default: `klines` on PATH)
  KLINES_PROJECT_DIR  the klines project: klines.yml, profiles.yml, models/ (default /opt/klines)
  KLINES_RETRIES      retries per task (default 3, with exponential backoff from 2 minutes)
  With several workers, keep the stage and the checkpoints in the object store
  (klines.yml: `stage: s3://bucket/prefix` and `state: stage`) so any worker can resume.

Params (trigger form or `airflow dags trigger --conf`): `symbols` (comma-separated) and
`target` (the profiles.yml output; empty for the profile's default).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

try:  # Airflow 3
    from airflow.providers.standard.operators.bash import BashOperator
    from airflow.sdk import DAG, Param
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.models.param import Param
    from airflow.operators.bash import BashOperator

KLINES = os.environ.get("KLINES_BIN", "klines")
PROJECT_DIR = os.environ.get("KLINES_PROJECT_DIR", "/opt/klines")
RETRIES = int(os.environ.get("KLINES_RETRIES", "3"))

def klines_from(start, end):
    """The run's first candle: its data interval's start, or an hour before an empty interval's end."""
    return (start if start < end else end - timedelta(hours=1)).isoformat()


# klines' exit codes: 2 is bad usage or configuration (a retry will not help), 3 partly failed,
# 4 rate-limited by the exchange (a later retry will), 130 interrupted.
COMMON = (
    f"{KLINES} --project-dir {PROJECT_DIR} --log-format json"
    "{% if params.target %} --target {{ params.target }}{% endif %}"
)

with DAG(
    dag_id="klines",
    description="Binance klines: backfill, load, run models, test",
    schedule="@hourly",
    start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,  # one backfill per series at a time (klines locks them anyway)
    default_args={
        "retries": RETRIES,
        "retry_delay": timedelta(minutes=2),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=30),
        "execution_timeout": timedelta(minutes=50),
    },
    params={
        "symbols": Param("BTCUSDT", type="string", description="Symbols, comma-separated"),
        "target": Param("", type="string", description="profiles.yml output; empty for the default"),
    },
    user_defined_macros={"klines_from": klines_from},
    tags=["klines"],
) as dag:
    backfill = BashOperator(
        task_id="backfill",
        bash_command=(
            f"{COMMON} backfill --symbols {{{{ params.symbols }}}}"
            " --from {{ klines_from(data_interval_start, data_interval_end) }}"
            " --to {{ data_interval_end.isoformat() }}"
        ),
    )
    load = BashOperator(task_id="load", bash_command=f"{COMMON} load")
    seed = BashOperator(task_id="seed", bash_command=f"{COMMON} seed")
    run_models = BashOperator(task_id="run_models", bash_command=f"{COMMON} run models")
    test = BashOperator(task_id="test", bash_command=f"{COMMON} test")

    backfill >> load >> run_models >> test
    seed >> run_models
