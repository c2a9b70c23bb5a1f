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
import shlex
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
# Templated values go through the environment, never into the command's text.
ENV = {
    "KLINES_DAG_SYMBOLS": "{{ params.symbols }}",
    "KLINES_DAG_TARGET": "{{ params.target }}",
    "KLINES_DAG_FROM": "{{ klines_from(data_interval_start, data_interval_end) }}",
    "KLINES_DAG_TO": "{{ data_interval_end.isoformat() }}",
}
COMMON = (
    f"{shlex.quote(KLINES)} --project-dir {shlex.quote(PROJECT_DIR)} --log-format json"
    ' ${KLINES_DAG_TARGET:+--target "$KLINES_DAG_TARGET"}'
)
SYMBOLS = r"^[A-Za-z0-9]{1,20}(,[A-Za-z0-9]{1,20})*$"
TARGET = r"^([A-Za-z0-9_-]{1,64})?$"


def klines_task(task_id, command):
    return BashOperator(
        task_id=task_id, bash_command=f"{COMMON} {command}", env=ENV, append_env=True
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
        "symbols": Param(
            "BTCUSDT", type="string", pattern=SYMBOLS, description="Symbols, comma-separated"
        ),
        "target": Param(
            "",
            type="string",
            pattern=TARGET,
            description="profiles.yml output; empty for the default",
        ),
    },
    user_defined_macros={"klines_from": klines_from},
    tags=["klines"],
) as dag:
    backfill = klines_task(
        "backfill",
        'backfill --symbols "$KLINES_DAG_SYMBOLS" --from "$KLINES_DAG_FROM" --to "$KLINES_DAG_TO"',
    )
    load = klines_task("load", "load")
    seed = klines_task("seed", "seed")
    run_models = klines_task("run_models", "run models")
    test = klines_task("test", "test")

    backfill >> load >> run_models >> test
    seed >> run_models
