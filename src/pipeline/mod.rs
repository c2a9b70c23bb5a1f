//! Plans over one topology: a source's candles to the stage, the stage to sinks. `klines
//! backfill` is source -> stage, `klines stream` source -> stage -> sinks after every flush
//! (`sinks`: the loader or Snowpipe, the model builder, the dashboard), `klines pipeline`
//! backfill, then load and build on one connection.

pub mod sinks;
pub mod stream;
