//! Models (`models/*.sql`) and seeds (`seeds/*.csv`): their configuration from the project's
//! folders, their yml and the file itself; their relation.

use serde_json::Value as Json;

use super::{Parser, kinds, schema_for, sha256, usage};
use crate::models::config::{Materialized, NodeConfig, project_layer};
use crate::models::jinja::NodeCtx;
use crate::models::materializations;
use crate::models::node::{Node, ResourceType};
use crate::models::project::SourceFile;
use crate::warehouse::ident;

impl Parser<'_> {
    pub(super) fn models(&mut self, models_tree: &Json) -> anyhow::Result<()> {
        for f in &self.files.models {
            if let Some(other) = self.by_name.get(&f.name) {
                let other_path = &self.nodes[other].path;
                return Err(usage(format!(
                    "{}: a model named {} is already defined in {other_path}",
                    f.path, f.name
                )));
            }
            if let Some(node) = self.model(f, models_tree)? {
                self.by_name.insert(f.name.clone(), node.unique_id.clone());
                self.nodes.insert(node.unique_id.clone(), node);
            }
        }
        Ok(())
    }

    /// A model's node; `None` when it is disabled.
    fn model(&self, f: &SourceFile, models_tree: &Json) -> anyhow::Result<Option<Node>> {
        let (kind, project) = (self.kind, &self.project);
        ident::validate(&f.name).map_err(|e| usage(format!("{}: model name: {e}", f.path)))?;
        let ctx = NodeCtx::parse(kind);
        self.jinja
            .render(&f.path, &ctx, None)
            .map_err(|e| usage(e.to_string()))?;
        let collected = ctx.take();
        let (_, doc) = self
            .files
            .model_docs
            .get(&f.name)
            .cloned()
            .unwrap_or_default();
        let folders: Vec<&str> = f.folders.iter().map(String::as_str).collect();
        let layer = project_layer(models_tree, project, &folders);
        let config = NodeConfig::from_layers(
            Materialized::VIEW,
            &kinds(),
            &[&layer, &doc.config, &collected.config],
        )
        .map_err(|e| usage(format!("{}: {e}", f.path)))?;
        if !config.enabled {
            return Ok(None);
        }
        if let Some(k) = materializations::find(config.materialized.as_str()) {
            k.check(&config)
                .map_err(|e| usage(format!("{}: {e}", f.path)))?;
        }
        let schema = schema_for(self.target_schema, config.schema.as_deref());
        let identifier = config.alias.clone().unwrap_or_else(|| f.name.clone());
        for (what, id) in [("schema", &schema), ("alias", &identifier)] {
            ident::validate(id).map_err(|e| usage(format!("{}: {what}: {e}", f.path)))?;
        }
        let relation = if materializations::inlined(&config) {
            String::new()
        } else {
            ident::relation(kind, &schema, &identifier)
        };
        let mut fqn = vec![project.clone()];
        fqn.extend(f.folders.iter().cloned());
        fqn.push(f.name.clone());
        Ok(Some(Node {
            unique_id: format!("model.{project}.{}", f.name),
            resource_type: ResourceType::Model,
            name: f.name.clone(),
            path: f.path.clone(),
            folders: f.folders.clone(),
            fqn,
            raw_code: f.text.clone(),
            template: Some(f.path.clone()),
            description: doc.description.clone(),
            columns: doc.columns.clone(),
            config,
            refs: collected.refs,
            sources: collected.sources,
            depends_on: Vec::new(),
            schema,
            identifier,
            relation,
            test: None,
            checksum: sha256(&f.text),
        }))
    }

    pub(super) fn seeds(&mut self, seeds_tree: &Json) -> anyhow::Result<()> {
        let (kind, project) = (self.kind, self.project.clone());
        for f in &self.files.seeds {
            if let Some(other) = self.by_name.get(&f.name) {
                return Err(usage(format!(
                    "{}: the name {} is already used by {}",
                    f.path, f.name, self.nodes[other].path
                )));
            }
            ident::validate(&f.name).map_err(|e| usage(format!("{}: seed name: {e}", f.path)))?;
            let (_, doc) = self
                .files
                .seed_docs
                .get(&f.name)
                .cloned()
                .unwrap_or_default();
            let folders: Vec<&str> = f.folders.iter().map(String::as_str).collect();
            let layer = project_layer(seeds_tree, &project, &folders);
            let config =
                NodeConfig::from_layers(Materialized::SEED, &kinds(), &[&layer, &doc.config])
                    .map_err(|e| usage(format!("{}: {e}", f.path)))?;
            let schema = schema_for(self.target_schema, config.schema.as_deref());
            let identifier = config.alias.clone().unwrap_or_else(|| f.name.clone());
            let unique_id = format!("seed.{project}.{}", f.name);
            self.nodes.insert(
                unique_id.clone(),
                Node {
                    unique_id: unique_id.clone(),
                    resource_type: ResourceType::Seed,
                    name: f.name.clone(),
                    path: f.path.clone(),
                    folders: f.folders.clone(),
                    fqn: vec![project.clone(), f.name.clone()],
                    raw_code: f.text.clone(),
                    template: None,
                    description: doc.description.clone(),
                    columns: doc.columns.clone(),
                    config,
                    refs: Vec::new(),
                    sources: Vec::new(),
                    depends_on: Vec::new(),
                    relation: ident::relation(kind, &schema, &identifier),
                    schema,
                    identifier,
                    test: None,
                    checksum: sha256(&f.text),
                },
            );
            self.by_name.insert(f.name.clone(), unique_id);
        }
        Ok(())
    }
}
