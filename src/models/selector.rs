//! Node selection as in dbt: `name`, `path/or/dir`, `path:models/x`, `tag:x`,
//! `source:name.table`, `resource_type:model`, with `+` for ancestors (`+name`, `2+name`) and
//! descendants (`name+`, `name+1`). Space-separated selectors add up; comma-separated ones
//! intersect. `--exclude` takes the same syntax.
//!
//! Tests are also selected *indirectly*, as dbt does (`--indirect-selection`, default
//! `eager`): selecting a model selects the tests on it. `cautious` takes only tests whose
//! parents are all selected, `buildable` those whose parents are selected or their ancestors,
//! `empty` none. A test any of whose parents is excluded is excluded, in every mode.

use std::collections::BTreeSet;

use super::node::ResourceType;
use super::parse::Parsed;
use crate::error::UsageError;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Atom {
    up: Option<Option<usize>>,
    down: Option<Option<usize>>,
    method: String,
    value: String,
}

fn parse_atom(s: &str) -> Result<Atom, String> {
    let mut rest = s;
    let mut up = None;
    // Leading `N+` or `+`.
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    if rest[digits.len()..].starts_with('+') {
        up = Some(if digits.is_empty() {
            None
        } else {
            Some(digits.parse().map_err(|_| format!("bad depth in {s:?}"))?)
        });
        rest = &rest[digits.len() + 1..];
    }
    let mut down = None;
    if let Some(pos) = rest.rfind('+') {
        let tail = &rest[pos + 1..];
        if tail.chars().all(|c| c.is_ascii_digit()) {
            down = Some(if tail.is_empty() {
                None
            } else {
                Some(tail.parse().map_err(|_| format!("bad depth in {s:?}"))?)
            });
            rest = &rest[..pos];
        }
    }
    if rest.is_empty() {
        return Err(format!("empty selector {s:?}"));
    }
    let (method, value) = match rest.split_once(':') {
        Some((m, v)) => (m.to_string(), v.to_string()),
        None if rest.contains('/') || rest.ends_with(".sql") || rest.ends_with(".csv") => {
            ("path".to_string(), rest.to_string())
        }
        None => ("name".to_string(), rest.to_string()),
    };
    Ok(Atom {
        up,
        down,
        method,
        value,
    })
}

fn matches(p: &Parsed, atom: &Atom) -> Result<BTreeSet<String>, String> {
    let mut out = direct(p, atom)?;
    if out.is_empty() && atom.method == "name" {
        // `klines run models`: a bare word that names no node may be a folder.
        out = direct(
            p,
            &Atom {
                method: "path".into(),
                ..atom.clone()
            },
        )?;
    }
    if matches!(atom.method.as_str(), "name" | "path" | "file") && out.is_empty() {
        return Err(format!("selector {:?} matches nothing", atom.value));
    }
    let mut grown = out.clone();
    for id in &out {
        if let Some(depth) = atom.up {
            grown.extend(p.graph.ancestors(id, depth));
        }
        if let Some(depth) = atom.down {
            grown.extend(p.graph.descendants(id, depth));
        }
    }
    Ok(grown)
}

fn direct(p: &Parsed, atom: &Atom) -> Result<BTreeSet<String>, String> {
    let mut out = BTreeSet::new();
    for (id, n) in &p.nodes {
        let hit = match atom.method.as_str() {
            "name" => {
                n.name == atom.value
                    // dbt's fqn method: what `klines ls` prints (`klines.ohlc.TRADES_OHLC_5M`).
                    || n.fqn.join(".") == atom.value
                    || (n.resource_type == ResourceType::Source
                        && format!("{}.{}", n.fqn[1], n.name) == atom.value)
            }
            "path" | "file" => {
                let v = atom.value.trim_end_matches('/');
                n.resource_type != ResourceType::Source
                    && n.resource_type != ResourceType::Test
                    && (n.path == v || n.path.starts_with(&format!("{v}/")))
            }
            "tag" => n.config.tags.iter().any(|t| *t == atom.value),
            "source" => {
                n.resource_type == ResourceType::Source
                    && (format!("{}.{}", n.fqn[1], n.name) == atom.value || n.fqn[1] == atom.value)
            }
            "resource_type" => n.resource_type.as_str() == atom.value,
            "config.materialized" => n.config.materialized.as_str() == atom.value,
            "test_name" => n.test.as_ref().is_some_and(|t| t.def.name == atom.value),
            other => return Err(format!("unknown selector method {other:?}")),
        };
        if hit {
            out.insert(id.clone());
        }
    }
    Ok(out)
}

