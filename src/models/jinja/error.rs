//! Rendering errors as users read them: the file and line (a macro's own file), the call
//! chain, the lines around it with the failing expression marked.

use super::*;

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
        out.push_str(&format!(
            "{:>width$} {mark} | {}\n",
            n - shift,
            lines[n - 1]
        ));
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

impl Jinja {
    /// A template name and line as the user knows them: a line of the concatenated macros
    /// becomes its macro file's own line.
    pub(super) fn locate(&self, name: &str, line: Option<usize>) -> (String, Option<usize>) {
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

    pub(super) fn error(&self, template: &str, e: Error) -> RenderError {
        self.error_in(template, e, None)
    }

    /// [`Jinja::error`] for a template not added yet (a syntax error): its source is given.
    pub(super) fn error_in(&self, template: &str, e: Error, added: Option<&str>) -> RenderError {
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
            let (source, range) = match source.strip_prefix(&format!("{{%- from \"{MACROS}\"")) {
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
