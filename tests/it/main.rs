//! Integration tests: one binary (one link of DuckDB), modules by subject.

mod support;

mod backfill;
mod stage;
mod load;
mod warehouse;
mod models;
mod runner;
mod compile;
mod snowflake;
mod snowflake_protocol;
mod snowpipe;
