//! The HTTP client every exchange client builds: a checked base URL (no credentials echoed),
//! klines' user agent, and timeouts.

use std::time::Duration;

use crate::redact::redact_url;

/// Checks that `base` is `http(s)://host[:port][/path]` and builds a client with `timeout`
/// per request (connecting: at most 10 s). `what` names the URL in errors ("exchange base").
pub fn client(what: &str, base: &str, timeout: Duration) -> anyhow::Result<reqwest::Client> {
    let url = reqwest::Url::parse(base)
        .map_err(|e| anyhow::anyhow!("invalid {what} URL {:?}: {e}", redact_url(base)))?;
    if !matches!(url.scheme(), "http" | "https") || url.query().is_some() || url.host().is_none() {
        anyhow::bail!(
            "invalid {what} URL {:?}: expected http(s)://host[:port][/path]",
            redact_url(base)
        );
    }
    Ok(reqwest::Client::builder()
        .user_agent(concat!("klines/", env!("CARGO_PKG_VERSION")))
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .build()?)
}

/// The first `max` characters of an answer's text, for an error message (never cut inside a
/// character: a body of multi-byte text is no panic).
pub fn excerpt(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn excerpts_end_on_a_character() {
        assert_eq!(super::excerpt("abc", 2), "ab");
        assert_eq!(super::excerpt("ab", 5), "ab");
        assert_eq!(super::excerpt("a٦b", 2), "a٦");
    }
}
