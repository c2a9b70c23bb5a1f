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
use crate::warehouse::ident;
use crate::warehouse::{Kind, raw};

pub const MACROS: &str = "__macros__";

/// A relation as templates see it: renders as its quoted name (or a filtered subquery).
#[derive(Debug, Clone)]
pub struct Relation {
    pub database: Option<String>,
    pub schema: String,
    pub identifier: String,
    pub rendered: String,
}

impl Object for Relation {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "schema" => Some(Value::from(self.schema.clone())),
            "identifier" | "name" | "table" => Some(Value::from(self.identifier.clone())),
            "database" => Some(
                self.database
                    .clone()
                    .map(Value::from)
                    .unwrap_or(Value::from(())),
            ),
            _ => None,
        }
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rendered)
    }
}

/// What a `ref()` or `source()` resolves to at compile time.
#[derive(Debug, Clone)]
pub enum Target {
    Relation {
        relation: Relation,
        event_time: Option<String>,
        batch_key: Option<String>,
    },
    /// An ephemeral model, inlined as a CTE of this name.
    Ephemeral { cte: String, unique_id: String },
}

/// Names to relations, for compiling.
#[derive(Debug, Default)]
pub struct Resolver {
    pub refs: HashMap<String, Target>,
    pub sources: HashMap<(String, String), Target>,
}

/// Per symbol, the open-time ranges an incremental run recomputes.
#[derive(Debug, Clone, Default)]
pub struct BatchFilter {
    pub ranges: BTreeMap<String, RangeSet>,
}

impl BatchFilter {
    /// `(symbol = 'A' AND t >= ... AND t < ...) OR ...` over `time_col` and `key_col`.
    pub fn condition(&self, kind: Kind, key_col: &str, time_col: &str) -> String {
        let mut parts = Vec::new();
        for (key, ranges) in &self.ranges {
            for &(s, e) in ranges.ranges() {
                parts.push(format!(
                    "({key_col} = {} AND {time_col} >= {} AND {time_col} < {})",
                    ident::literal(key),
                    raw::timestamp_literal(kind, s),
                    raw::timestamp_literal(kind, e)
                ));
            }
        }
        if parts.is_empty() {
            "1 = 0".into()
        } else {
            parts.join(" OR ")
        }
    }
}

/// What parsing a template recorded.
#[derive(Debug, Clone, Default)]
pub struct Collected {
    pub refs: Vec<String>,
    pub sources: Vec<(String, String)>,
    pub config: Map<String, Json>,
    /// Unique ids of the ephemeral models inlined while compiling.
    pub ephemerals: Vec<String>,
    /// Relations read through a batch filter: (CTE name, its query).
    pub filtered: Vec<(String, String)>,
}

/// The node being rendered, reachable from the template functions.
#[derive(Debug)]
pub struct NodeCtx {
    pub kind: Kind,
    pub parse: bool,
    pub is_incremental: bool,
    pub resolver: Arc<Resolver>,
    pub filter: Option<BatchFilter>,
    pub collected: Mutex<Collected>,
}

impl Object for NodeCtx {}

impl NodeCtx {
    pub fn parse(kind: Kind) -> Arc<NodeCtx> {
        Arc::new(NodeCtx {
            kind,
            parse: true,
            is_incremental: false,
            resolver: Arc::new(Resolver::default()),
            filter: None,
            collected: Mutex::new(Collected::default()),
        })
    }

    pub fn compile(
        kind: Kind,
        resolver: Arc<Resolver>,
        is_incremental: bool,
        filter: Option<BatchFilter>,
    ) -> Arc<NodeCtx> {
        Arc::new(NodeCtx {
            kind,
            parse: false,
            is_incremental,
            resolver,
            filter,
            collected: Mutex::new(Collected::default()),
        })
    }

