//! What a template's `ref()`, `source()` and `config()` see and record: relations, the
//! resolver, the batch filter of an incremental run, the node being rendered.

use super::*;

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
    pub fn condition(&self, kind: DialectRef, key_col: &str, time_col: &str) -> String {
        let mut parts = Vec::new();
        for (key, ranges) in &self.ranges {
            for &(s, e) in ranges.ranges() {
                parts.push(format!(
                    "({key_col} = {} AND {time_col} >= {} AND {time_col} < {})",
                    ident::literal(key),
                    timestamp_literal(kind, s),
                    timestamp_literal(kind, e)
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
    pub kind: DialectRef,
    pub parse: bool,
    pub is_incremental: bool,
    pub resolver: Arc<Resolver>,
    pub filter: Option<BatchFilter>,
    pub collected: Mutex<Collected>,
}

impl Object for NodeCtx {}

impl NodeCtx {
    pub fn parse(kind: DialectRef) -> Arc<NodeCtx> {
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
        kind: DialectRef,
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

pub(super) fn node(state: &State) -> Result<Arc<NodeCtx>, Error> {
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

pub(super) fn placeholder(name: &str) -> Value {
    Value::from_object(Relation {
        database: None,
        schema: "__parse__".into(),
        identifier: name.to_string(),
        rendered: format!("__ref_{name}__"),
    })
}

pub(super) fn ref_fn(state: &State, a: String, b: Option<String>) -> Result<Value, Error> {
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

pub(super) fn source_fn(state: &State, source: String, table: String) -> Result<Value, Error> {
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

pub(super) fn config_fn(state: &State, kwargs: Kwargs) -> Result<Value, Error> {
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
