//! Sources declared in yml: one node per table, in its schema.

use super::{Parser, kinds, usage};
use crate::models::config::{Materialized, NodeConfig};
use crate::models::node::{Node, ResourceType};
use crate::warehouse::ident;

impl Parser<'_> {
    pub(super) fn sources(&mut self) -> anyhow::Result<()> {
        let (kind, project) = (self.kind, self.project.clone());
        for (path, s) in &self.files.sources {
            let schema = match &s.schema {
                Some(text) => self
                    .jinja
                    .render_str(path, text)
                    .map_err(|e| usage(e.to_string()))?,
                None => s.name.clone(),
            };
            ident::validate(&schema)
                .map_err(|e| usage(format!("{path}: source {}: schema: {e}", s.name)))?;
            for t in &s.tables {
                let identifier = t.identifier.clone().unwrap_or_else(|| t.name.clone());
                ident::validate(&identifier)
                    .map_err(|e| usage(format!("{path}: source {}.{}: {e}", s.name, t.name)))?;
                let unique_id = format!("source.{project}.{}.{}", s.name, t.name);
                let config =
                    NodeConfig::from_layers(Materialized::TABLE, &kinds(), &[&s.config, &t.config])
                        .map_err(|e| usage(format!("{path}: source {}.{}: {e}", s.name, t.name)))?;
                self.nodes.insert(
                    unique_id.clone(),
                    Node {
                        unique_id: unique_id.clone(),
                        resource_type: ResourceType::Source,
                        name: t.name.clone(),
                        path: path.clone(),
                        folders: Vec::new(),
                        fqn: vec![project.clone(), s.name.clone(), t.name.clone()],
                        raw_code: String::new(),
                        template: None,
                        description: t.description.clone(),
                        columns: t.columns.clone(),
                        config,
                        refs: Vec::new(),
                        sources: Vec::new(),
                        depends_on: Vec::new(),
                        relation: ident::relation(kind, &schema, &identifier),
                        schema: schema.clone(),
                        identifier,
                        test: None,
                        checksum: String::new(),
                    },
                );
                self.sources
                    .insert((s.name.clone(), t.name.clone()), unique_id);
            }
        }
        Ok(())
    }
}
