//! Integration tests: one binary (one link of DuckDB), modules by subject.

mod support;

mod airflow;
mod backfill;
mod compile;
mod load;
mod models;
mod operate;
mod runner;
mod snowflake;
mod snowflake_protocol;
mod snowpipe;
mod stage;
mod warehouse;
