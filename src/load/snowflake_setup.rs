//! `klines setup snowflake`: the DDL that lets Snowflake read the klines stage, filled in from
//! the profile and klines.yml.

use std::fmt::Write;

use super::raw::sql as raw;
use crate::config::profiles::SnowflakeOutput;
use crate::datasets::ColType;
use crate::warehouse::ident::{fold, literal, quote, relation};
use crate::warehouse::snowflake::{LANDING, landing_ddl};
use crate::warehouse::{Dialect, ident};

fn cast(ty: ColType) -> &'static str {
    match ty {
        ColType::Text => "VARCHAR",
        ColType::Timestamp => "TIMESTAMP_NTZ",
        ColType::Decimal => "NUMBER(38,8)",
        ColType::BigInt => "NUMBER(38,0)",
        ColType::Double => "FLOAT",
    }
}

/// The stage URL goes into SQL comments and literals: only `s3://bucket/prefix` with a valid
/// bucket name and the characters AWS calls safe in keys, so nothing can end a line or a string.
fn validate_stage_url(stage_url: &str) -> anyhow::Result<()> {
    let Some(rest) = stage_url.strip_prefix("s3://") else {
        anyhow::bail!(
            "Snowflake reads the stage from S3: set `stage: s3://bucket/prefix` in klines.yml (it is {stage_url:?})"
        );
    };
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && !bucket.starts_with(['.', '-'])
        && !bucket.ends_with(['.', '-']);
    let prefix_ok = prefix
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/!-_.*()=".contains(c));
    if !bucket_ok || !prefix_ok {
        anyhow::bail!(
            "--stage {stage_url:?} is not an S3 URL klines can put into SQL: s3://bucket/prefix with a valid bucket name and letters, digits and /!-_.*()= in the prefix"
        );
    }
    Ok(())
}

/// The objects the setup script creates, named and checked.
struct Names {
    db: String,
    stage: String,
    pipe: String,
    integration: String,
    /// The stage's URL, with a trailing `/`.
    url: String,
    file_format: String,
}

/// Names the objects (the profile's, else klines' defaults) and checks every name, the stage
/// URL and the role's ARN before they reach the script.
fn names(o: &SnowflakeOutput, stage_url: &str, role_arn: Option<&str>) -> anyhow::Result<Names> {
    let k = &crate::warehouse::snowflake::DIALECT;
    let raw_schema = &o.raw_schema;
    ident::validate(&o.database).map_err(|e| anyhow::anyhow!("database: {e}"))?;
    let db = fold(k, &o.database);
    let stage = o
        .stage
        .clone()
        .unwrap_or_else(|| format!("{db}.{}.KLINES_STAGE", fold(k, raw_schema)));
    let pipe = o
        .pipe
        .clone()
        .unwrap_or_else(|| format!("{db}.{}.KLINES_PIPE", fold(k, raw_schema)));
    let integration = o
        .storage_integration
        .clone()
        .unwrap_or_else(|| "KLINES_S3".into());
    crate::warehouse::snowflake::validate_qualified("stage", &stage)?;
    crate::warehouse::snowflake::validate_qualified("pipe", &pipe)?;
    ident::validate(&integration).map_err(|e| anyhow::anyhow!("storage_integration: {e}"))?;
    validate_stage_url(stage_url)?;
    if let Some(arn) = role_arn
        && !arn
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-:/".contains(c))
    {
        anyhow::bail!("--aws-role-arn {arn:?} is not an IAM role ARN");
    }
    Ok(Names {
        file_format: format!("{db}.{}.KLINES_PARQUET", fold(k, raw_schema)),
        url: format!("{}/", stage_url.trim_end_matches('/')),
        db,
        stage,
        pipe,
        integration,
    })
}

