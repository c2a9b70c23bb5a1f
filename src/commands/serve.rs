//! `klines serve`

use crate::cli::{GlobalArgs, ServeArgs};
use crate::exit::UsageError;
use crate::redact::Secret;
use crate::serve;

pub async fn run(global: &GlobalArgs, args: ServeArgs) -> anyhow::Result<()> {
    let project = super::project(global)?;
    let target = super::target(global, &project)?;
    let token = args.token.filter(|t| !t.is_empty()).map(Secret::new);
    if token.is_none() && !serve::is_loopback(&args.addr) {
        return Err(UsageError(format!(
            "--addr {}: serving beyond loopback needs --token or KLINES_SERVE_TOKEN",
            args.addr
        ))
        .into());
    }
    let wh = crate::warehouse::connect_read_only(&target, &project.dir).await?;
    serve::serve(
        wh,
        serve::Options {
            addr: args.addr,
            token,
            schema: target.schema().to_string(),
        },
    )
    .await
}
