//! `klines load`

use crate::cli::{GlobalArgs, LoadArgs};
use crate::exit::PartialFailure;
use crate::load::{self, Options};
use crate::warehouse;

pub async fn run(global: &GlobalArgs, args: LoadArgs) -> anyhow::Result<()> {
    let project = super::project(global)?;
    let target = super::target(global, &project)?;
    let stage = super::stage(&project, args.stage)?;
    let wh = warehouse::connect(&target, &project.dir).await?;
    tracing::info!(stage = %stage.url(), warehouse = %wh.describe(), target = %target.name, dry_run = args.dry_run, "load");
    let opts = Options {
        dry_run: args.dry_run,
        batch_rows: project.load_batch_rows,
        fetch_concurrency: project.load_fetch_concurrency,
    };
    let summary = load::load(&stage, wh, target.raw_schema(), &opts).await?;
    if args.dry_run {
        for p in &summary.pending {
            println!("{}\t{} rows\t{} bytes", p.file, p.rows, p.bytes);
        }
        println!("would load: {} files, {} rows", summary.files, summary.rows);
    } else {
        println!("{summary}");
    }
    for f in &summary.failed {
        eprintln!("failed: {}: {}", f.file, f.error);
    }
    match summary.failed.len() {
        0 => Ok(()),
        n if summary.files == 0 => anyhow::bail!("{n} staged files could not be loaded; first: {}", summary.failed[0].error),
        n => Err(PartialFailure(format!("{n} staged files could not be loaded; the other {} loaded", summary.files)).into()),
    }
}
