//! The kinds of failure that choose an exit code (`exit::classify`), for every layer to raise.

/// Bad flags or configuration.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Some of the work failed and the rest succeeded.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PartialFailure(pub String);
