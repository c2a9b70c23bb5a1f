//! Integration tests: one binary (one link of DuckDB), modules by subject.

mod support;

mod airflow;
mod archive;
mod backfill;
mod browser;
mod coinbase;
mod compile;
mod crash;
mod hardening;
mod indicators;
mod legacy;
mod load;
mod models;
mod operate;
mod promises;
mod readme;
mod runner;
mod serve;
mod snowflake;
mod snowflake_protocol;
mod snowpipe;
mod sources;
mod stage;
mod stream;
mod third_exchange;
mod trials;
mod warehouse;
