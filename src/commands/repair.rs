//! `klines repair`: manifest entries for staged data files that have none.

use crate::cli::{GlobalArgs, RepairArgs};
use crate::error::PartialFailure;
use crate::stage::repair;

pub async fn run(global: &GlobalArgs, args: RepairArgs) -> anyhow::Result<()> {
    let project = super::project(global)?;
    let stage = super::stage(&project, args.stage)?;
    let results = repair::repair(&stage, args.dry_run).await?;
    let mut bad = Vec::new();
    for (key, entry) in &results {
        match entry {
            Ok(e) if args.dry_run => println!("would write\t{key}\t{} rows", e.rows),
            Ok(e) => println!("wrote\t{}\t{} rows", e.key(), e.rows),
            Err(err) => {
                println!("refused\t{key}\t{}", format!("{err:#}").replace('\n', " "));
                bad.push(key.clone());
            }
        }
    }
    let good = results.len() - bad.len();
    println!(
        "repair: {} files without a manifest entry, {good} {}, {} refused",
        results.len(),
        if args.dry_run {
            "can be repaired"
        } else {
            "repaired"
        },
        bad.len()
    );
    match bad.len() {
        0 => Ok(()),
        n => Err(PartialFailure(format!(
            "{n} files are not klines data of the series and range their names say; first: {}",
            bad[0]
        ))
        .into()),
    }
}