/// Which tests a selection brings along (dbt's `--indirect-selection`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum IndirectSelection {
    /// Every test on a selected node.
    #[default]
    Eager,
    /// Tests whose parents are all selected.
    Cautious,
    /// Tests whose parents are all selected or ancestors of the selection.
    Buildable,
    /// No test unless it is selected itself.
    Empty,
}

/// The tests that `indirect` adds to `chosen`.
fn indirect_tests(
    p: &Parsed,
    chosen: &BTreeSet<String>,
    indirect: IndirectSelection,
) -> BTreeSet<String> {
    let buildable: BTreeSet<String> = if indirect == IndirectSelection::Buildable {
        chosen
            .iter()
            .flat_map(|id| p.graph.ancestors(id, None))
            .chain(chosen.iter().cloned())
            .collect()
    } else {
        BTreeSet::new()
    };
    p.nodes
        .iter()
        .filter(|(id, n)| n.resource_type == ResourceType::Test && !chosen.contains(*id))
        .filter(|(_, n)| {
            let parents = || n.depends_on.iter();
            match indirect {
                IndirectSelection::Eager => parents().any(|d| chosen.contains(d)),
                IndirectSelection::Cautious => {
                    !n.depends_on.is_empty() && parents().all(|d| chosen.contains(d))
                }
                IndirectSelection::Buildable => {
                    parents().any(|d| chosen.contains(d))
                        && parents().all(|d| buildable.contains(d))
                }
                IndirectSelection::Empty => false,
            }
        })
        .map(|(id, _)| id.clone())
        .collect()
}

/// The nodes `select` (all nodes if empty) with the tests `indirect` brings along, minus
/// `exclude` and the tests on excluded nodes.
pub fn select(
    p: &Parsed,
    select: &[String],
    exclude: &[String],
    indirect: IndirectSelection,
) -> anyhow::Result<BTreeSet<String>> {
    let eval = |specs: &[String]| -> Result<BTreeSet<String>, String> {
        let mut out = BTreeSet::new();
        for spec in specs.iter().flat_map(|s| s.split_whitespace()) {
            let mut set: Option<BTreeSet<String>> = None;
            for part in spec.split(',') {
                let m = matches(p, &parse_atom(part)?)?;
                set = Some(match set {
                    None => m,
                    Some(s) => s.intersection(&m).cloned().collect(),
                });
            }
            out.extend(set.unwrap_or_default());
        }
        Ok(out)
    };
    let mut chosen = if select.iter().all(|s| s.trim().is_empty()) {
        p.nodes.keys().cloned().collect()
    } else {
        eval(select).map_err(|e| UsageError(format!("--select: {e}")))?
    };
    chosen.extend(indirect_tests(p, &chosen, indirect));
    let mut excluded = eval(exclude).map_err(|e| UsageError(format!("--exclude: {e}")))?;
    let on_excluded: Vec<String> = p
        .nodes
        .iter()
        .filter(|(_, n)| {
            n.resource_type == ResourceType::Test
                && n.depends_on.iter().any(|d| excluded.contains(d))
        })
        .map(|(id, _)| id.clone())
        .collect();
    excluded.extend(on_excluded);
    Ok(chosen.difference(&excluded).cloned().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_graph_operators() {
        let a = parse_atom("+TRADES_OHLC_5M").unwrap();
        assert_eq!(
            (a.up, a.down, a.method.as_str()),
            (Some(None), None, "name")
        );
        let a = parse_atom("2+x+1").unwrap();
        assert_eq!((a.up, a.down), (Some(Some(2)), Some(Some(1))));
        let a = parse_atom("tag:ohlc+").unwrap();
        assert_eq!(
            (a.method.as_str(), a.value.as_str(), a.down),
            ("tag", "ohlc", Some(None))
        );
        assert_eq!(parse_atom("models/marts").unwrap().method, "path");
        assert!(parse_atom("+").is_err());
    }
}
