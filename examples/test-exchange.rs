//! The test exchange as a process, for benchmarks, the Airflow test and manual runs:
//!
//! ```sh
//! cargo run --example test-exchange -- --bind 127.0.0.1:8765 --now 2024-01-05T13:37:30Z
//! ```
//!
//! It prints its base URL on stdout and serves until it is killed. `GET /__admin/stats`
//! shows what it saw; `POST /__admin/clock?now=MS[&running]` moves its clock.

#[path = "../tests/it/support/exchange/mod.rs"]
#[allow(dead_code)]
mod exchange;

use std::time::Duration;

use clap::Parser;
use exchange::{Clock, Config, Fault, TestExchange};

#[derive(Parser)]
#[command(about = "A Binance-compatible test exchange (not a klines command)")]
struct Args {
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1:0")]
    bind: String,
    /// The exchange's clock: a UTC date or date-time [default: the real time]
    #[arg(long)]
    now: Option<String>,
    /// Let the clock run from --now instead of standing still
    #[arg(long)]
    running: bool,
    /// Serve the real fixtures (XRPETH, BTCUSDT, ETHUSDT, SOLUSDT) instead of synthetic data
    #[arg(long)]
    real: bool,
    /// REQUEST_WEIGHT limit per window
    #[arg(long, default_value_t = 6000)]
    weight_limit: u32,
    /// Window length in seconds
    #[arg(long, default_value_t = 60)]
    window_secs: u32,
    /// Latency added to every request, in milliseconds
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Probability of a fault (5xx, dropped connection, truncated JSON) per klines request
    #[arg(long, default_value_t = 0.0)]
    fault_rate: f64,
}

fn main() {
    let args = Args::parse();
    let now = match &args.now {
        Some(t) => klines::time::parse("--now", t, klines::time::now_ms()).unwrap_or_else(|e| {
            eprintln!("error: {e}");
            std::process::exit(2)
        }),
        None => klines::time::now_ms(),
    };
    let mut config = if args.real {
        Config::real(now)
    } else {
        Config::synthetic(now)
    };
    config.clock = if args.running || args.now.is_none() {
        Clock::running_from(now)
    } else {
        Clock::Fixed(now)
    };
    config.weight_limit = args.weight_limit;
    config.window_secs = args.window_secs;
    config.latency = Duration::from_millis(args.latency_ms);
    let exchange = TestExchange::start_on(&args.bind, config);
    if args.fault_rate > 0.0 {
        exchange.random_faults(
            args.fault_rate,
            7,
            vec![Fault::Status(503), Fault::Drop, Fault::Truncate],
        );
    }
    println!("{}", exchange.url);
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