/// The setup script. `stage_url` is the klines stage (`s3://bucket/prefix`).
pub fn script(
    o: &SnowflakeOutput,
    stage_url: &str,
    role_arn: Option<&str>,
) -> anyhow::Result<String> {
    let k = &crate::warehouse::snowflake::DIALECT;
    let raw_schema = &o.raw_schema;
    let Names {
        db,
        stage,
        pipe,
        integration,
        url,
        file_format,
    } = names(o, stage_url, role_arn)?;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "-- klines setup for Snowflake: run as a role that may create integrations, stages and pipes."
    );
    let _ = writeln!(
        s,
        "-- 1. Snowflake reads the klines stage ({url}) through an IAM role."
    );
    let _ = writeln!(s, "CREATE STORAGE INTEGRATION IF NOT EXISTS {integration}");
    let _ = writeln!(s, "  TYPE = EXTERNAL_STAGE");
    let _ = writeln!(s, "  STORAGE_PROVIDER = 'S3'");
    let _ = writeln!(s, "  ENABLED = TRUE");
    let _ = writeln!(
        s,
        "  STORAGE_AWS_ROLE_ARN = {}",
        literal(role_arn.unwrap_or("arn:aws:iam::<account>:role/<role for Snowflake>"))
    );
    let _ = writeln!(s, "  STORAGE_ALLOWED_LOCATIONS = ({});", literal(&url));
    let _ = writeln!(
        s,
        "-- DESC INTEGRATION {integration}; gives STORAGE_AWS_IAM_USER_ARN and STORAGE_AWS_EXTERNAL_ID for the role's trust policy."
    );
    let _ = writeln!(s);
    let _ = writeln!(s, "USE DATABASE {db};");
    let _ = writeln!(
        s,
        "-- 2. The raw schema, the raw table and the load history (klines load creates them too)."
    );
    for st in raw::ddl(k, raw_schema) {
        let _ = writeln!(s, "{st};");
    }
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "-- 3. The file format and the external stage over the same bucket and prefix."
    );
    let _ = writeln!(
        s,
        "CREATE FILE FORMAT IF NOT EXISTS {file_format} TYPE = PARQUET USE_LOGICAL_TYPE = TRUE;"
    );
    let _ = writeln!(
        s,
        "CREATE STAGE IF NOT EXISTS {stage} URL = {} STORAGE_INTEGRATION = {integration} FILE_FORMAT = {file_format};",
        literal(&url)
    );
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "-- 4. For `klines load --snowpipe`: a landing table the pipe copies into; klines merges it into"
    );
    let _ = writeln!(
        s,
        "--    the raw table once Snowpipe reports the files LOADED."
    );
    let _ = writeln!(s, "{};", landing_ddl(raw_schema));
    let cols: Vec<String> = raw::staged()
        .iter()
        .map(|(n, _)| quote(k, n))
        .chain([quote(k, "_file")])
        .collect();
    let selects: Vec<String> = raw::staged()
        .iter()
        .map(|(n, t)| format!("$1:{n}::{}", cast(*t)))
        .chain(["METADATA$FILENAME".to_string()])
        .collect();
    let _ = writeln!(
        s,
        "CREATE PIPE IF NOT EXISTS {pipe} AS COPY INTO {} ({}) FROM (SELECT {} FROM @{stage}) FILE_FORMAT = (FORMAT_NAME = {file_format});",
        relation(k, raw_schema, LANDING),
        cols.join(", "),
        selects.join(", ")
    );
    let _ = writeln!(
        s,
        "-- Key-pair authentication, for the connector and Snowpipe's REST API:"
    );
    let _ = writeln!(
        s,
        "-- ALTER USER {} SET RSA_PUBLIC_KEY = '<the public key, without its PEM header and footer>';",
        fold(k, &o.user)
    );
    let _ = writeln!(
        s,
        "-- Types: decimals {}, times {} (UTC).",
        k.sql_type(ColType::Decimal),
        k.sql_type(ColType::Timestamp)
    );
    Ok(s)
}
