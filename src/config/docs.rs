//! The documents written from the schema: `.env.example`, the README's
//! configuration table and the settings of the Helm chart's values.yaml.
//! `callgate config-docs` writes them; `tests::the_documents_agree_with_the_schema`
//! fails when one was edited by hand or the schema changed without them.

use super::schema::{Example, Helm, Rule, SECTIONS, Unset, Var, vars};
use super::source::either;

/// A file of the repository and how it is written from the schema (given
/// its current text: the README and values.yaml keep what lies outside
/// their generated parts).
pub struct Document {
    pub path: &'static str,
    render: fn(&str) -> Result<String, String>,
}

impl Document {
    pub fn render(&self, current: &str) -> Result<String, String> {
        (self.render)(current).map_err(|e| format!("{}: {e}", self.path))
    }
}

pub const DOCUMENTS: [Document; 4] = [
    Document { path: ".env.example", render: |_| Ok(env_example()) },
    Document { path: "README.md", render: readme },
    Document { path: "deploy/helm/callgate/values.yaml", render: helm_values },
    Document { path: "deploy/helm/callgate/templates/_helpers.tpl", render: helm_refusals },
];

const GENERATED: &str = "generated from src/config/schema.rs by `cargo run -- config-docs`";
const WIDTH: usize = 100;

const ENV_HEADER: &str = "\
# callgate's settings, one environment variable each, with the values of the
# loopback development stack (`deploy/local.sh up`), which exports them with
#   set -a; . ./.env.example; set +a
# so every value must be valid unquoted bash (no spaces; `?` `,` `:` are fine
# because assignments are not glob-expanded or word-split). A commented-out
# line is a variable left unset here. Secrets here are dev-only: never reuse them.
#
# Generated from src/config/schema.rs by `cargo run -- config-docs`: edit the
# schema, not this file (a unit test fails when they differ).
";

fn env_example() -> String {
    let mut out = String::from(ENV_HEADER);
    for section in SECTIONS {
        out.push_str(&format!(
            "\n# --- {} {}\n",
            section.title,
            "-".repeat(72_usize.saturating_sub(section.title.len()))
        ));
        for var in section.vars {
            out.extend(wrap(&comment(var), "# ").into_iter().map(|l| l + "\n"));
            match var.example {
                Example::Default => out.push_str(&format!("{}={}\n", var.name, default_value(var))),
                Example::Value(value) => out.push_str(&format!("{}={value}\n", var.name)),
                Example::Unset => out.push_str(&format!("# {}={}\n", var.name, default_value(var))),
            }
        }
    }
    out
}

const README_BEGIN: &str =
    "<!-- BEGIN configuration table: generated from src/config/schema.rs by `cargo run -- config-docs` -->";
const README_END: &str = "<!-- END configuration table -->";

fn readme(current: &str) -> Result<String, String> {
    let mut lines = Vec::new();
    for section in SECTIONS {
        lines.extend([format!("**{}**", section.title), String::new()]);
        lines.extend(["| variable | what | values | default |".to_owned(), "|---|---|---|---|".to_owned()]);
        for var in section.vars {
            let default = match var.unset {
                Unset::Default(value) => value.to_owned(),
                Unset::Required | Unset::Off(_) => default_text(var),
            };
            let cells = [format!("`{}`", var.name), var.doc.to_owned(), values(&var.rule), default];
            let cells: Vec<String> = cells.iter().map(|c| c.replace('|', "\\|")).collect();
            lines.push(format!("| {} |", cells.join(" | ")));
        }
        lines.push(String::new());
    }
    lines.pop();
    splice(current, README_BEGIN, README_END, &lines)
}

fn helm_values(current: &str) -> Result<String, String> {
    let begin = |what: &str| format!("# BEGIN {what}: {GENERATED}");
    let mut config = Vec::new();
    for section in SECTIONS {
        let vars: Vec<&Var> =
            section.vars.iter().filter(|v| matches!(v.helm, Helm::Config | Helm::Example(_))).collect();
        if vars.is_empty() {
            continue;
        }
        config.push(format!("  # --- {}", section.title));
        for var in vars {
            config.extend(wrap(&comment(var), "  # "));
            if !var.chart_note.is_empty() {
                config.extend(wrap(var.chart_note, "  # "));
            }
            let value = match var.helm {
                Helm::Example(value) => value.to_owned(),
                _ => default_value(var),
            };
            config.push(format!("  {}: {}", var.name, quoted(&value)));
        }
    }
    let by_chart: Vec<String> = vars()
        .filter_map(|v| match v.helm {
            Helm::Chart(from) => Some(format!("{} ({from})", v.name)),
            Helm::Config | Helm::Example(_) | Helm::Secret => None,
        })
        .collect();
    let secret: Vec<&str> = vars().filter(|v| matches!(v.helm, Helm::Secret)).map(|v| v.name).collect();
    config.push("  # --- Not here".to_owned());
    config.extend(wrap(&format!("Set by the chart: {}.", by_chart.join(", ")), "  # "));
    config.extend(wrap(&format!("In the Secret (secrets below): {}.", secret.join(", ")), "  # "));
    let secrets: Vec<String> = secret.iter().map(|name| format!("    {name}: \"\"")).collect();
    let text = splice(current, &begin("settings"), "# END settings", &config)?;
    splice(&text, &begin("secrets"), "# END secrets", &secrets)
}

