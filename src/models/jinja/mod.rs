//! Jinja through minijinja, with dbt's surface: `ref()`, `source()`, `config()`,
//! `is_incremental()`, `this`, `var()`, `env_var()`, `target`, macros from `macros/` callable
//! by name in every model, and `adapter.dispatch()` for per-warehouse macro variants.
//!
//! A model is rendered twice: at parse time, when `ref`/`source`/`config` only record what the
//! model uses, and at compile time, when they return relations (filtered to the batch's time
//! ranges during an incremental run).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};

use minijinja::value::{Kwargs, Object, ObjectRepr, Rest};
use minijinja::{Environment, Error, ErrorKind, State, UndefinedBehavior, Value};
use serde_json::{Map, Value as Json};

use crate::ranges::RangeSet;
use crate::warehouse::DialectRef;
use crate::warehouse::dialect::timestamp_literal;
use crate::warehouse::ident;

pub const MACROS: &str = "__macros__";

mod adapter;
mod context;
mod error;

use adapter::*;
use context::*;
pub use context::{BatchFilter, Collected, NodeCtx, Relation, Resolver, Target};
pub use error::RenderError;

/// What every template sees.
#[derive(Debug, Clone)]
pub struct Globals {
    pub kind: DialectRef,
    pub project_name: String,
    /// `target`: name, type, schema, raw_schema, profile_name, threads.
    pub target: BTreeMap<String, Json>,
    /// klines.yml `vars` under `--vars`.
    pub vars: BTreeMap<String, Json>,
    pub invocation_id: String,
    pub run_started_at: String,
}

/// The compiled templates of a project.
pub struct Jinja {
    env: Environment<'static>,
    /// Macro files as concatenated into [`MACROS`]: (path, first line, line count).
    macro_files: Vec<(String, usize, usize)>,
}

impl Jinja {
    /// `templates`: (name, source) of every model and test; `macros`: (path, source).
    pub fn new(
        globals: &Globals,
        macros: &[(String, String)],
        templates: &[(String, String)],
    ) -> Result<Jinja, RenderError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .build()
        {
            env.set_syntax(syntax);
        }
        env.add_function("ref", ref_fn);
        env.add_function("source", source_fn);
        env.add_function("config", config_fn);
        env.add_function("is_incremental", |state: &State| -> Result<bool, Error> {
            Ok(node(state).map(|n| n.is_incremental).unwrap_or(false))
        });
        let vars = globals.vars.clone();
        env.add_function(
            "var",
            move |name: String, default: Option<Value>| -> Result<Value, Error> {
                match vars.get(&name) {
                    Some(v) => Ok(Value::from(minijinja::value::Serde(v))),
                    None => default.ok_or_else(|| {
                        Error::new(
                            ErrorKind::UndefinedError,
                            format!("var('{name}') is not defined and has no default"),
                        )
                    }),
                }
            },
        );
        env.add_function("env_var", |name: &str, default: Option<&str>| {
            crate::config::template::env_var(name, default)
        });
        env.add_function("log", |msg: Value, _rest: Rest<Value>| -> Value {
            tracing::info!("{msg}");
            Value::from("")
        });
        env.add_global(
            "target",
            Value::from(minijinja::value::Serde(&globals.target)),
        );
        env.add_global(
            "adapter",
            Value::from_object(Adapter { kind: globals.kind }),
        );
        env.add_global("exceptions", Value::from_object(Exceptions));
        env.add_global("project_name", Value::from(globals.project_name.clone()));
        env.add_global("invocation_id", Value::from(globals.invocation_id.clone()));
        env.add_global(
            "run_started_at",
            Value::from(globals.run_started_at.clone()),
        );

        let mut macro_source = String::new();
        let mut macro_files = Vec::new();
        let mut line = 1;
        for (path, text) in macros {
            let n = text.lines().count().max(1);
            macro_files.push((path.clone(), line, n));
            macro_source.push_str(text);
            if !text.ends_with('\n') {
                macro_source.push('\n');
            }
            line += n;
        }
        let macro_names = macro_names(&macro_source);
        let this = Jinja {
            env: Environment::new(),
            macro_files,
        };
        env.add_template_owned(MACROS, macro_source.clone())
            .map_err(|e| this.error_in(MACROS, e, Some(&macro_source)))?;
        // Every model imports every macro by name, on its first line so that lines still match.
        let prelude = if macro_names.is_empty() {
            String::new()
        } else {
            format!(
                "{{%- from \"{MACROS}\" import {} -%}}",
                macro_names.join(", ")
            )
        };
        for (name, text) in templates {
            let source = format!("{prelude}{text}");
            env.add_template_owned(name.clone(), source.clone())
                .map_err(|e| this.error_in(name, e, Some(&source)))?;
        }
        Ok(Jinja {
            env,
            macro_files: this.macro_files,
        })
    }

    /// Renders a template for `node`, with `this` set to the node's relation.
    pub fn render(
        &self,
        template: &str,
        node: &Arc<NodeCtx>,
        this: Option<&Relation>,
    ) -> Result<String, RenderError> {
        let t = self
            .env
            .get_template(template)
            .map_err(|e| self.error(template, e))?;
        let this = this
            .cloned()
            .map(Value::from_object)
            .unwrap_or(Value::from(()));
        let ctx = minijinja::context! { __node => Value::from_dyn_object(Arc::clone(node)), this => this };
        t.render(ctx).map_err(|e| self.error(template, e))
    }

    /// Renders a string (yml values such as a source's schema).
    pub fn render_str(&self, name: &str, text: &str) -> Result<String, RenderError> {
        if !text.contains("{{") && !text.contains("{%") {
            return Ok(text.to_string());
        }
        self.env
            .render_str(text, minijinja::context! {})
            .map_err(|e| self.error(name, e))
    }
}