    pub fn take(&self) -> Collected {
        std::mem::take(&mut *self.collected.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn with<R>(&self, f: impl FnOnce(&mut Collected) -> R) -> R {
        f(&mut self.collected.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn render_target(&self, what: &str, target: Option<&Target>) -> Result<Value, Error> {
        match target {
            None => Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("{what} was not found"),
            )),
            Some(Target::Ephemeral { cte, unique_id }) => {
                self.with(|c| {
                    if !c.ephemerals.contains(unique_id) {
                        c.ephemerals.push(unique_id.clone());
                    }
                });
                Ok(Value::from(cte.clone()))
            }
            Some(Target::Relation {
                relation,
                event_time,
                batch_key,
            }) => {
                let mut r = relation.clone();
                if let (Some(filter), Some(t), Some(k)) = (&self.filter, event_time, batch_key) {
                    // The batch's rows, as a CTE: it reads like a table wherever the model puts it.
                    let cte = format!("__klines_batch__{}", relation.identifier);
                    let body = format!(
                        "SELECT * FROM {} WHERE {}",
                        relation.rendered,
                        filter.condition(self.kind, k, t)
                    );
                    self.with(|c| {
                        if !c.filtered.iter().any(|(n, _)| *n == cte) {
                            c.filtered.push((cte.clone(), body));
                        }
                    });
                    r.rendered = cte;
                }
                Ok(Value::from_object(r))
            }
        }
    }
}

fn node(state: &State) -> Result<Arc<NodeCtx>, Error> {
    state
        .lookup("__node")
        .and_then(|v| v.downcast_object::<NodeCtx>())
        .ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidOperation,
                "ref/source/config can only be used in a model",
            )
        })
}

fn placeholder(name: &str) -> Value {
    Value::from_object(Relation {
        database: None,
        schema: "__parse__".into(),
        identifier: name.to_string(),
        rendered: format!("__ref_{name}__"),
    })
}

fn ref_fn(state: &State, a: String, b: Option<String>) -> Result<Value, Error> {
    let n = node(state)?;
    let name = b.unwrap_or(a);
    if n.parse {
        n.with(|c| {
            if !c.refs.contains(&name) {
                c.refs.push(name.clone());
            }
        });
        return Ok(placeholder(&name));
    }
    n.render_target(&format!("ref('{name}')"), n.resolver.refs.get(&name))
}

fn source_fn(state: &State, source: String, table: String) -> Result<Value, Error> {
    let n = node(state)?;
    if n.parse {
        let key = (source.clone(), table.clone());
        n.with(|c| {
            if !c.sources.contains(&key) {
                c.sources.push(key);
            }
        });
        return Ok(placeholder(&format!("{source}.{table}")));
    }
    n.render_target(
        &format!("source('{source}', '{table}')"),
        n.resolver.sources.get(&(source.clone(), table.clone())),
    )
}

fn config_fn(state: &State, kwargs: Kwargs) -> Result<Value, Error> {
    let n = node(state)?;
    if n.parse {
        let mut map = Map::new();
        for key in kwargs.args() {
            let v: Value = kwargs.get(key)?;
            map.insert(
                key.to_string(),
                serde_json::to_value(&v)
                    .map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))?,
            );
        }
        n.with(|c| c.config.extend(map));
    } else {
        // Values were read at parse time; accept everything now.
        for key in kwargs.args() {
            let _: Value = kwargs.get(key)?;
        }
    }
    Ok(Value::from(""))
}

/// The `adapter` object: `adapter.dispatch('name')` picks `<type>__name` or `default__name`;
/// `adapter.quote('col')` quotes and cases an identifier for the warehouse.
#[derive(Debug)]
struct Adapter {
    kind: Kind,
}

impl Object for Adapter {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "type" => Some(Value::from(self.kind.as_str())),
            _ => None,
        }
    }

    fn call_method(
        self: &Arc<Self>,
        state: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        match method {
            "dispatch" => {
                let name = args.first().and_then(|a| a.as_str()).ok_or_else(|| {
                    Error::new(
                        ErrorKind::MissingArgument,
                        "adapter.dispatch needs a macro name",
                    )
                })?;
                let candidates = [
                    format!("{}__{name}", self.kind.as_str()),
                    format!("default__{name}"),
                ];
                for c in &candidates {
                    if let Some(m) = lookup_macro(state, c)? {
                        return Ok(m);
                    }
                }
                Err(Error::new(
                    ErrorKind::UnknownFunction,
                    format!(
                        "adapter.dispatch('{name}'): no macro {} or {}",
                        candidates[0], candidates[1]
                    ),
                ))
            }
            "quote" => {
                let id = args.first().and_then(|a| a.as_str()).ok_or_else(|| {
                    Error::new(
                        ErrorKind::MissingArgument,
                        "adapter.quote needs an identifier",
                    )
                })?;
                ident::validate(id)
                    .map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
                Ok(Value::from(ident::quote(self.kind, id)))
            }
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }
}

fn lookup_macro(state: &State, name: &str) -> Result<Option<Value>, Error> {
    if let Some(v) = state.lookup(name).filter(|v| !v.is_undefined()) {
        return Ok(Some(v));
    }
    let env = state.env();
    let Ok(t) = env.get_template(MACROS) else {
        return Ok(None);
    };
    let captured = t.render_captured(minijinja::context! {})?;
    Ok(captured.state().lookup(name).filter(|v| !v.is_undefined()))
}

