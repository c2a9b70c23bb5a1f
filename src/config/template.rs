//! `{{ env_var('NAME', 'default') }}` in configuration files, as in dbt.
//!
//! Configuration files are rendered with a minimal Jinja environment before they are parsed
//! as YAML, so secrets can stay in the environment.

use minijinja::{Environment, Error, ErrorKind, UndefinedBehavior};

use crate::error::UsageError;

/// dbt's `env_var(name, default)`: the variable's value, the default, or an error naming the
/// variable.
pub fn env_var(name: &str, default: Option<&str>) -> Result<String, Error> {
    match std::env::var(name) {
        Ok(v) => Ok(v),
        Err(_) => default.map(str::to_string).ok_or_else(|| {
            Error::new(
                ErrorKind::InvalidOperation,
                format!("environment variable {name} is not set and has no default"),
            )
        }),
    }
}

/// Renders `text` (the contents of `name`) with `env_var` available.
pub fn render(name: &str, text: &str) -> anyhow::Result<String> {
    if !text.contains("{{") && !text.contains("{%") {
        return Ok(text.to_string());
    }
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
        .keep_trailing_newline(true)
        .build()
    {
        env.set_syntax(syntax);
    }
    env.add_function("env_var", |name: &str, default: Option<&str>| {
        env_var(name, default)
    });
    let rendered = env.render_str(text, ()).map_err(|e| {
        let line = e.line().map(|l| format!(" line {l}")).unwrap_or_default();
        UsageError(format!(
            "{name}{line}: {}",
            e.detail().unwrap_or(&e.to_string())
        ))
    })?;
    Ok(rendered)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_env_vars_with_defaults() {
        // SAFETY: tests in this module are the only ones touching these names.
        unsafe { std::env::set_var("KLINES_TEST_TEMPLATE_VAR", "s3cret") };
        let out = render("p.yml", "a: {{ env_var('KLINES_TEST_TEMPLATE_VAR') }}\nb: {{ env_var('KLINES_TEST_UNSET_VAR', 'x') }}\n").unwrap();
        assert_eq!(out, "a: s3cret\nb: x\n");
        let err = render("p.yml", "a: 1\nb: {{ env_var('KLINES_TEST_UNSET_VAR') }}\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "p.yml line 2: environment variable KLINES_TEST_UNSET_VAR is not set and has no default"
        );
    }
}
