//! The environment as a figment provider: each variable of the schema read
//! once, trimmed (blank is unset), checked against its rule and typed, under
//! its section. A variable that breaks its rule stops here, named with the
//! rule; what is left for `settings` to read is well-formed.

use std::time::Duration;

use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};

use super::ConfigError;
use super::schema::{Rule, SECTIONS, Unset, Var};

pub struct Environment<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    only: Option<&'static str>,
}

impl<'a> Environment<'a> {
    pub fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Environment { lookup, only: None }
    }

    /// The variables of one section only (the others are not read).
    pub fn section(self, key: &'static str) -> Self {
        Environment { only: Some(key), ..self }
    }

    /// `{section: {NAME: value}}`, every section present (maybe empty).
    pub fn values(&self) -> Result<Dict, ConfigError> {
        let mut sections = Dict::new();
        for section in SECTIONS.iter().filter(|s| self.only.is_none_or(|key| key == s.key)) {
            let mut values = Dict::new();
            for var in section.vars {
                if let Some(value) = self.value(var)? {
                    values.insert(var.name.to_owned(), value);
                }
            }
            sections.insert(section.key.to_owned(), Value::from(values));
        }
        Ok(sections)
    }

    fn value(&self, var: &'static Var) -> Result<Option<Value>, ConfigError> {
        let set = (self.lookup)(var.name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let raw = match (set, var.unset) {
            (Some(value), _) => value,
            (None, Unset::Default(value)) => value.to_owned(),
            (None, Unset::Off(_)) => return Ok(None),
            (None, Unset::Required) => return Err(ConfigError::new(var.name, "missing")),
        };
        var.rule.parse(&raw).map(Some).map_err(|reason| ConfigError::new(var.name, reason))
    }
}

impl Provider for Environment<'_> {
    fn metadata(&self) -> Metadata {
        Metadata::named("environment variables")
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let values = self.values().map_err(|e| figment::Error::from(e.reason).with_path(e.var))?;
        Ok(Profile::Default.collect(values))
    }
}

impl Rule {
    /// `raw` (trimmed, not blank) as the typed value `settings` reads, or
    /// why it breaks the rule.
    pub fn parse(&self, raw: &str) -> Result<Value, String> {
        match *self {
            Rule::Text => Ok(Value::from(raw)),
            Rule::List => {
                let items = raw.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from);
                Ok(Value::from(items.collect::<Vec<_>>()))
            }
            Rule::Flag => match raw.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Ok(Value::from(true)),
                "false" | "0" | "no" => Ok(Value::from(false)),
                _ => Err("must be true or false".into()),
            },
            Rule::Number(min, max) => bounded(raw, min, max).map(Value::from),
            Rule::Seconds(min, max) => bounded(raw, min, max).map(Duration::from_secs).and_then(duration),
            Rule::Millis(min, max) => bounded(raw, min, max).map(Duration::from_millis).and_then(duration),
            Rule::OneOf { words, aliases } => {
                let alias = aliases.iter().find(|(alias, _)| *alias == raw).map(|(_, word)| *word);
                match alias.or_else(|| words.iter().copied().find(|word| *word == raw)) {
                    Some(word) => Ok(Value::from(word)),
                    None => Err(format!("must be {}", either(words))),
                }
            }
            Rule::Url(schemes) => match schemes.iter().any(|s| raw.starts_with(&format!("{s}://"))) {
                true => Ok(Value::from(raw)),
                false => {
                    let schemes: Vec<String> = schemes.iter().map(|s| format!("{s}://")).collect();
                    let schemes: Vec<&str> = schemes.iter().map(String::as_str).collect();
                    Err(format!("must start with {}", either(&schemes)))
                }
            },
            Rule::Fetchable if fetchable(raw) => Ok(Value::from(raw)),
            Rule::Fetchable => Err(FETCHABLE.into()),
            Rule::Secret(min) if raw.len() < min => Err(format!("must be at least {min} characters")),
            Rule::Secret(_) => Ok(Value::from(raw)),
            Rule::SigningKey => signing_key(raw).map(|_| Value::from(raw)).map_err(String::from),
            Rule::PublicKey => {
                let pem = raw.replace("\\n", "\n");
                match pem.contains("-----BEGIN PUBLIC KEY-----") {
                    true => Ok(Value::from(pem)),
                    false => Err("must be a PEM public key".into()),
                }
            }
            Rule::HeaderName => match raw.parse::<http::HeaderName>() {
                Ok(_) => Ok(Value::from(raw)),
                Err(_) => Err("must be an HTTP header name".into()),
            },
        }
    }
}