/// The chart refuses under `config:` what it sets itself or keeps in a
/// Secret, and its own REDIS_PASSWORD (which feeds REDIS_URL).
fn helm_refusals(current: &str) -> Result<String, String> {
    let names = vars().filter(|v| matches!(v.helm, Helm::Chart(_) | Helm::Secret)).map(|v| v.name);
    let quoted: Vec<String> = names.chain(["REDIS_PASSWORD"]).map(|name| format!("\"{name}\"")).collect();
    let line = format!("{{{{- range $name := list {} }}}}", quoted.join(" "));
    let begin = format!("{{{{- /* BEGIN set by the chart: {GENERATED} */}}}}");
    splice(current, &begin, "{{- /* END set by the chart */}}", &[line])
}

/// `current` with the lines between the `begin` and `end` lines (matched
/// trimmed) replaced by `body`.
fn splice(current: &str, begin: &str, end: &str, body: &[String]) -> Result<String, String> {
    let lines: Vec<&str> = current.lines().collect();
    let find = |marker: &str, from: usize| {
        lines.iter().skip(from).position(|l| l.trim() == marker).map(|i| i + from)
    };
    let start = find(begin, 0).ok_or_else(|| format!("no line `{begin}`"))?;
    let stop = find(end, start).ok_or_else(|| format!("no line `{end}` after `{begin}`"))?;
    let mut out: Vec<String> = lines[..=start].iter().map(|l| l.to_string()).collect();
    out.extend(body.iter().cloned());
    out.extend(lines[stop..].iter().map(|l| l.to_string()));
    Ok(out.join("\n") + "\n")
}

/// A variable's comment in `.env.example` and values.yaml: its doc, its
/// values and its default.
fn comment(var: &Var) -> String {
    let mut doc = var.doc.chars();
    let first = doc.next().map(|c| c.to_ascii_uppercase()).into_iter();
    format!("{} [{}; {}]", first.chain(doc).collect::<String>(), values(&var.rule), default_text(var))
}

/// What a value must be, as the README's table says it.
pub fn values(rule: &Rule) -> String {
    match *rule {
        Rule::Text => "text".into(),
        Rule::List => "comma-separated".into(),
        Rule::Flag => "true or false".into(),
        Rule::Number(min, max) => format!("{min} to {max}"),
        Rule::Seconds(min, max) => format!("{min} to {max} s"),
        Rule::Millis(min, max) => format!("{min} to {max} ms"),
        Rule::OneOf { words, .. } => either(words),
        Rule::Url(schemes) => {
            let schemes: Vec<String> = schemes.iter().map(|s| format!("{s}://")).collect();
            let schemes: Vec<&str> = schemes.iter().map(String::as_str).collect();
            format!("{} URL", either(&schemes))
        }
        Rule::Fetchable => "https:// URL (http:// only to loopback)".into(),
        Rule::Secret(0) => "secret".into(),
        Rule::Secret(min) => format!("secret, {min}+ characters"),
        Rule::SigningKey => "secret, whsec_ + base64 of 16+ bytes".into(),
        Rule::PublicKey => "PEM public key".into(),
        Rule::HeaderName => "HTTP header name".into(),
    }
}

fn default_text(var: &Var) -> String {
    match var.unset {
        Unset::Required => "required".into(),
        Unset::Default(value) => format!("default {value}"),
        Unset::Off(meaning) => format!("unset: {meaning}"),
    }
}

fn default_value(var: &Var) -> String {
    match var.unset {
        Unset::Default(value) => value.to_owned(),
        Unset::Required | Unset::Off(_) => String::new(),
    }
}

/// A YAML double-quoted scalar (JSON's string syntax is one).
fn quoted(value: &str) -> String {
    serde_json::Value::from(value).to_string()
}

/// `text` in lines of at most `WIDTH` characters (a longer word stays whole),
/// each starting with `prefix`.
fn wrap(text: &str, prefix: &str) -> Vec<String> {
    let mut lines = vec![prefix.to_owned()];
    for word in text.split(' ') {
        let line = lines.last_mut().expect("one line at least");
        if line.len() > prefix.len() && line.len() + 1 + word.len() > WIDTH {
            lines.push(format!("{prefix}{word}"));
        } else {
            if line.len() > prefix.len() {
                line.push(' ');
            }
            line.push_str(word);
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documents_agree_with_the_schema() {
        let files = [
            include_str!("../../.env.example"),
            include_str!("../../README.md"),
            include_str!("../../deploy/helm/callgate/values.yaml"),
            include_str!("../../deploy/helm/callgate/templates/_helpers.tpl"),
        ];
        for (document, current) in DOCUMENTS.iter().zip(files) {
            let wanted = document.render(current).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                wanted == current,
                "{} differs from the configuration schema (src/config/schema.rs): run `cargo run -- config-docs`",
                document.path
            );
        }
    }

    #[test]
    fn a_document_without_its_markers_is_refused() {
        let err = DOCUMENTS[1].render("# callgate\n").unwrap_err();
        assert!(err.starts_with("README.md: no line `<!-- BEGIN configuration table"), "{err}");
    }

    #[test]
    fn the_comments_wrap_at_the_width_and_keep_long_words() {
        let long = "x".repeat(WIDTH + 10);
        let text = format!("{} {long} end", "word ".repeat(30).trim());
        let lines = wrap(&text, "# ");
        assert!(lines.iter().all(|l| l.starts_with("# ")), "{lines:?}");
        assert!(lines.iter().filter(|l| !l.contains(&long)).all(|l| l.len() <= WIDTH), "{lines:?}");
        assert_eq!(lines.join(" ").replace("# ", ""), text);
    }
}
