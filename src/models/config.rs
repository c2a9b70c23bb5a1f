//! Node configuration and its layers, as in dbt: `config()` in the model file wins over the
//! model's entry in a yml file, which wins over `models:` in klines.yml (by folder, keys with a
//! leading `+`), which wins over the defaults.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value as Json};

/// How a model is built.
/// A node's `materialized`: a model's kind (`models::materializations`), or what a seed or a
/// test is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Materialized(&'static str);

impl Materialized {
    pub const VIEW: Materialized = Materialized("view");
    pub const TABLE: Materialized = Materialized("table");
    pub const SEED: Materialized = Materialized("seed");
    pub const TEST: Materialized = Materialized("test");

    pub fn as_str(self) -> &'static str {
        self.0
    }
}

/// The resolved configuration of a node: the typed keys klines acts on, and all keys as given
/// (for the manifest).
#[derive(Debug, Clone, Serialize)]
pub struct NodeConfig {
    pub materialized: Materialized,
    pub tags: Vec<String>,
    pub enabled: bool,
    pub schema: Option<String>,
    pub alias: Option<String>,
    pub unique_key: Vec<String>,
    /// `time_range` (the default with `event_time`), `append`, `delete+insert`.
    pub incremental_strategy: Option<String>,
    /// The model's (or source's) time column, for batching by time range.
    pub event_time: Option<String>,
    /// The column time ranges are kept per (klines: `symbol`).
    pub batch_key: Option<String>,
    /// The model's bucket size (`1m`, `5m`, `15m`, `1h`, `1d`): changed ranges widen to it.
    pub time_grain: Option<String>,
    /// Test severity: `error` or `warn`.
    pub severity: String,
    /// dbt's `warn_if` and `error_if`: the failure counts that make a test warn or fail
    /// (both `!=0` unless set). Artifacts show them as written, in `all`.
    #[serde(skip)]
    pub warn_if: Threshold,
    #[serde(skip)]
    pub error_if: Threshold,
    /// Seed column types by column.
    pub column_types: BTreeMap<String, String>,
    pub all: Map<String, Json>,
}

impl NodeConfig {
    /// Builds the config from layers, lowest precedence first.
    /// `kinds` are the model kinds `materialized` may name (a seed's and a test's own too).
    pub fn from_layers(
        default_materialized: Materialized,
        kinds: &[&'static str],
        layers: &[&Map<String, Json>],
    ) -> Result<NodeConfig, String> {
        let mut all = Map::new();
        all.insert(
            "materialized".into(),
            Json::from(default_materialized.as_str()),
        );
        let mut tags: Vec<String> = Vec::new();
        for layer in layers {
            for (k, v) in layer.iter() {
                let k = k.trim_start_matches('+');
                if k == "tags" {
                    // Tags add up across layers, as in dbt.
                    for t in as_strings(v) {
                        if !tags.contains(&t) {
                            tags.push(t);
                        }
                    }
                    continue;
                }
                all.insert(k.to_string(), v.clone());
            }
        }
        all.insert("tags".into(), Json::from(tags.clone()));
        let text = |k: &str| all.get(k).and_then(|v| v.as_str()).map(str::to_string);
        let materialized = match text("materialized") {
            Some(m) => [Materialized::SEED.0, Materialized::TEST.0]
                .iter()
                .chain(kinds)
                .find(|k| **k == m)
                .map(|k| Materialized(k))
                .ok_or_else(|| format!("unknown materialization {m:?} ({})", kinds.join(", ")))?,
            None => default_materialized,
        };
        let severity = text("severity")
            .unwrap_or_else(|| "error".into())
            .to_ascii_lowercase();
        if severity != "error" && severity != "warn" {
            return Err(format!("severity must be error or warn, not {severity:?}"));
        }
        let threshold = |key: &str| -> Result<Threshold, String> {
            match all.get(key) {
                None => Ok(Threshold::default()),
                Some(v) => {
                    let text = v
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string());
                    Threshold::parse(&text).ok_or_else(|| {
                        format!("{key} must be a comparison with a whole number such as \">10\" or \"!=0\", not {text:?}")
                    })
                }
            }
        };
        let (warn_if, error_if) = (threshold("warn_if")?, threshold("error_if")?);
        // Known keys with a wrong value are errors, not silent defaults.
        if let Some(st) = all.get("incremental_strategy") {
            match st.as_str() {
                Some("time_range" | "append" | "delete+insert" | "merge") => {}
                _ => {
                    return Err(format!(
                        "unknown incremental_strategy {st} (time_range, append, delete+insert, merge)"
                    ));
                }
            }
        }
        for key in ["enabled", "full_refresh"] {
            if let Some(v) = all.get(key)
                && !v.is_boolean()
                && !v.is_null()
            {
                return Err(format!("{key} must be true or false, not {v}"));
            }
        }
        for key in ["schema", "alias", "event_time", "batch_key", "time_grain"] {
            if let Some(v) = all.get(key)
                && !v.is_string()
                && !v.is_null()
            {
                return Err(format!("{key} must be a string, not {v}"));
            }
        }
        if let Some(v) = all.get("unique_key")
            && !(v.is_string() || v.as_array().is_some_and(|a| a.iter().all(Json::is_string)))
        {
            return Err(format!(
                "unique_key must be a column or a list of columns, not {v}"
            ));
        }
        let column_types = all
            .get("column_types")
            .and_then(|v| v.as_object())
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        Ok(NodeConfig {
            materialized,
            tags,
            enabled: all.get("enabled").and_then(|v| v.as_bool()).unwrap_or(true),
            schema: text("schema"),
            alias: text("alias"),
            unique_key: all.get("unique_key").map(as_strings).unwrap_or_default(),
            incremental_strategy: text("incremental_strategy"),
            event_time: text("event_time"),
            batch_key: text("batch_key"),
            time_grain: text("time_grain"),
            severity,
            warn_if,
            error_if,
            column_types,
            all,
        })
    }
}

