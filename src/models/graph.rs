//! The dependency graph of nodes, from `ref()` and `source()`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

#[derive(Debug, Clone, Default)]
pub struct Graph {
    pub parents: BTreeMap<String, BTreeSet<String>>,
    pub children: BTreeMap<String, BTreeSet<String>>,
}

impl Graph {
    pub fn add_node(&mut self, id: &str) {
        self.parents.entry(id.to_string()).or_default();
        self.children.entry(id.to_string()).or_default();
    }

    /// `child` depends on `parent`.
    pub fn add_edge(&mut self, parent: &str, child: &str) {
        self.add_node(parent);
        self.add_node(child);
        self.parents
            .get_mut(child)
            .map(|p| p.insert(parent.to_string()));
        self.children
            .get_mut(parent)
            .map(|c| c.insert(child.to_string()));
    }

    /// Nodes in dependency order (parents first, ties by id), or a cycle as a path that ends
    /// where it starts.
    pub fn topological(&self) -> Result<Vec<String>, Vec<String>> {
        let mut indegree: BTreeMap<&str, usize> = self
            .parents
            .iter()
            .map(|(k, p)| (k.as_str(), p.len()))
            .collect();
        let mut ready: BTreeSet<&str> = indegree
            .iter()
            .filter(|(_, d)| **d == 0)
            .map(|(k, _)| *k)
            .collect();
        let mut order = Vec::with_capacity(indegree.len());
        while let Some(n) = ready.pop_first() {
            order.push(n.to_string());
            for c in self.children.get(n).into_iter().flatten() {
                let d = indegree.get_mut(c.as_str()).expect("child is a node");
                *d -= 1;
                if *d == 0 {
                    ready.insert(c.as_str());
                }
            }
        }
        if order.len() == indegree.len() {
            return Ok(order);
        }
        let stuck: BTreeSet<&str> = indegree
            .iter()
            .filter(|(_, d)| **d > 0)
            .map(|(k, _)| *k)
            .collect();
        Err(self.find_cycle(&stuck))
    }

    /// A cycle among `nodes` (each has a parent among them): walk parents until one repeats.
    fn find_cycle(&self, nodes: &BTreeSet<&str>) -> Vec<String> {
        let Some(&start) = nodes.iter().next() else {
            return Vec::new();
        };
        let mut path: Vec<&str> = vec![start];
        let mut seen: BTreeMap<&str, usize> = BTreeMap::from([(start, 0)]);
        let mut cur = start;
        loop {
            let next = self.parents[cur]
                .iter()
                .map(String::as_str)
                .find(|p| nodes.contains(p))
                .expect("a stuck node has a stuck parent");
            if let Some(&i) = seen.get(next) {
                let mut cycle: Vec<String> =
                    path[i..].iter().rev().map(|s| s.to_string()).collect();
                cycle.push(cycle[0].clone());
                return cycle;
            }
            seen.insert(next, path.len());
            path.push(next);
            cur = next;
        }
    }

    /// `id` and everything upstream of it, up to `depth` steps (`None`: all).
    pub fn ancestors(&self, id: &str, depth: Option<usize>) -> BTreeSet<String> {
        self.walk(id, depth, &self.parents)
    }

    /// `id` and everything downstream of it, up to `depth` steps.
    pub fn descendants(&self, id: &str, depth: Option<usize>) -> BTreeSet<String> {
        self.walk(id, depth, &self.children)
    }

    fn walk(
        &self,
        id: &str,
        depth: Option<usize>,
        edges: &BTreeMap<String, BTreeSet<String>>,
    ) -> BTreeSet<String> {
        let mut out = BTreeSet::from([id.to_string()]);
        let mut queue = VecDeque::from([(id.to_string(), 0usize)]);
        while let Some((n, d)) = queue.pop_front() {
            if depth.is_some_and(|max| d >= max) {
                continue;
            }
            for next in edges.get(&n).into_iter().flatten() {
                if out.insert(next.clone()) {
                    queue.push_back((next.clone(), d + 1));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_parents_first_and_finds_cycles() {
        let mut g = Graph::default();
        g.add_edge("a", "b");
        g.add_edge("b", "c");
        g.add_edge("a", "c");
        g.add_node("z");
        assert_eq!(g.topological().unwrap(), ["a", "b", "c", "z"]);
        assert_eq!(
            g.ancestors("c", None),
            BTreeSet::from(["a".into(), "b".into(), "c".into()])
        );
        assert_eq!(
            g.descendants("a", Some(1)),
            BTreeSet::from(["a".into(), "b".into(), "c".into()])
        );
        assert_eq!(
            g.descendants("b", None),
            BTreeSet::from(["b".into(), "c".into()])
        );
        g.add_edge("c", "a");
        let cycle = g.topological().unwrap_err();
        assert_eq!(cycle.first(), cycle.last());
        assert!(cycle.len() >= 3, "{cycle:?}");
        for w in cycle.windows(2) {
            assert!(g.children[&w[0]].contains(&w[1]), "{cycle:?}");
        }
    }
}
