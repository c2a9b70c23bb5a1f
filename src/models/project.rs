//! Reading a models project from disk: `models/**/*.sql` and their `*.yml` (sources, model
//! docs, columns, tests), `macros/*.sql`, `seeds/*.csv` and singular tests in `data_tests/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;
use serde_json::{Map, Value as Json};

use crate::config::Project;
use crate::error::UsageError;

/// A test as written in yml: `not_null` or `{accepted_values: {values: [...]}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct TestDef {
    pub name: String,
    pub args: Map<String, Json>,
}

impl<'de> Deserialize<'de> for TestDef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Json::deserialize(d)?;
        match v {
            Json::String(name) => Ok(TestDef {
                name,
                args: Map::new(),
            }),
            Json::Object(m) if m.len() == 1 => {
                let (name, args) = m.into_iter().next().expect("one entry");
                let args = match args {
                    Json::Object(a) => a,
                    Json::Null => Map::new(),
                    other => {
                        return Err(serde::de::Error::custom(format!(
                            "test {name}: expected a mapping, got {other}"
                        )));
                    }
                };
                Ok(TestDef { name, args })
            }
            other => Err(serde::de::Error::custom(format!(
                "a test is a name or a one-key mapping, got {other}"
            ))),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ColumnDoc {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub data_type: Option<String>,
    #[serde(default, alias = "data_tests")]
    pub tests: Vec<TestDef>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ModelDoc {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub config: Map<String, Json>,
    #[serde(default)]
    pub columns: Vec<ColumnDoc>,
    #[serde(default, alias = "data_tests")]
    pub tests: Vec<TestDef>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct SourceTableDoc {
    pub name: String,
    #[serde(default)]
    pub identifier: Option<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub config: Map<String, Json>,
    #[serde(default)]
    pub columns: Vec<ColumnDoc>,
    #[serde(default, alias = "data_tests")]
    pub tests: Vec<TestDef>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct SourceDoc {
    pub name: String,
    #[serde(default)]
    pub schema: Option<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub config: Map<String, Json>,
    #[serde(default)]
    pub tables: Vec<SourceTableDoc>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct YmlFile {
    #[serde(default)]
    #[allow(dead_code)]
    version: Option<Json>,
    #[serde(default)]
    sources: Vec<SourceDoc>,
    #[serde(default)]
    models: Vec<ModelDoc>,
    #[serde(default)]
    seeds: Vec<ModelDoc>,
}

/// A file of the project, with its path relative to the project directory.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: String,
    /// Folders between the resource folder and the file (for klines.yml folder configs).
    pub folders: Vec<String>,
    pub name: String,
    pub text: String,
}

/// Everything read from disk, before any Jinja.
#[derive(Debug, Clone, Default)]
pub struct Files {
    pub models: Vec<SourceFile>,
    pub macros: Vec<SourceFile>,
    pub seeds: Vec<SourceFile>,
    pub singular_tests: Vec<SourceFile>,
    /// yml docs by model (or seed) name, with the yml file they came from.
    pub model_docs: BTreeMap<String, (String, ModelDoc)>,
    pub seed_docs: BTreeMap<String, (String, ModelDoc)>,
    pub sources: Vec<(String, SourceDoc)>,
}

fn rel(project_dir: &Path, p: &Path) -> String {
    p.strip_prefix(project_dir)
        .unwrap_or(p)
        .to_string_lossy()
        .replace('\\', "/")
}

/// Every file below `dir` with one of `exts`, sorted by path.
fn walk(dir: &Path, exts: &[&str]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    if !dir.exists() {
        return Ok(out);
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("cannot read {}", d.display()))? {
            let p = e?.path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if name.starts_with('.') {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else if p
                .extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| exts.contains(&x))
            {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn read(project_dir: &Path, root: &Path, p: &Path) -> anyhow::Result<SourceFile> {
    let text =
        std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
    let folders = p
        .parent()
        .and_then(|d| d.strip_prefix(root).ok())
        .map(|d| d.iter().map(|c| c.to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    Ok(SourceFile {
        path: rel(project_dir, p),
        folders,
        name: p
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string(),
        text,
    })
}

/// Reads the project's model, macro, seed and test folders.
pub fn read_files(project: &Project) -> anyhow::Result<Files> {
    let mut files = Files::default();
    for root in project.model_paths.iter().map(|p| project.path(p)) {
        for p in walk(&root, &["sql"])? {
            files.models.push(read(&project.dir, &root, &p)?);
        }
        for p in walk(&root, &["yml", "yaml"])? {
            let name = rel(&project.dir, &p);
            let text =
                std::fs::read_to_string(&p).with_context(|| format!("cannot read {name}"))?;
            let yml: YmlFile = if text.trim().is_empty() {
                YmlFile::default()
            } else {
                yaml_serde::from_str(&text).map_err(|e| UsageError(format!("{name}: {e}")))?
            };
            for m in yml.models {
                if let Some((other, _)) = files.model_docs.get(&m.name) {
                    return Err(UsageError(format!(
                        "{name}: model {} is also described in {other}",
                        m.name
                    ))
                    .into());
                }
                files.model_docs.insert(m.name.clone(), (name.clone(), m));
            }
            for s in yml.seeds {
                files.seed_docs.insert(s.name.clone(), (name.clone(), s));
            }
            for s in yml.sources {
                files.sources.push((name.clone(), s));
            }
        }
    }
    for root in project.macro_paths.iter().map(|p| project.path(p)) {
        for p in walk(&root, &["sql"])? {
            files.macros.push(read(&project.dir, &root, &p)?);
        }
    }
    for root in project.seed_paths.iter().map(|p| project.path(p)) {
        for p in walk(&root, &["csv"])? {
            files.seeds.push(read(&project.dir, &root, &p)?);
        }
        for p in walk(&root, &["yml", "yaml"])? {
            let name = rel(&project.dir, &p);
            let text =
                std::fs::read_to_string(&p).with_context(|| format!("cannot read {name}"))?;
            let yml: YmlFile =
                yaml_serde::from_str(&text).map_err(|e| UsageError(format!("{name}: {e}")))?;
            for s in yml.seeds {
                files.seed_docs.insert(s.name.clone(), (name.clone(), s));
            }
        }
    }
    for root in project.test_paths.iter().map(|p| project.path(p)) {
        for p in walk(&root, &["sql"])? {
            files.singular_tests.push(read(&project.dir, &root, &p)?);
        }
    }
    Ok(files)
}