/// A number of `min..=max`, or the range it missed.
fn bounded(raw: &str, min: u64, max: u64) -> Result<u64, String> {
    let value: u64 = raw.parse().map_err(|_| format!("malformed value {raw:?}"))?;
    match (min..=max).contains(&value) {
        true => Ok(value),
        false => Err(format!("must be between {min} and {max}, not {value}")),
    }
}

fn duration(value: Duration) -> Result<Value, String> {
    Value::serialize(value).map_err(|e| e.to_string())
}

/// `a`, `a or b`, `a, b or c`.
pub fn either(words: &[&str]) -> String {
    match words {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

pub const FETCHABLE: &str = "must be an https:// URL (http:// only to a loopback address)";

/// Keys fetched in the clear could be anybody's: https, or http on loopback only.
pub fn fetchable(url: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(url) else { return false };
    let host = url.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" => !host.is_empty(),
        "http" => loopback,
        _ => false,
    }
}

/// A Standard Webhooks secret as their libraries read it: an optional
/// `whsec_` prefix, then base64 of at least 16 bytes.
pub fn signing_key(secret: &str) -> Result<Vec<u8>, &'static str> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    let key = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, encoded)
        .map_err(|_| "must be whsec_ followed by base64")?;
    match key.len() >= 16 {
        true => Ok(key),
        false => Err("must decode to at least 16 bytes"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashMap};

    use proptest::prelude::*;

    use super::*;
    use crate::config::schema::{Example, vars};
    use crate::config::{Config, JwtConfig, JwtKey};

    #[test]
    fn each_variable_is_named_once_and_its_default_and_dev_value_keep_its_rule() {
        let mut names = BTreeSet::new();
        for var in vars() {
            assert!(names.insert(var.name), "{} twice", var.name);
            assert!(
                !var.doc.contains(['|', '\n']) && !var.chart_note.contains('\n'),
                "{}: one line",
                var.name
            );
            for value in [
                if let Unset::Default(value) = var.unset { Some(value) } else { None },
                if let Example::Value(value) = var.example { Some(value) } else { None },
            ]
            .into_iter()
            .flatten()
            {
                assert!(var.rule.parse(value).is_ok(), "{}={value} breaks its rule", var.name);
            }
        }
    }

    #[test]
    fn a_rule_names_what_it_wants() {
        let words = Rule::OneOf { words: &["pretty", "json"], aliases: &[("text", "pretty")] };
        assert_eq!(words.parse("text").expect("an alias"), Value::from("pretty"));
        assert_eq!(words.parse("xml").unwrap_err(), "must be pretty or json");
        let urls = Rule::Url(&["ws", "wss"]);
        assert_eq!(urls.parse("http://lk").unwrap_err(), "must start with ws:// or wss://");
        assert_eq!(Rule::Number(2, 100).parse("101").unwrap_err(), "must be between 2 and 100, not 101");
        assert_eq!(Rule::Seconds(1, 5).parse("-1").unwrap_err(), "malformed value \"-1\"");
        assert_eq!(Rule::Flag.parse("NO").expect("a flag"), Value::from(false));
        assert_eq!(Rule::List.parse(" a, ,b ,").expect("a list"), Value::from(vec!["a", "b"]));
    }

    #[test]
    fn the_token_command_needs_only_the_user_token_settings() {
        let vars = HashMap::from([("JWT_SECRET", "0123456789abcdef0123456789abcdef"), ("JWT_ISSUER", "app")]);
        let jwt =
            JwtConfig::from_lookup(|name| vars.get(name).map(|v| v.to_string())).expect("no database needed");
        assert!(matches!(jwt.key, JwtKey::Hmac(_)));
        assert_eq!((jwt.issuer.as_deref(), jwt.gender_claim.as_str()), (Some("app"), "gender"));
        let err = JwtConfig::from_lookup(|_| None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "configuration: JWT_SECRET: missing (or set JWT_PUBLIC_KEY or JWT_JWKS_URL)"
        );
    }

    fn any_variable() -> impl Strategy<Value = &'static str> {
        proptest::sample::select(vars().map(|var| var.name).collect::<Vec<_>>())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Whatever the environment holds, start-up gets a configuration or
        /// one line naming a variable of the schema; it never panics.
        #[test]
        fn any_value_of_any_variable_is_a_configuration_or_a_named_refusal(
            set in proptest::collection::vec((any_variable(), ".{0,40}"), 1..6),
        ) {
            let mut env: HashMap<&str, String> = vars()
                .filter_map(|var| match var.example {
                    Example::Value(value) => Some((var.name, value.to_owned())),
                    _ => None,
                })
                .collect();
            env.extend(set.into_iter());
            if let Err(err) = Config::from_lookup(|name| env.get(name).cloned()) {
                prop_assert!(crate::config::schema::find(err.var).is_some(), "{err}");
                prop_assert_eq!(err.to_string().lines().count(), 1, "{}", err);
            }
        }
    }
}
