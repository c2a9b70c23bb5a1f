//! The `adapter` and `exceptions` objects of dbt's surface.

use super::*;

/// The `adapter` object: `adapter.dispatch('name')` picks `<type>__name` or `default__name`;
/// `adapter.quote('col')` quotes and cases an identifier for the warehouse.
#[derive(Debug)]
pub(super) struct Adapter {
    pub(super) kind: DialectRef,
}

impl Object for Adapter {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "type" => Some(Value::from(self.kind.name())),
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
                    format!("{}__{name}", self.kind.name()),
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

pub(super) fn lookup_macro(state: &State, name: &str) -> Result<Option<Value>, Error> {
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
pub(super) struct Exceptions;

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
