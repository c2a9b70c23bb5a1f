//! Keeping secrets out of logs, errors and artifacts.

/// `https://user:secret@host/x` becomes `https://***@host/x`; URLs without credentials are
/// returned as they are.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
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
        assert_eq!(
            redact_url("https://user:pw@proxy:8080/x"),
            "https://***@proxy:8080/x"
        );
        assert_eq!(redact_url("https://user:pw@proxy"), "https://***@proxy");
        assert_eq!(
            redact_url("postgres://u:p@db/x?sslmode=require"),
            "postgres://***@db/x?sslmode=require"
        );
        assert_eq!(redact_url("https://host/a@b"), "https://host/a@b");
        assert_eq!(redact_url("http://127.0.0.1:9"), "http://127.0.0.1:9");
        assert_eq!(redact_url("./stage"), "./stage");
    }
}

/// A serde error about a configuration value, without the value: `invalid type: integer
/// `8472991337`, expected a string` becomes `invalid type: integer (value hidden), expected a
/// string`, and `invalid type: string "p8472991337", expected u16` becomes `invalid type:
/// string (value hidden), expected u16`. Field names (`unknown field `hots``) are kept: they
/// come from keys, not values.
pub fn config_error(msg: &str) -> String {
    for lead in ["invalid type: ", "invalid value: ", "invalid length "] {
        let Some(at) = msg.find(lead) else { continue };
        let start = at + lead.len();
        // The expected part is the code's; the value comes before it (and may hold ", expected").
        let end = msg[start..]
            .rfind(", expected")
            .map_or(msg.len(), |e| start + e);
        let unexpected = &msg[start..end];
        // Keep the kind (string, integer, sequence, ...), never what follows it.
        let kind_end = unexpected.find([' ', '`', '"']).unwrap_or(unexpected.len());
        let kind = &unexpected[..kind_end];
        let hidden = if kind_end < unexpected.len() && lead != "invalid length " {
            format!("{kind} (value hidden)")
        } else {
            unexpected.to_string()
        };
        return format!("{}{hidden}{}", &msg[..start], &msg[end..]);
    }
    msg.to_string()
}

/// A secret from configuration: usable, never printed (`Debug` and `Display` show `***`).
/// An all-digit password that YAML reads as a number is still a secret, not a type error
/// that would print it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Secret;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_i128<E>(self, v: i128) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_u128<E>(self, v: u128) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Secret, E> {
                // The text is lost to the float: quote the value in the file.
                Err(E::custom(
                    "a secret that YAML reads as a decimal number must be quoted",
                ))
            }
        }
        d.deserialize_any(V)
    }
}

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod secret_tests {
    use super::*;

    #[test]
    fn numbers_are_secrets_too_and_errors_hide_values() {
        let s: Secret = yaml_serde::from_str("8472991337").unwrap();
        assert_eq!(s.expose(), "8472991337");
        assert!(yaml_serde::from_str::<Secret>("[1]").is_err());
        assert_eq!(
            config_error("invalid type: integer `8472991337`, expected a string"),
            "invalid type: integer (value hidden), expected a string"
        );
        assert_eq!(
            config_error("unknown field `hots`, expected one of `host`, `port`"),
            "unknown field `hots`, expected one of `host`, `port`"
        );
        assert_eq!(
            config_error("invalid type: string \"p8472991337\", expected u16"),
            "invalid type: string (value hidden), expected u16"
        );
        assert_eq!(
            config_error("invalid type: string \"a, expected b\", expected u16"),
            "invalid type: string (value hidden), expected u16"
        );
        assert_eq!(
            config_error("invalid value: integer `70000`, expected u16"),
            "invalid value: integer (value hidden), expected u16"
        );
        assert_eq!(
            config_error("invalid type: sequence, expected a string"),
            "invalid type: sequence, expected a string"
        );
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** Secret(***)");
        assert_eq!(s.expose(), "hunter2");
    }
}