#[derive(Debug)]
struct Exceptions;

impl Object for Exceptions {
    fn call_method(
        self: &Arc<Self>,
        _: &mut State<'_, '_>,
        method: &str,
        args: &[Value],
    ) -> Result<Value, Error> {
        let msg = args.first().map(|v| v.to_string()).unwrap_or_default();
        match method {
            "raise_compiler_error" => Err(Error::new(ErrorKind::InvalidOperation, msg)),
            "warn" => {
                tracing::warn!("{msg}");
                Ok(Value::from(""))
            }
            _ => Err(Error::from(ErrorKind::UnknownMethod)),
        }
    }
}

/// What every template sees.
#[derive(Debug, Clone)]
pub struct Globals {
    pub kind: Kind,
    pub project_name: String,
    /// `target`: name, type, schema, raw_schema, profile_name, threads.
    pub target: BTreeMap<String, Json>,
    /// klines.yml `vars` under `--vars`.
    pub vars: BTreeMap<String, Json>,
    pub invocation_id: String,
    pub run_started_at: String,
}

/// A rendering error with the file and line it happened at; after the first line, where it
/// was called from and the lines around it with the failing expression marked (as
/// minijinja's debug output shows them).
#[derive(Debug, thiserror::Error)]
#[error("{file}{}: {message}{}", .line.map(|l| format!(" line {l}")).unwrap_or_default(), if .detail.is_empty() { String::new() } else { format!("\n{}", .detail) })]
pub struct RenderError {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
    /// Further lines: the call chain and the snippet (may be empty).
    pub detail: String,
}

/// Up to three lines either side of `line` (1-based within `source`, kept within the lines
/// `within`), numbered minus `shift`, the failing one marked with `>` and its expression
/// (byte `range` within `source`) underlined.
fn snippet(
    source: &str,
    line: usize,
    within: std::ops::RangeInclusive<usize>,
    shift: usize,
    range: Option<std::ops::Range<usize>>,
) -> String {
    let lines: Vec<&str> = source.lines().collect();
    if line == 0 || line > lines.len() {
        return String::new();
    }
    let first = line.saturating_sub(3).max(1).max(*within.start());
    let last = (line + 2).min(lines.len()).min(*within.end());
    let width = (last - shift).to_string().len();
    let mut out = String::new();
    for n in first..=last {
        let mark = if n == line { '>' } else { ' ' };
        out.push_str(&format!("{:>width$} {mark} | {}\n", n - shift, lines[n - 1]));
        if n == line
            && let Some(r) = &range
        {
            let line_start: usize = lines[..n - 1].iter().map(|l| l.len() + 1).sum();
            let line_end = line_start + lines[n - 1].len();
            if r.start >= line_start && r.start <= line_end {
                let len = r.end.min(line_end).saturating_sub(r.start).max(1);
                out.push_str(&format!(
                    "{:>width$}   | {}{}\n",
                    "",
                    " ".repeat(r.start - line_start),
                    "^".repeat(len)
                ));
            }
        }
    }
    out.trim_end().to_string()
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

    /// A template name and line as the user knows them: a line of the concatenated macros
    /// becomes its macro file's own line.
    fn locate(&self, name: &str, line: Option<usize>) -> (String, Option<usize>) {
        if name == MACROS
            && let Some(l) = line
            && let Some((path, start, _)) = self
                .macro_files
                .iter()
                .rev()
                .find(|(_, start, _)| *start <= l)
        {
            return (path.clone(), Some(l - start + 1));
        }
        (name.to_string(), line)
    }

    fn error(&self, template: &str, e: Error) -> RenderError {
        self.error_in(template, e, None)
    }

    /// [`Jinja::error`] for a template not added yet (a syntax error): its source is given.
    fn error_in(&self, template: &str, e: Error, added: Option<&str>) -> RenderError {
        // The chain from the outermost call to the innermost error, each with its place.
        let mut chain: Vec<&Error> = vec![&e];
        while let Some(src) = std::error::Error::source(*chain.last().unwrap_or(&&e))
            .and_then(|s| s.downcast_ref::<Error>())
        {
            chain.push(src);
        }
        let inner = chain
            .iter()
            .rev()
            .find(|err| err.line().is_some())
            .copied()
            .unwrap_or(&e);
        let message = match inner.detail() {
            Some(d) => format!("{}: {d}", kind_text(inner.kind())),
            None => kind_text(inner.kind()).to_string(),
        };
        let name = inner.name().unwrap_or(template);
        let (file, line) = self.locate(name, inner.line());
        let mut detail = Vec::new();
        for outer in chain.iter().rev() {
            if std::ptr::eq(*outer, inner) || outer.line().is_none() {
                continue;
            }
            let (f, l) = self.locate(outer.name().unwrap_or(template), outer.line());
            if (f.as_str(), l) != (file.as_str(), line) {
                detail.push(format!(
                    "  called from {f}{}",
                    l.map(|l| format!(" line {l}")).unwrap_or_default()
                ));
            }
        }
        // minijinja keeps the innermost place only: name the file being rendered when the
        // error happened in a macro of another file.
        if detail.is_empty() && file != template && template != MACROS {
            detail.push(format!("  called from {template}"));
        }
        // The source around the line: the template's own, or the macro file's part of the
        // concatenated macros, numbered as in the file.
        let source = match added {
            Some(text) => Some(text.to_string()),
            None => self
                .env
                .get_template(name)
                .ok()
                .map(|t| t.source().to_string()),
        };
        if let Some(l) = inner.line()
            && let Some(local) = line
            && let Some(source) = source
        {
            // A model's first line starts with the macro import klines adds: not shown.
            let (source, range) = match source.strip_prefix(&format!("{{%- from \"{MACROS}\""))
            {
                Some(rest) if name != MACROS => {
                    let cut = source.len() - rest.len() + rest.find("-%}").map_or(0, |i| i + 3);
                    let range = inner
                        .range()
                        .map(|r| r.start.saturating_sub(cut)..r.end.saturating_sub(cut));
                    (source[cut..].to_string(), range)
                }
                _ => (source, inner.range()),
            };
            let shift = l - local;
            let count = if name == MACROS {
                self.macro_files
                    .iter()
                    .find(|(p, _, _)| *p == file)
                    .map(|(_, _, n)| *n)
                    .unwrap_or(usize::MAX / 2)
            } else {
                usize::MAX / 2
            };
            let shown = snippet(&source, l, shift + 1..=shift + count, shift, range);
            if !shown.is_empty() {
                detail.push(shown);
            }
        }
        RenderError {
            file,
            line,
            message,
            detail: detail.join("\n"),
        }
    }
}

