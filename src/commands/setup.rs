//! `klines setup snowflake`

use crate::cli::{GlobalArgs, SetupArgs};
use crate::config::profiles::Output;
use crate::error::UsageError;
use crate::load::snowflake_setup as setup;

pub async fn run(global: &GlobalArgs, args: SetupArgs) -> anyhow::Result<()> {
    if args.warehouse != "snowflake" {
        return Err(UsageError(format!(
            "klines setup {}: only `snowflake` needs a setup",
            args.warehouse
        ))
        .into());
    }
    let project = super::project(global)?;
    let target = super::target(global, &project)?;
    let Output::Snowflake(o) = &target.output else {
        return Err(UsageError(format!(
            "target {} is {}, not snowflake (use --target)",
            target.name,
            target.type_name()
        ))
        .into());
    };
    let stage = args.stage.unwrap_or_else(|| project.stage.clone());
    let script = setup::script(o, &stage, args.aws_role_arn.as_deref())
        .map_err(|e| UsageError(format!("{e:#}")))?;
    print!("{script}");
    Ok(())
}
