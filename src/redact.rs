//! Keeping secrets out of logs, errors and artifacts.

/// `https://user:secret@host/x` becomes `https://***@host/x`; URLs without credentials are
/// returned as they are.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_urls_are_redacted() {
        assert_eq!(redact_url("https://user:pw@proxy:8080/x"), "https://***@proxy:8080/x");
        assert_eq!(redact_url("https://user:pw@proxy"), "https://***@proxy");
        assert_eq!(redact_url("postgres://u:p@db/x?sslmode=require"), "postgres://***@db/x?sslmode=require");
        assert_eq!(redact_url("https://host/a@b"), "https://host/a@b");
        assert_eq!(redact_url("http://127.0.0.1:9"), "http://127.0.0.1:9");
        assert_eq!(redact_url("./stage"), "./stage");
    }
}
