//! Refs and sources resolved into dependencies; the graph (which must have no cycle); what
//! refs and sources compile to.

use std::collections::BTreeSet;

use super::{Parser, usage};
use crate::models::graph::Graph;
use crate::models::jinja::{Resolver, Target};
use crate::models::materializations;
use crate::models::node::{Node, ResourceType, TestSpec};

/// The 1-based line of the first `needle` in `text` (for errors about a ref or source).
fn line_of(text: &str, needle: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
}

fn at_line(line: Option<usize>) -> String {
    line.map(|l| format!(" line {l}")).unwrap_or_default()
}

impl Parser<'_> {
    /// Every node's `depends_on`: its refs, its sources, a relationships test's `to`.
    pub(super) fn dependencies(&mut self) -> anyhow::Result<()> {
        let ids: Vec<String> = self.nodes.keys().cloned().collect();
        for id in &ids {
            let deps = self.depends_on(&self.nodes[id])?;
            if let Some(n) = self.nodes.get_mut(id) {
                n.depends_on = deps.into_iter().collect();
            }
        }
        Ok(())
    }

    fn depends_on(&self, node: &Node) -> anyhow::Result<BTreeSet<String>> {
        let mut deps: BTreeSet<String> = node.depends_on.iter().cloned().collect();
        for r in &node.refs {
            let Some(d) = self.by_name.get(r) else {
                let line = line_of(&node.raw_code, &format!("'{r}'"))
                    .or_else(|| line_of(&node.raw_code, &format!("\"{r}\"")));
                return Err(usage(format!(
                    "{}{}: ref('{r}') does not match any model or seed",
                    node.path,
                    at_line(line)
                )));
            };
            deps.insert(d.clone());
        }
        for (s, t) in &node.sources {
            let Some(d) = self.sources.get(&(s.clone(), t.clone())) else {
                let line = line_of(&node.raw_code, &format!("'{t}'"));
                return Err(usage(format!(
                    "{}{}: source('{s}', '{t}') is not defined in any yml file",
                    node.path,
                    at_line(line)
                )));
            };
            deps.insert(d.clone());
        }
        if let Some(TestSpec { def, .. }) = &node.test
            && def.name == "relationships"
        {
            let to = def
                .args
                .get("to")
                .and_then(|v| v.as_str())
                .unwrap_or_default();
            let parent = crate::models::tests::parse_ref(to)
                .and_then(|n| self.by_name.get(&n).cloned())
                .ok_or_else(|| {
                    usage(format!(
                        "{}: {}: relationships `to: {to}` must be ref('a model or seed')",
                        node.path, node.name
                    ))
                })?;
            deps.insert(parent);
        }
        Ok(deps)
    }

    /// The dependency graph; a cycle is an error naming its nodes.
    pub(super) fn graph(&self) -> anyhow::Result<Graph> {
        let mut graph = Graph::default();
        for (id, n) in &self.nodes {
            graph.add_node(id);
            for d in &n.depends_on {
                graph.add_edge(d, id);
            }
        }
        if let Err(cycle) = graph.topological() {
            let path: Vec<String> = cycle
                .iter()
                .map(|id| format!("{} ({})", self.nodes[id].name, self.nodes[id].path))
                .collect();
            return Err(usage(format!("dependency cycle: {}", path.join(" -> "))));
        }
        Ok(graph)
    }

    /// What refs and sources resolve to when compiling.
    pub(super) fn resolver(&self) -> Resolver {
        let mut resolver = Resolver::default();
        for n in self.nodes.values() {
            let target = |n: &Node| Target::Relation {
                relation: n.relation_object(),
                event_time: n.config.event_time.clone(),
                batch_key: n.config.batch_key.clone(),
            };
            match n.resource_type {
                ResourceType::Model if materializations::inlined(&n.config) => {
                    resolver.refs.insert(
                        n.name.clone(),
                        Target::Ephemeral {
                            cte: format!("__klines_cte__{}", n.name),
                            unique_id: n.unique_id.clone(),
                        },
                    );
                }
                ResourceType::Model | ResourceType::Seed => {
                    resolver.refs.insert(n.name.clone(), target(n));
                }
                ResourceType::Source => {
                    let src = n.fqn[1].clone();
                    resolver.sources.insert((src, n.name.clone()), target(n));
                }
                ResourceType::Test => {}
            }
        }
        resolver
    }
}
