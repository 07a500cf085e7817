//! Configuration helpers shared by both daemons: environment overrides as a TOML layer and
//! error messages that name the key.

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use std::path::Path;

/// Loads `T::default()`, then `file` (if given; it must exist), then the `ROOMSENSE__…`
/// environment variables among `env`, then `overrides` (dotted key → value, from CLI flags).
/// The error names the key and where its value came from.
pub fn load_layered<T>(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    overrides: &[(&str, toml::Value)],
) -> Result<T, String>
where
    T: Default + serde::Serialize + serde::de::DeserializeOwned,
{
    let mut fig = Figment::from(Serialized::defaults(T::default()));
    if let Some(path) = file {
        if !path.exists() {
            return Err(format!("config file {} does not exist", path.display()));
        }
        fig = fig.merge(Toml::file_exact(path));
    }
    let vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with("ROOMSENSE__"))
        .collect();
    fig = fig.merge(Toml::string(&env_to_toml(&vars)?));
    for (key, value) in overrides {
        fig = fig.merge(Serialized::global(key, value));
    }
    fig.extract().map_err(describe)
}

/// `ROOMSENSE__SECTION__KEY=…` → `[http] listen = …`. Values are parsed as TOML when they
/// parse (numbers, booleans), else taken as strings.
pub fn env_to_toml(vars: &[(String, String)]) -> Result<String, String> {
    let mut root = toml::Table::new();
    for (k, v) in vars {
        let path: Vec<String> = k["ROOMSENSE__".len()..]
            .split("__")
            .map(str::to_ascii_lowercase)
            .collect();
        if path.iter().any(String::is_empty) {
            return Err(format!("environment variable {k}: empty key segment"));
        }
        let value = match format!("x = {v}").parse::<toml::Table>() {
            Ok(mut t) => t
                .remove("x")
                .unwrap_or_else(|| toml::Value::String(v.clone())),
            Err(_) => toml::Value::String(v.clone()),
        };
        let mut table = &mut root;
        for seg in &path[..path.len() - 1] {
            let entry = table
                .entry(seg.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            table = match entry {
                toml::Value::Table(t) => t,
                _ => return Err(format!("environment variable {k}: {seg} is not a section")),
            };
        }
        if let Some(last) = path.last() {
            table.insert(last.clone(), value);
        }
    }
    Ok(root.to_string())
}

/// One line per error, each naming the dotted key and where the value came from.
pub fn describe(e: figment::Error) -> String {
    e.into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let source = e
                .metadata
                .as_ref()
                .map(|m| m.name.to_string())
                .unwrap_or_default();
            let mut kind = e.kind.to_string();
            if let figment::error::Kind::UnknownField(f, _) = &e.kind {
                kind = format!("unknown key {f:?}");
            }
            let full_key = match &e.kind {
                figment::error::Kind::UnknownField(f, _) if key.is_empty() => f.clone(),
                figment::error::Kind::UnknownField(f, _) => format!("{key}.{f}"),
                _ => key,
            };
            if source.is_empty() {
                format!("{full_key}: {kind}")
            } else {
                format!("{full_key}: {kind} (from {source})")
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Splits `mqtt://host:port` (or `tcp://`) into host and port (default 1883).
pub fn parse_mqtt_url(url: &str) -> Result<(String, u16), String> {
    let rest = url
        .strip_prefix("mqtt://")
        .or_else(|| url.strip_prefix("tcp://"))
        .ok_or_else(|| {
            format!("{url:?} must start with mqtt:// (TLS brokers: not yet supported)")
        })?;
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>()
                .map_err(|_| format!("{url:?}: port {p:?} is not a number from 1 to 65535"))?,
        ),
        None => (rest, 1883),
    };
    if host.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    Ok((host.trim_matches(['[', ']']).to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_vars_become_nested_toml() {
        let t = env_to_toml(&[
            ("ROOMSENSE__MQTT__URL".into(), "mqtt://h:1".into()),
            ("ROOMSENSE__INGEST__QUEUE_CAPACITY".into(), "7".into()),
        ])
        .unwrap();
        let v: toml::Table = t.parse().unwrap();
        assert_eq!(v["mqtt"]["url"].as_str(), Some("mqtt://h:1"));
        assert_eq!(v["ingest"]["queue_capacity"].as_integer(), Some(7));
        assert!(env_to_toml(&[("ROOMSENSE__A____B".into(), "1".into())]).is_err());
    }

    #[test]
    fn mqtt_urls() {
        assert_eq!(parse_mqtt_url("mqtt://h:1884").unwrap(), ("h".into(), 1884));
        assert_eq!(parse_mqtt_url("mqtt://h").unwrap(), ("h".into(), 1883));
        assert!(parse_mqtt_url("http://h").is_err());
        assert!(parse_mqtt_url("mqtt://h:x").is_err());
    }
}
