//! `${VAR}` / `${VAR:-default}` substitution and `*_file` secret loading, applied to the parsed
//! TOML tree (never to the raw text, so a variable's value can never inject TOML syntax).

use std::path::Path;

use toml::Value;

use super::ConfigError;

/// Keys whose value may instead be read from a file named by `KEY_file` (Kubernetes Secret mounts).
pub const SECRET_KEYS: &[&str] = &["client_secret", "cookie_secret", "redis_url", "nonce_secret"];

/// Replaces variables in every string of `value`; `lookup` returns an environment variable.
/// Every missing variable is reported, each with the field path where it was used.
pub fn substitute(
    value: &mut Value,
    path: &mut Vec<String>,
    lookup: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<ConfigError>,
) {
    match value {
        Value::String(s) => match expand(s, lookup) {
            Ok(Some(expanded)) => *s = expanded,
            Ok(None) => {}
            Err(reason) => errors.push(ConfigError::at(path, reason)),
        },
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push(format!("[{i}]"));
                substitute(item, path, lookup, errors);
                path.pop();
            }
        }
        Value::Table(table) => {
            for (key, item) in table.iter_mut() {
                path.push(key.clone());
                substitute(item, path, lookup, errors);
                path.pop();
            }
        }
        _ => {}
    }
}

/// Expands one string. `Ok(None)` when it holds no `${`, so untouched strings are not copied.
/// `$$` is a literal `$`.
fn expand(s: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Option<String>, String> {
    if !s.contains('$') {
        return Ok(None);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or_else(|| format!("unterminated `${{` in {s:?}"))?;
            let inner = &body[..end];
            let (name, default) = match inner.find(":-") {
                Some(i) => (&inner[..i], Some(&inner[i + 2..])),
                None => (inner, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("invalid variable name {name:?} in {s:?}"));
            }
            match (lookup(name), default) {
                (Some(v), _) if !v.is_empty() || default.is_none() => out.push_str(&v),
                (_, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err(format!(
                        "environment variable {name} is not set (use ${{{name}:-default}} for a default)"
                    ))
                }
                (Some(v), None) => out.push_str(&v),
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(Some(out))
}

/// Replaces every `KEY_file = "path"` (KEY in [`SECRET_KEYS`]) by `KEY = "<file contents>"`,
/// relative paths resolved against the config file's directory. One trailing newline is trimmed.
pub fn load_secret_files(value: &mut Value, path: &mut Vec<String>, base_dir: &Path, errors: &mut Vec<ConfigError>) {
    match value {
        Value::Table(table) => {
            for key in SECRET_KEYS {
                let file_key = format!("{key}_file");
                let Some(file_value) = table.remove(&file_key) else {
                    continue;
                };
                path.push(file_key.clone());
                if table.contains_key(*key) {
                    errors.push(ConfigError::at(path, format!("set either `{key}` or `{file_key}`, not both")));
                } else if let Value::String(file) = file_value {
                    match std::fs::read_to_string(base_dir.join(&file)) {
                        Ok(contents) => {
                            let trimmed = contents.strip_suffix('\n').unwrap_or(&contents);
                            let trimmed = trimmed.strip_suffix('\r').unwrap_or(trimmed);
                            table.insert((*key).to_string(), Value::String(trimmed.to_string()));
                        }
                        Err(e) => errors.push(ConfigError::at(path, format!("cannot read secret file {file:?}: {e}"))),
                    }
                } else {
                    errors.push(ConfigError::at(path, "expected a file path string".into()));
                }
                path.pop();
            }
            for (key, item) in table.iter_mut() {
                path.push(key.clone());
                load_secret_files(item, path, base_dir, errors);
                path.pop();
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push(format!("[{i}]"));
                load_secret_files(item, path, base_dir, errors);
                path.pop();
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("example.com".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_variables_defaults_and_dollars() {
        assert_eq!(expand("https://${HOST}/x", &env).unwrap().unwrap(), "https://example.com/x");
        assert_eq!(expand("${NOPE:-d}", &env).unwrap().unwrap(), "d");
        assert_eq!(expand("${EMPTY:-d}", &env).unwrap().unwrap(), "d");
        assert_eq!(expand("${EMPTY}", &env).unwrap().unwrap(), "");
        assert_eq!(expand("a$$b", &env).unwrap().unwrap(), "a$b");
        assert_eq!(expand("plain", &env).unwrap(), None);
    }

    #[test]
    fn missing_variable_is_named() {
        let err = expand("${MISSING_VAR}", &env).unwrap_err();
        assert!(err.contains("MISSING_VAR"), "{err}");
        assert!(expand("${BAD NAME}", &env).is_err());
        assert!(expand("${OPEN", &env).is_err());
    }

    #[test]
    fn every_missing_variable_is_reported_with_its_path() {
        let mut v: Value = toml::from_str("a = \"${X1}\"\n[t]\nb = [\"${X2}\"]\n").unwrap();
        let mut errors = Vec::new();
        substitute(&mut v, &mut Vec::new(), &env, &mut errors);
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(errors.len(), 2, "{text:?}");
        assert!(text[0].contains("a") && text[0].contains("X1"), "{text:?}");
        assert!(text[1].contains("t.b[0]") && text[1].contains("X2"), "{text:?}");
    }

    #[test]
    fn secret_files_are_read_and_conflicts_refused() {
        let dir = std::env::temp_dir().join(format!("tollgate-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("s.txt"), "hunter2\n").unwrap();
        let mut v: Value = toml::from_str("[c]\nclient_secret_file = \"s.txt\"\n").unwrap();
        let mut errors = Vec::new();
        load_secret_files(&mut v, &mut Vec::new(), &dir, &mut errors);
        assert!(errors.is_empty());
        assert_eq!(v["c"]["client_secret"].as_str(), Some("hunter2"));

        let mut both: Value = toml::from_str("[c]\nclient_secret = \"x\"\nclient_secret_file = \"s.txt\"\n").unwrap();
        load_secret_files(&mut both, &mut Vec::new(), &dir, &mut errors);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].to_string().contains("c.client_secret_file"));
    }
}
