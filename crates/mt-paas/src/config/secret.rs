//! Values that must never be printed: [`Secret`] and the password inside a [`DatabaseUrl`].

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a secret prints as, in `Debug`, in logs and in `mt-paas config check`.
pub const REDACTED: &str = "[redacted]";

/// A secret string (API key, JWT secret, encryption key). `Debug` and `Serialize` print
/// `[redacted]`; [`Secret::expose`] is the one way to read it.
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(SecretString::from(value.into()))
    }

    /// The secret itself. Call it where the value is used, never to print it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::new)
    }
}

/// `Option<Secret>` where an empty string (e.g. `${VAR:-}`) means "not set".
pub(super) mod optional {
    use super::*;

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Secret>, D::Error> {
        let value = Option::<String>::deserialize(deserializer)?;
        Ok(value.filter(|v| !v.is_empty()).map(Secret::new))
    }

    pub(crate) fn serialize<S: Serializer>(
        value: &Option<Secret>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(_) => serializer.serialize_str(REDACTED),
            None => serializer.serialize_none(),
        }
    }
}

/// A database URL (`sqlite://...`, `postgresql://user:password@host/db`). Its password is
/// replaced by `[redacted]` wherever it is displayed; [`DatabaseUrl::expose`] gives the URL.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

/// The database engine a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DatabaseKind {
    /// `sqlite:`
    Sqlite,
    /// `postgres:` or `postgresql:`
    Postgres,
}

impl DatabaseUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The full URL, password included.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The engine, from the scheme; `None` for any other scheme.
    pub fn kind(&self) -> Option<DatabaseKind> {
        let scheme = self.0.split_once(':')?.0.to_ascii_lowercase();
        match scheme.as_str() {
            "sqlite" => Some(DatabaseKind::Sqlite),
            "postgres" | "postgresql" => Some(DatabaseKind::Postgres),
            _ => None,
        }
    }

    /// The password inside the URL, percent-decoded (`scheme://user:password@host/...`).
    pub fn password(&self) -> Option<String> {
        let (start, end) = self.password_span()?;
        let raw = &self.0[start..end];
        form_urlencoded::parse(format!("p={raw}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    }

    /// The URL without its password (for tools that take the password from the
    /// environment, such as `pg_dump` with `PGPASSWORD`, so it never shows in `ps`).
    pub fn without_password(&self) -> String {
        match self.password_span() {
            // Drop the ':' before the password too.
            Some((start, end)) => format!("{}{}", &self.0[..start - 1], &self.0[end..]),
            None => self.0.clone(),
        }
    }

    /// Byte range of the password in the URL.
    fn password_span(&self) -> Option<(usize, usize)> {
        let scheme_end = self.0.find("://")? + 3;
        let rest = &self.0[scheme_end..];
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let at = rest[..authority_end].rfind('@')?;
        let colon = rest[..at].find(':')?;
        Some((scheme_end + colon + 1, scheme_end + at))
    }

    /// Postgres connection options for this URL. A loopback host (`localhost`, `127.0.0.1`,
    /// `::1`, a socket directory) without an explicit `sslmode` connects without TLS: TLS to
    /// the same machine protects nothing, and negotiating it costs ~90 ms per connection
    /// (measured here), which a tenant connection opened on demand cannot afford.
    pub fn pg_options(&self) -> Result<sqlx::postgres::PgConnectOptions, sqlx::Error> {
        use std::str::FromStr as _;
        let options = sqlx::postgres::PgConnectOptions::from_str(&self.0)?;
        let explicit = self.0.to_ascii_lowercase().contains("sslmode=");
        let host = options.get_host();
        let loopback =
            matches!(host, "localhost" | "127.0.0.1" | "::1" | "[::1]") || host.starts_with('/');
        Ok(if loopback && !explicit {
            options.ssl_mode(sqlx::postgres::PgSslMode::Disable)
        } else {
            options
        })
    }

    /// The URL with its password replaced by `[redacted]`.
    pub fn redacted(&self) -> String {
        let url = &self.0;
        let Some(scheme_end) = url.find("://") else {
            return url.clone();
        };
        let rest = &url[scheme_end + 3..];
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        let Some(at) = authority.rfind('@') else {
            return redact_query_password(url);
        };
        let userinfo = &authority[..at];
        let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
        let shown = if userinfo.contains(':') {
            format!("{user}:{REDACTED}")
        } else {
            user.to_owned()
        };
        let out = format!(
            "{}://{}@{}{}",
            &url[..scheme_end],
            shown,
            &authority[at + 1..],
            &rest[authority_end..]
        );
        redact_query_password(&out)
    }
}

/// `?password=...` is also accepted by libpq-style URLs.
fn redact_query_password(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_owned();
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}={REDACTED}"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{base}?{}", query.join("&"))
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.redacted(), f)
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for DatabaseUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.redacted())
    }
}

impl<'de> Deserialize<'de> for DatabaseUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self)
    }
}

/// Replaces the values of keys named like secrets, at any depth.
pub(super) fn redact_secret_looking_keys(value: &mut yaml_serde::Value) {
    match value {
        yaml_serde::Value::Mapping(map) => {
            for (k, v) in map.iter_mut() {
                let secret_like = k.as_str().is_some_and(|k| {
                    let k = k.to_ascii_lowercase();
                    ["key", "secret", "password", "token", "credential"]
                        .iter()
                        .any(|word| k.contains(word))
                });
                if secret_like && !v.is_mapping() && !v.is_sequence() {
                    *v = yaml_serde::Value::String(REDACTED.to_owned());
                } else {
                    redact_secret_looking_keys(v);
                }
            }
        }
        yaml_serde::Value::Sequence(items) => items.iter_mut().for_each(redact_secret_looking_keys),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), REDACTED);
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"[redacted]\"");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn database_url_hides_password() {
        let cases = [
            (
                "postgresql://app:s3cr3t@db:5432/central",
                "postgresql://app:[redacted]@db:5432/central",
            ),
            ("postgres://app@db/central", "postgres://app@db/central"),
            (
                "postgres://db/central?user=a&password=s3cr3t",
                "postgres://db/central?user=a&password=[redacted]",
            ),
            ("sqlite://./data/central.db", "sqlite://./data/central.db"),
            ("postgres://u:p@ss@db/x", "postgres://u:[redacted]@db/x"),
        ];
        for (url, want) in cases {
            let url = DatabaseUrl::new(url);
            assert_eq!(url.redacted(), want);
            assert!(!format!("{url:?}{url}").contains("s3cr3t"));
        }
    }

    #[test]
    fn password_is_split_out() {
        let url = DatabaseUrl::new("postgresql://app:s%40cret@127.0.0.1:10202/app?sslmode=disable");
        assert_eq!(url.password().as_deref(), Some("s@cret"));
        assert_eq!(
            url.without_password(),
            "postgresql://app@127.0.0.1:10202/app?sslmode=disable"
        );
        let plain = DatabaseUrl::new("postgres://app@h/db");
        assert_eq!(plain.password(), None);
        assert_eq!(plain.without_password(), "postgres://app@h/db");
    }

    #[test]
    fn database_kind_from_scheme() {
        assert_eq!(
            DatabaseUrl::new("sqlite::memory:").kind(),
            Some(DatabaseKind::Sqlite)
        );
        assert_eq!(
            DatabaseUrl::new("POSTGRESQL://x/y").kind(),
            Some(DatabaseKind::Postgres)
        );
        assert_eq!(DatabaseUrl::new("mysql://x/y").kind(), None);
        assert_eq!(DatabaseUrl::new("nonsense").kind(), None);
    }
}
