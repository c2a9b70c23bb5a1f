//! `klines serve`

use crate::cli::{GlobalArgs, ServeArgs};
use crate::error::UsageError;
use crate::serve;

pub async fn run(global: &GlobalArgs, args: ServeArgs) -> anyhow::Result<()> {
    let project = super::project(global)?;
    let target = super::target(global, &project)?;
    let token = serve::token_for(&args.addr, args.token, "--token")
        .map_err(|e| UsageError(format!("--addr {e}")))?;
    let wh = crate::warehouse::connect_read_only(&target, &project.dir).await?;
    serve::serve(
        wh,
        serve::Options {
            addr: args.addr,
            token,
            schema: target.schema().to_string(),
            // Another process writes the tables: open pages look every few seconds.
            updates: serve::live::Updates::new().poll(std::time::Duration::from_secs(5)),
        },
    )
    .await
}