fn kind_text(k: ErrorKind) -> &'static str {
    match k {
        ErrorKind::SyntaxError => "syntax error",
        ErrorKind::UndefinedError => "undefined value",
        ErrorKind::UnknownFunction => "unknown function",
        ErrorKind::UnknownMethod => "unknown method",
        ErrorKind::MissingArgument => "missing argument",
        ErrorKind::TooManyArguments => "too many arguments",
        ErrorKind::InvalidOperation => "invalid operation",
        ErrorKind::BadEscape => "bad string escape",
        ErrorKind::UnknownFilter => "unknown filter",
        ErrorKind::UnknownTest => "unknown test",
        ErrorKind::CannotDeserialize => "cannot deserialize",
        ErrorKind::BadSerialization => "bad serialization",
        _ => "template error",
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
            kind: Kind::DuckDb,
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
        let n = NodeCtx::parse(Kind::DuckDb);
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
            j.render("m.sql", &NodeCtx::parse(Kind::DuckDb), None)
                .unwrap(),
            "select arg_min(x), \"interval\""
        );
    }

    #[test]
    fn an_error_in_a_macro_names_the_macro_file_and_where_it_was_called() {
        let j = Jinja::new(
            &globals(),
            &[
                ("macros/a.sql".into(), "{% macro a() %}1{% endmacro %}\n".into()),
                (
                    "macros/b.sql".into(),
                    "{# b #}\n{% macro b(x) %}\n{{ x.nope.deeper }}\n{% endmacro %}\n".into(),
                ),
            ],
            &[("models/m.sql".into(), "select\n{{ b(1) }}\n".into())],
        )
        .unwrap();
        let e = j
            .render("models/m.sql", &NodeCtx::parse(Kind::DuckDb), None)
            .unwrap_err();
        assert_eq!((e.file.as_str(), e.line), ("macros/b.sql", Some(3)), "{e}");
        assert!(e.detail.contains("called from models/m.sql"), "{e}");
        assert!(e.detail.contains("3 > | {{ x.nope.deeper }}"), "{e}");
        assert!(!e.detail.contains("macro a()"), "another macro file's lines: {e}");
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
            .render("models/m.sql", &NodeCtx::parse(Kind::DuckDb), None)
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
            &NodeCtx::compile(Kind::DuckDb, Arc::new(Resolver::default()), false, None),
            None,
        );
        assert!(e.is_err());
    }
}