/// A condition on a test's failure count, as dbt writes it: `!=0`, `>10`, `>=5`, `<3`,
/// `<=2`, `=0` (`==0` too); spaces allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Threshold {
    pub op: Comparison,
    pub value: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    Ne,
    Eq,
    Gt,
    Ge,
    Lt,
    Le,
}

impl Default for Threshold {
    fn default() -> Self {
        Threshold {
            op: Comparison::Ne,
            value: 0,
        }
    }
}

impl Threshold {
    pub fn parse(text: &str) -> Option<Threshold> {
        let t = text.trim();
        let (op, rest) = [
            ("!=", Comparison::Ne),
            ("<>", Comparison::Ne),
            (">=", Comparison::Ge),
            ("<=", Comparison::Le),
            ("==", Comparison::Eq),
            (">", Comparison::Gt),
            ("<", Comparison::Lt),
            ("=", Comparison::Eq),
        ]
        .into_iter()
        .find_map(|(p, op)| t.strip_prefix(p).map(|r| (op, r)))?;
        let value = rest.trim().parse().ok()?;
        Some(Threshold { op, value })
    }

    /// Whether `failures` meets the condition.
    pub fn holds(self, failures: u64) -> bool {
        match self.op {
            Comparison::Ne => failures != self.value,
            Comparison::Eq => failures == self.value,
            Comparison::Gt => failures > self.value,
            Comparison::Ge => failures >= self.value,
            Comparison::Lt => failures < self.value,
            Comparison::Le => failures <= self.value,
        }
    }
}

impl std::fmt::Display for Threshold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let op = match self.op {
            Comparison::Ne => "!=",
            Comparison::Eq => "=",
            Comparison::Gt => ">",
            Comparison::Ge => ">=",
            Comparison::Lt => "<",
            Comparison::Le => "<=",
        };
        write!(f, "{op} {}", self.value)
    }
}

/// A string or a list of strings.
pub fn as_strings(v: &Json) -> Vec<String> {
    match v {
        Json::String(s) => vec![s.clone()],
        Json::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// The `+key` settings of klines.yml `models:` (or `seeds:`) that apply to a node in
/// `folders` (its path below the model folder, without the file), project name first.
pub fn project_layer(tree: &Json, project: &str, folders: &[&str]) -> Map<String, Json> {
    let mut out = Map::new();
    let mut node = match tree.get(project) {
        Some(n) => n,
        None => return out,
    };
    let take = |n: &Json, out: &mut Map<String, Json>| {
        if let Some(m) = n.as_object() {
            for (k, v) in m {
                if let Some(key) = k.strip_prefix('+') {
                    out.insert(key.to_string(), v.clone());
                }
            }
        }
    };
    take(node, &mut out);
    for f in folders {
        match node.get(*f) {
            Some(n) => {
                node = n;
                take(node, &mut out);
            }
            None => break,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KINDS: &[&str] = &["view", "table", "incremental"];

    #[test]
    fn later_layers_win_and_tags_add_up() {
        let project = json!({"materialized": "table", "tags": ["a"]});
        let yml = json!({"tags": "b", "schema": "s"});
        let file = json!({"materialized": "incremental", "unique_key": ["symbol", "open_time"], "tags": ["a", "c"]});
        let c = NodeConfig::from_layers(
            Materialized::VIEW,
            KINDS,
            &[
                project.as_object().unwrap(),
                yml.as_object().unwrap(),
                file.as_object().unwrap(),
            ],
        )
        .unwrap();
        assert_eq!(c.materialized.as_str(), "incremental");
        assert_eq!(c.tags, ["a", "b", "c"]);
        assert_eq!(c.schema.as_deref(), Some("s"));
        assert_eq!(c.unique_key, ["symbol", "open_time"]);
        let bad = json!({"materialized": "snapshot"});
        let err = NodeConfig::from_layers(Materialized::VIEW, KINDS, &[bad.as_object().unwrap()])
            .unwrap_err();
        assert_eq!(
            err,
            "unknown materialization \"snapshot\" (view, table, incremental)"
        );
        for (bad, says) in [
            (
                json!({"incremental_strategy": "upsert"}),
                "unknown incremental_strategy \"upsert\"",
            ),
            (
                json!({"incremental_strategy": 3}),
                "unknown incremental_strategy 3",
            ),
            (json!({"enabled": "yes"}), "enabled must be true or false"),
            (json!({"unique_key": {"a": 1}}), "unique_key must be"),
            (json!({"event_time": 1}), "event_time must be a string"),
        ] {
            let err =
                NodeConfig::from_layers(Materialized::TABLE, KINDS, &[bad.as_object().unwrap()])
                    .unwrap_err();
            assert!(err.contains(says), "{err}");
        }
    }

    #[test]
    fn project_folders_configure_their_models() {
        let tree = json!({"klines": {"+materialized": "view", "marts": {"+materialized": "table", "+tags": ["mart"]}}});
        assert_eq!(project_layer(&tree, "klines", &[])["materialized"], "view");
        let marts = project_layer(&tree, "klines", &["marts", "deep"]);
        assert_eq!(marts["materialized"], "table");
        assert_eq!(marts["tags"], json!(["mart"]));
        assert!(project_layer(&tree, "other", &[]).is_empty());
    }
}
