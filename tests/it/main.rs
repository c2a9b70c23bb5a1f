//! Integration tests: one binary (one link of DuckDB), modules by subject.

mod support;

mod airflow;
mod archive;
mod browser;
mod backfill;
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
mod snowflake;
mod snowflake_protocol;
mod snowpipe;
mod serve;
mod sources;
mod stream;
mod stage;
mod third_exchange;
mod trials;
mod warehouse;
