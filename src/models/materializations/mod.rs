//! Materializations: how a model's compiled SELECT becomes a relation. Each kind is a
//! [`Materialization`] in a file of its own, registered in [`KINDS`]: a new kind is one file
//! plus one line there. A model's `materialized` config names its kind.
//!
//! - `view` (`view.rs`): created or replaced in one statement or transaction.
//! - `table` (`table.rs`): built beside the old one, then swapped in (`super::materialize`).
//! - `incremental` (`incremental.rs`): by time range, `append` or `delete+insert`.
//! - `ephemeral` (`ephemeral.rs`): never built; inlined as a CTE where it is used.
//! - `indicators` (`indicators.rs`): native, computed in Rust (`super::indicators`).

mod ephemeral;
mod incremental;
mod indicators;
mod table;
mod view;

use super::catalog::Catalog;
use super::changes::Feed;
use super::config::NodeConfig;
use super::jinja::BatchFilter;
use super::node::Node;
use crate::warehouse::Warehouse;

/// Every kind, in the order an unknown name's error lists them.
static KINDS: &[&dyn Materialization] = &[
    &view::View,
    &table::Table,
    &incremental::Incremental,
    &ephemeral::Ephemeral,
    &indicators::Indicators,
];

/// Compiles a model's SQL for a build (and writes it to `target/compiled/`).
pub trait Compiler: Sync {
    /// The model's SQL with `is_incremental()` as given, reading only `filter`'s ranges of the
    /// parents it follows.
    fn render(
        &self,
        node: &Node,
        is_incremental: bool,
        filter: Option<BatchFilter>,
    ) -> anyhow::Result<String>;
}

/// What a kind is given to build one model.
pub struct Build<'a> {
    pub wh: &'a dyn Warehouse,
    pub node: &'a Node,
    /// The target schema, which keeps the change records.
    pub schema: &'a str,
    pub full_refresh: bool,
    /// The parents that record the time ranges they change, with how to read them.
    pub feeds: Vec<(String, Feed)>,
    pub compiler: &'a dyn Compiler,
    /// What the warehouse held when the run first asked (see `models::catalog`).
    pub catalog: &'a Catalog,
}

impl Build<'_> {
    /// The model's SQL (see [`Compiler::render`]).
    pub fn compile(
        &self,
        is_incremental: bool,
        filter: Option<BatchFilter>,
    ) -> anyhow::Result<String> {
        self.compiler.render(self.node, is_incremental, filter)
    }
}

/// What a build did: rows written, and the line `klines run` shows.
pub struct Built {
    pub rows: u64,
    pub message: String,
}

impl Built {
    pub fn new(rows: u64, message: impl Into<String>) -> Built {
        Built {
            rows,
            message: message.into(),
        }
    }
}

/// A model kind.
#[async_trait::async_trait]
pub trait Materialization: Sync {
    /// The `materialized` config value.
    fn name(&self) -> &'static str;

    /// Checks a model's configuration when the project is parsed (the error names the key).
    fn check(&self, _config: &NodeConfig) -> Result<(), String> {
        Ok(())
    }

    /// Whether the model is inlined where it is used instead of built.
    fn inlined(&self) -> bool {
        false
    }

    /// Whether the model records the time ranges it rewrites (`klines_model_changes`), so
    /// models downstream can follow it by time range.
    fn records_changes(&self, _config: &NodeConfig) -> bool {
        false
    }

    /// Whether `klines compile` renders the model with `is_incremental()` true.
    async fn compiles_incremental(
        &self,
        _wh: &dyn Warehouse,
        _node: &Node,
    ) -> anyhow::Result<bool> {
        Ok(false)
    }

    /// Builds or updates the model's relation.
    async fn build(&self, b: &Build<'_>) -> anyhow::Result<Built>;
}

/// The kind named `name`.
pub fn find(name: &str) -> Option<&'static dyn Materialization> {
    KINDS.iter().copied().find(|k| k.name() == name)
}

/// The names of every kind.
pub fn names() -> Vec<&'static str> {
    KINDS.iter().map(|k| k.name()).collect()
}

/// Whether the node's kind is inlined rather than built (`ephemeral`).
pub fn inlined(config: &NodeConfig) -> bool {
    find(config.materialized.as_str()).is_some_and(|k| k.inlined())
}

/// Whether the node records the time ranges it rewrites.
pub fn records_changes(config: &NodeConfig) -> bool {
    find(config.materialized.as_str()).is_some_and(|k| k.records_changes(config))
}
