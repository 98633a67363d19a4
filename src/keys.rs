//! API keys: parsing `id:secret,...`, generating the start-up key, and finding the key a
//! presented secret belongs to in constant time. The first key is the admin key.
//! Secrets live only here and in the child-environment scrub list; nothing here logs them.

use std::fmt;

/// One API key. `Debug` never prints the secret.
#[derive(Clone)]
pub struct Key {
    pub id: String,
    pub secret: String,
    pub limits: KeyLimits,
}

/// Per-key limits from `[keys.<id>]` in claudeway.toml. `None` = no limit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyLimits {
    pub requests_per_minute: Option<u32>,
    pub max_concurrent: Option<usize>,
    pub daily_budget_usd: Option<f64>,
    pub monthly_budget_usd: Option<f64>,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// The configured keys, in order; `keys[0]` is the admin.
#[derive(Debug, Clone)]
pub struct Keys {
    keys: Vec<Key>,
    /// True when no key was configured and one was generated at start.
    pub generated: bool,
}

impl Keys {
    pub fn new(keys: Vec<Key>, generated: bool) -> Result<Keys, String> {
        if keys.is_empty() {
            return Err("no API keys configured".into());
        }
        for (i, k) in keys.iter().enumerate() {
            validate_id(&k.id)?;
            if k.secret.is_empty() {
                return Err(format!("API key `{}` has an empty secret", k.id));
            }
            for other in &keys[..i] {
                if other.id == k.id {
                    return Err(format!(
                        "API key id `{}` appears twice; ids must be unique",
                        k.id
                    ));
                }
                if other.secret == k.secret {
                    return Err(format!(
                        "API keys `{}` and `{}` share a secret; give each key its own",
                        other.id, k.id
                    ));
                }
            }
        }
        Ok(Keys { keys, generated })
    }

    /// One generated key, id `default`: `sk-` and 64 hex characters from the OS random source.
    pub fn generate() -> Keys {
        let secret = format!("sk-{}", crate::random::hex(32));
        let key = Key {
            id: "default".into(),
            secret,
            limits: KeyLimits::default(),
        };
        Keys {
            keys: vec![key],
            generated: true,
        }
    }

    pub fn all(&self) -> &[Key] {
        &self.keys
    }

    pub fn admin(&self) -> &Key {
        &self.keys[0]
    }

    pub fn is_admin(&self, id: &str) -> bool {
        self.keys[0].id == id
    }

    pub fn get(&self, id: &str) -> Option<&Key> {
        self.keys.iter().find(|k| k.id == id)
    }

    /// The key whose secret equals `presented`. Every secret is compared, each in constant
    /// time, so the answer's timing does not depend on which key (if any) matched.
    pub fn authenticate(&self, presented: &str) -> Option<&Key> {
        let mut found = None;
        for key in &self.keys {
            if constant_time_eq(key.secret.as_bytes(), presented.as_bytes()) {
                found = Some(key);
            }
        }
        found
    }
}

/// Parses `id:secret[,id:secret...]`; the secret is everything after the first `:`.
pub fn parse_list(list: &str) -> Result<Vec<Key>, String> {
    let mut keys = Vec::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((id, secret)) = entry.split_once(':') else {
            // Never echo the entry: it may be a bare secret.
            return Err(format!(
                "key entry {} has no `:`; write keys as `id:secret,id2:secret2`",
                keys.len() + 1
            ));
        };
        let (id, secret) = (id.trim(), secret.trim());
        if id.is_empty() || secret.is_empty() {
            return Err(format!(
                "key entry {} has an empty id or secret; write keys as `id:secret`",
                keys.len() + 1
            ));
        }
        keys.push(Key {
            id: id.into(),
            secret: secret.into(),
            limits: KeyLimits::default(),
        });
    }
    if keys.is_empty() {
        return Err("the key list is empty; write keys as `id:secret,id2:secret2`".into());
    }
    Ok(keys)
}

/// Key ids become directory names under LOG_DIR, so they are kept to a safe alphabet.
pub fn validate_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && !id.starts_with(['_', '.', '-'])
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "key id `{id}` is not allowed: use 1-64 of A-Z a-z 0-9 _ - . not starting with _ . or -"
        ))
    }
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() != b.len()) as u8;
    let n = a.len().max(b.len());
    for i in 0..n {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0xff);
        diff |= x ^ y;
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists() {
        let keys = parse_list(" a:one , b:two:with:colons,").unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[1].secret, "two:with:colons");
        assert!(parse_list("nocolon").unwrap_err().contains("no `:`"));
        assert!(!parse_list("nocolon-secret")
            .unwrap_err()
            .contains("nocolon-secret"));
        assert!(parse_list(":x").is_err());
        assert!(parse_list("x:").is_err());
        assert!(parse_list(" , ").is_err());
    }

    #[test]
    fn rejects_duplicates_and_bad_ids() {
        assert!(Keys::new(parse_list("a:1,a:2").unwrap(), false)
            .unwrap_err()
            .contains("twice"));
        assert!(Keys::new(parse_list("a:1,b:1").unwrap(), false)
            .unwrap_err()
            .contains("share"));
        assert!(Keys::new(parse_list("../x:1").unwrap(), false).is_err());
        assert!(Keys::new(parse_list("_unauthorized:1").unwrap(), false).is_err());
    }

    #[test]
    fn authenticates_and_generates() {
        let keys = Keys::new(parse_list("admin:s1,ci:s2").unwrap(), false).unwrap();
        assert_eq!(keys.authenticate("s2").unwrap().id, "ci");
        assert!(keys.authenticate("s").is_none());
        assert!(keys.authenticate("s22").is_none());
        assert!(keys.is_admin("admin"));
        let generated = Keys::generate();
        let secret = &generated.admin().secret;
        assert_eq!(secret.len(), 67);
        assert!(secret.starts_with("sk-"));
        assert_ne!(secret, &Keys::generate().admin().secret);
        assert!(!format!("{:?}", generated).contains(secret.as_str()));
    }
}
