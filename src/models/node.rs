//! A node of a project: a model, seed, test or source, as parsed, with what it depends on.

use super::config::NodeConfig;
use super::jinja::Relation;
use super::project::{ColumnDoc, TestDef};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ResourceType {
    Model,
    Seed,
    Test,
    Source,
}

impl ResourceType {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceType::Model => "model",
            ResourceType::Seed => "seed",
            ResourceType::Test => "test",
            ResourceType::Source => "source",
        }
    }
}

/// A data test: a generic one from yml, or a singular `.sql` file.
#[derive(Debug, Clone)]
pub struct TestSpec {
    pub def: TestDef,
    /// The node it tests (for generic tests).
    pub attached: Option<String>,
    pub column: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Node {
    pub unique_id: String,
    pub resource_type: ResourceType,
    pub name: String,
    /// The file, relative to the project directory.
    pub path: String,
    pub folders: Vec<String>,
    pub fqn: Vec<String>,
    pub raw_code: String,
    /// The template to render (models and singular tests).
    pub template: Option<String>,
    pub description: String,
    pub columns: Vec<ColumnDoc>,
    pub config: NodeConfig,
    pub refs: Vec<String>,
    pub sources: Vec<(String, String)>,
    pub depends_on: Vec<String>,
    pub schema: String,
    pub identifier: String,
    /// The quoted relation name (empty for ephemeral models and tests).
    pub relation: String,
    pub test: Option<TestSpec>,
    pub checksum: String,
}

impl Node {
    /// Where its compiled SQL goes under `target/compiled/<project>/`: the file itself, or for
    /// a generic test `<yml path>/<test name>.sql`, one file per test, as dbt does.
    pub fn compiled_path(&self) -> String {
        if self.resource_type == ResourceType::Test && !self.path.ends_with(".sql") {
            format!("{}/{}.sql", self.path, self.name)
        } else {
            self.path.clone()
        }
    }

    pub fn relation_object(&self) -> Relation {
        Relation {
            database: None,
            schema: self.schema.clone(),
            identifier: self.identifier.clone(),
            rendered: self.relation.clone(),
        }
    }
}