/// The names of the macros a source defines (`{% macro name(...) %}`).
fn macro_names(source: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = source;
    while let Some(i) = rest.find("{%") {
        rest = &rest[i + 2..];
        let body = rest.trim_start_matches(['-', '+']).trim_start();
        if let Some(after) = body.strip_prefix("macro") {
            let name: String = after
                .trim_start()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && !out.contains(&name) && after.starts_with(char::is_whitespace) {
                out.push(name);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn globals() -> Globals {
        let mut target = BTreeMap::new();
        target.insert("schema".to_string(), Json::from("main"));
        target.insert("type".to_string(), Json::from("duckdb"));
        Globals {
            kind: &crate::warehouse::duckdb::DIALECT,
            project_name: "p".into(),
            target,
            vars: BTreeMap::from([("market".to_string(), Json::from("spot"))]),
            invocation_id: "x".into(),
            run_started_at: "t".into(),
        }
    }

    #[test]
    fn parsing_records_refs_sources_and_config() {
        let j = Jinja::new(
            &globals(),
            &[],
            &[("m.sql".into(), "{{ config(materialized='table', tags=['a']) }}select * from {{ ref('a') }} join {{ source('s', 't') }} where m = '{{ var('market') }}'".into())],
        )
        .unwrap();
        let n = NodeCtx::parse(&crate::warehouse::duckdb::DIALECT);
        let out = j.render("m.sql", &n, None).unwrap();
        assert!(out.contains("__ref_a__") && out.contains("'spot'"), "{out}");
        let c = n.take();
        assert_eq!(c.refs, ["a"]);
        assert_eq!(c.sources, [("s".to_string(), "t".to_string())]);
        assert_eq!(c.config["materialized"], "table");
        assert_eq!(c.config["tags"], serde_json::json!(["a"]));
    }

    #[test]
    fn dispatch_picks_the_adapter_variant_of_a_macro() {
        let macros = vec![(
            "macros/x.sql".to_string(),
            "{% macro first(c) %}{{ adapter.dispatch('first')(c) }}{% endmacro %}\n{% macro default__first(c) %}min({{ c }}){% endmacro %}\n{% macro duckdb__first(c) %}arg_min({{ c }}){% endmacro %}\n".to_string(),
        )];
        let j = Jinja::new(
            &globals(),
            &macros,
            &[(
                "m.sql".into(),
                "select {{ first('x') }}, {{ adapter.quote('interval') }}".into(),
            )],
        )
        .unwrap();
        assert_eq!(
            j.render(
                "m.sql",
                &NodeCtx::parse(&crate::warehouse::duckdb::DIALECT),
                None
            )
            .unwrap(),
            "select arg_min(x), \"interval\""
        );
    }

    #[test]
    fn an_error_in_a_macro_names_the_macro_file_and_where_it_was_called() {
        let j = Jinja::new(
            &globals(),
            &[
                (
                    "macros/a.sql".into(),
                    "{% macro a() %}1{% endmacro %}\n".into(),
                ),
                (
                    "macros/b.sql".into(),
                    "{# b #}\n{% macro b(x) %}\n{{ x.nope.deeper }}\n{% endmacro %}\n".into(),
                ),
            ],
            &[("models/m.sql".into(), "select\n{{ b(1) }}\n".into())],
        )
        .unwrap();
        let e = j
            .render(
                "models/m.sql",
                &NodeCtx::parse(&crate::warehouse::duckdb::DIALECT),
                None,
            )
            .unwrap_err();
        assert_eq!((e.file.as_str(), e.line), ("macros/b.sql", Some(3)), "{e}");
        assert!(e.detail.contains("called from models/m.sql"), "{e}");
        assert!(e.detail.contains("3 > | {{ x.nope.deeper }}"), "{e}");
        assert!(
            !e.detail.contains("macro a()"),
            "another macro file's lines: {e}"
        );
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let j = Jinja::new(
            &globals(),
            &[],
            &[(
                "models/m.sql".into(),
                "select 1\nfrom x\nwhere {{ nope('a') }}".into(),
            )],
        )
        .unwrap();
        let e = j
            .render(
                "models/m.sql",
                &NodeCtx::parse(&crate::warehouse::duckdb::DIALECT),
                None,
            )
            .unwrap_err();
        assert_eq!((e.file.as_str(), e.line), ("models/m.sql", Some(3)));
        assert!(e.to_string().starts_with("models/m.sql line 3: "), "{e}");
        // The snippet: the lines before, the failing one marked, its expression underlined.
        assert_eq!(
            e.detail,
            "1   | select 1\n2   | from x\n3 > | where {{ nope('a') }}\n    |          ^^^^^^^^^"
        );
        let e = Jinja::new(
            &globals(),
            &[],
            &[("models/b.sql".into(), "select 1\n{% if %}".into())],
        )
        .err()
        .unwrap();
        assert_eq!((e.file.as_str(), e.line), ("models/b.sql", Some(2)));
        let e = j.render(
            "models/m.sql",
            &NodeCtx::compile(
                &crate::warehouse::duckdb::DIALECT,
                Arc::new(Resolver::default()),
                false,
                None,
            ),
            None,
        );
        assert!(e.is_err());
    }
}
