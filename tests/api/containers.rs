//! The container files cannot be built or run here (no Docker engine), so
//! they are checked as files. docker-compose.yml is validated against the
//! Compose specification's JSON schema (vendored in deploy/schema/, applied
//! by tests/containers/yamlcheck.py with the `jsonschema` package of
//! deploy/local.sh's venv) and must agree with what the loopback stack uses:
//! .env.example, livekit.yaml, coturn/turnserver.conf and deploy/local.sh's
//! pieces (the pinned LiveKit in deploy/lib/provision.sh, the ports in
//! deploy/lib/services.sh).
//! deploy/Dockerfile must build in stages, run as a non-root user, expose the
//! service's port and copy only files that exist; its HEALTHCHECK command is
//! run for real against a running service.
//!
//! Each check returns the problems it finds, so the last tests show that a
//! broken file is caught.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use reqwest::Url;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::spawn_app;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// Runs tests/containers/yamlcheck.py with `input` on its stdin: whether it
/// found the input fine, and what it printed.
fn yamlcheck(args: &[&str], input: &str) -> (bool, String) {
    let python = std::env::var("CALLGATE_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut child = Command::new(&python)
        .arg(repo("tests/containers/yamlcheck.py"))
        .args(args)
        .current_dir(repo(""))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {python}: {e}"));
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write to yamlcheck.py");
    let out = child.wait_with_output().expect("yamlcheck.py ran");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    match out.status.code() {
        Some(0) => (true, stdout),
        Some(1) if !stdout.is_empty() => (false, stdout),
        _ => panic!(
            "yamlcheck.py {args:?} failed ({}); $CALLGATE_PYTHON needs PyYAML and jsonschema \
             (deploy/local.sh up installs them): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

fn yaml(text: &str) -> Value {
    let (ok, json) = yamlcheck(&["json", "-"], text);
    assert!(ok, "{json}");
    serde_json::from_str(&json).expect("yamlcheck.py prints JSON")
}

fn schema_problems(compose: &str) -> Vec<String> {
    let (_, out) = yamlcheck(&["validate", "deploy/schema/compose-spec.json", "-"], compose);
    out.lines().map(String::from).collect()
}

/// `KEY=VALUE` lines, as `set -a; . ./.env.example` reads them.
fn env_file(text: &str) -> BTreeMap<String, String> {
    let lines = text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'));
    lines
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("not KEY=VALUE: {l}"));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// A top-level `NAME=value` assignment of a script of deploy/local.sh's.
fn shell_var(script: &str, name: &str) -> String {
    let prefix = format!("{name}=");
    let line = script.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("no {name}="));
    line[prefix.len()..].trim_matches('"').to_owned()
}

/// The text of a YAML scalar as a program reading its environment sees it.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn url(raw: &str) -> Url {
    Url::parse(raw).unwrap_or_else(|e| panic!("{raw}: {e}"))
}

fn port_of(raw: &str) -> u16 {
    url(raw).port().unwrap_or_else(|| panic!("{raw} names no port"))
}

/// `turn:127.0.0.1:3478?transport=udp` -> 3478
fn turn_port(uri: &str) -> u16 {
    let host_port = uri.split('?').next().unwrap_or_default();
    let port = host_port.rsplit(':').next().unwrap_or_default();
    port.parse().unwrap_or_else(|_| panic!("{uri} names no port"))
}

/// A value as `docker compose` passes it to the container, given the
/// variables set where it runs: `${NAME:-default}` is NAME if set and not
/// empty, else the default; `${NAME}` is NAME or nothing.
fn interpolated(value: &str, set: &BTreeMap<&str, &str>) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(at) = rest.find("${") {
        out.push_str(&rest[..at]);
        let Some(end) = rest[at..].find('}') else { break };
        let inner = &rest[at + 2..at + end];
        let (name, default) = inner.split_once(":-").unwrap_or((inner, ""));
        out.push_str(set.get(name).copied().filter(|v| !v.is_empty()).unwrap_or(default));
        rest = &rest[at + end + 1..];
    }
    out.push_str(rest);
    out
}

fn same(problems: &mut Vec<String>, what: &str, found: &Value, wanted: &Value) {
    if found != wanted {
        problems.push(format!("{what} is {found}, wanted {wanted}"));
    }
}

/// The host file mounted where the service's command reads its config
/// (`<flag> <path>` in `command`, `./source:<path>` in `volumes`).
fn mounted_config(service: &Value, flag: &str) -> Option<String> {
    let command: Vec<String> = service["command"].as_array()?.iter().map(text).collect();
    let at = command.iter().position(|a| a == flag)?;
    let path = command.get(at + 1)?;
    service["volumes"].as_array()?.iter().find_map(|v| {
        let mut parts = v.as_str()?.split(':');
        let (source, target) = (parts.next()?, parts.next()?);
        (target == path).then(|| source.to_owned())
    })
}

fn published(service: &Value) -> Vec<String> {
    service["ports"].as_array().map(|p| p.iter().map(text).collect()).unwrap_or_default()
}

struct Files {
    compose: Value,
    env: BTreeMap<String, String>,
    livekit: Value,
    livekit_compose: Value,
    turnserver: String,
    /// deploy/lib/provision.sh: the pinned versions.
    provision_sh: String,
    /// deploy/lib/services.sh: the loopback stack's ports.
    services_sh: String,
}

impl Files {
    fn load() -> Files {
        Files {
            compose: yaml(&read("docker-compose.yml")),
            env: env_file(&read(".env.example")),
            livekit: yaml(&read("livekit.yaml")),
            livekit_compose: yaml(&read("deploy/livekit.compose.yaml")),
            turnserver: read("coturn/turnserver.conf"),
            provision_sh: read("deploy/lib/provision.sh"),
            services_sh: read("deploy/lib/services.sh"),
        }
    }

    fn dev(&self, key: &str) -> &str {
        self.env.get(key).unwrap_or_else(|| panic!(".env.example has no {key}"))
    }

    fn service(&self, name: &str) -> &Value {
        &self.compose["services"][name]
    }
}

/// The callgate service is configured as .env.example configures the dev
/// service, except where containers must differ; the other services match.
fn compose_env_problems(f: &Files) -> Vec<String> {
    let mut problems = Vec::new();
    let env = &f.service("callgate")["environment"];
    for (key, dev) in &f.env {
        let Some(value) = env.get(key) else {
            problems.push(format!("callgate's environment has no {key} (.env.example: {dev:?})"));
            continue;
        };
        let wanted = match key.as_str() {
            // the other containers, by service name on the compose network
            "DATABASE_URL" | "REDIS_URL" => {
                let mut other = url(dev);
                let host = if key == "DATABASE_URL" { "postgres" } else { "redis" };
                other.set_host(Some(host)).expect("a URL with a host");
                other.to_string()
            }
            // log collectors read JSON; the image defaults to it too
            "LOG_FORMAT" => "json".to_owned(),
            // the development secrets and sign-in only when asked for
            // (`CALLGATE_DEV=true docker compose up`)
            "CALLGATE_DEV" => "false".to_owned(),
            _ => dev.clone(),
        };
        let found = interpolated(&text(value), &BTreeMap::new());
        same(&mut problems, &format!("callgate's {key}"), &json!(found), &json!(wanted));
    }
    let api_url = format!("http://livekit:{}", port_of(f.dev("LIVEKIT_URL")));
    same(&mut problems, "callgate's LIVEKIT_API_URL", &env["LIVEKIT_API_URL"], &json!(api_url));

    let db = url(f.dev("DATABASE_URL"));
    let pg = &f.service("postgres")["environment"];
    same(&mut problems, "POSTGRES_USER", &pg["POSTGRES_USER"], &json!(db.username()));
    same(&mut problems, "POSTGRES_PASSWORD", &pg["POSTGRES_PASSWORD"], &json!(db.password()));
    same(&mut problems, "POSTGRES_DB", &pg["POSTGRES_DB"], &json!(db.path().trim_start_matches('/')));

    // The same host ports as the loopback stack (and so as .env.example).
    let ports = [
        ("postgres", "PG_PORT", port_of(f.dev("DATABASE_URL"))),
        ("redis", "REDIS_PORT", port_of(f.dev("REDIS_URL"))),
        ("livekit", "LK_PORT", port_of(f.dev("LIVEKIT_URL"))),
    ];
    for (service, var, port) in ports {
        same(
            &mut problems,
            &format!("deploy/lib/services.sh's {var}"),
            &json!(shell_var(&f.services_sh, var)),
            &json!(port.to_string()),
        );
        let mapping = format!("127.0.0.1:{port}:{port}");
        if !published(f.service(service)).contains(&mapping) {
            problems.push(format!("{service} does not publish {mapping}"));
        }
    }
    let port = f.dev("PORT");
    let mapping = format!("127.0.0.1:{port}:{port}");
    if !published(f.service("callgate")).contains(&mapping) {
        problems.push(format!("callgate does not publish {mapping}"));
    }
    problems
}

/// LiveKit: the pinned version, and a config with the dev key pair, the
/// webhook to callgate, the TURN secret, and otherwise livekit.yaml's values.
fn livekit_problems(f: &Files) -> Vec<String> {
    let mut problems = Vec::new();
    let service = f.service("livekit");
    let version = shell_var(&f.provision_sh, "LIVEKIT_VERSION");
    same(&mut problems, "deploy/lib/provision.sh's LIVEKIT_VERSION", &json!(version), &json!("1.13.5"));
    let image = format!("livekit/livekit-server:v{version}");
    same(&mut problems, "LiveKit's image", &service["image"], &json!(image));
    let source = mounted_config(service, "--config");
    same(&mut problems, "LiveKit's config", &json!(source), &json!("./deploy/livekit.compose.yaml"));

    let conf = &f.livekit_compose;
    let key = f.dev("LIVEKIT_API_KEY");
    same(&mut problems, "LiveKit's keys", &conf["keys"], &json!({key: f.dev("LIVEKIT_API_SECRET")}));
    same(&mut problems, "LiveKit's webhook.api_key", &conf["webhook"]["api_key"], &json!(key));
    let webhook = format!("http://callgate:{}/webhooks/livekit", f.dev("PORT"));
    same(&mut problems, "LiveKit's webhook.urls", &conf["webhook"]["urls"], &json!([webhook]));
    same(&mut problems, "LiveKit's port", &conf["port"], &json!(port_of(f.dev("LIVEKIT_URL"))));
    for (i, turn) in conf["rtc"]["turn_servers"].as_array().into_iter().flatten().enumerate() {
        let what = format!("LiveKit's rtc.turn_servers[{i}]");
        same(&mut problems, &format!("{what}.secret"), &turn["secret"], &json!(f.dev("TURN_SECRET")));
        same(&mut problems, &format!("{what}.ttl"), &json!(text(&turn["ttl"])), &json!(f.dev("TURN_TTL")));
    }
    let ports = published(service);
    for (port, suffix) in [(&conf["rtc"]["tcp_port"], ""), (&conf["rtc"]["udp_port"], "/udp")] {
        let mapping = format!("127.0.0.1:{port}:{port}{suffix}");
        if !ports.contains(&mapping) {
            problems.push(format!("livekit does not publish {mapping}"));
        }
    }

    // The Redis LiveKit Egress shares with LiveKit: the stack's own.
    let redis = format!(
        "redis:{}",
        port_of(f.service("callgate")["environment"]["REDIS_URL"].as_str().unwrap_or(""))
    );
    same(&mut problems, "LiveKit's redis.address", &conf["redis"]["address"], &json!(redis));
    let local_redis = format!("127.0.0.1:{}", port_of(f.dev("REDIS_URL")));
    same(&mut problems, "livekit.yaml's redis.address", &f.livekit["redis"]["address"], &json!(local_redis));

    // Everything else as in livekit.yaml (deploy/livekit.compose.yaml's
    // header explains the differences).
    let common = |conf: &Value| {
        let mut conf = conf.clone();
        for (section, key) in [("", "bind_addresses"), ("", "redis"), ("rtc", "ips"), ("webhook", "urls")] {
            let map = if section.is_empty() { Some(&mut conf) } else { conf.get_mut(section) };
            if let Some(map) = map.and_then(Value::as_object_mut) {
                map.remove(key);
            }
        }
        conf
    };
    let (compose, local) = (common(conf), common(&f.livekit));
    let keys: BTreeSet<&String> =
        compose.as_object().into_iter().chain(local.as_object()).flat_map(|m| m.keys()).collect();
    for key in keys {
        if compose.get(key) != local.get(key) {
            problems.push(format!("deploy/livekit.compose.yaml's {key} differs from livekit.yaml's"));
        }
    }
    problems
}

/// Coturn runs the repo's coturn/turnserver.conf, whose secret and port are
/// the ones callgate hands out.
fn coturn_problems(f: &Files) -> Vec<String> {
    let mut problems = Vec::new();
    let service = f.service("coturn");
    let source = mounted_config(service, "-c");
    same(&mut problems, "Coturn's config", &json!(source), &json!("./coturn/turnserver.conf"));
    // Its relays must reach LiveKit's ports published on the host's loopback.
    same(&mut problems, "Coturn's network_mode", &service["network_mode"], &json!("host"));

    let conf: BTreeMap<&str, &str> = f
        .turnserver
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split_once('=').unwrap_or((l, "")))
        .collect();
    if !conf.contains_key("use-auth-secret") {
        problems.push("coturn/turnserver.conf lacks use-auth-secret".into());
    }
    let secret = conf.get("static-auth-secret").copied();
    same(&mut problems, "Coturn's static-auth-secret", &json!(secret), &json!(f.dev("TURN_SECRET")));
    let port = conf.get("listening-port").copied().unwrap_or("3478");
    same(
        &mut problems,
        "deploy/lib/services.sh's TURN_PORT",
        &json!(shell_var(&f.services_sh, "TURN_PORT")),
        &json!(port),
    );
    for uri in f.dev("TURN_URIS").split(',').chain(f.dev("STUN_URIS").split(',')) {
        same(&mut problems, &format!("the port of {uri}"), &json!(turn_port(uri).to_string()), &json!(port));
    }
    problems
}

struct Instruction {
    keyword: String,
    args: String,
}

/// Dockerfile instructions, continuation lines joined, comments dropped.
fn instructions(dockerfile: &str) -> Vec<Instruction> {
    let mut all = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(part) = line.strip_suffix('\\') {
            current.push_str(part);
            current.push(' ');
            continue;
        }
        current.push_str(line);
        let (keyword, args) = current.split_once(char::is_whitespace).unwrap_or((&current, ""));
        all.push(Instruction { keyword: keyword.to_uppercase(), args: args.trim().to_owned() });
        current.clear();
    }
    all
}

/// `rust:1-bookworm` -> bookworm, `debian:bookworm-slim` -> bookworm
fn debian_release(image: &str) -> Option<&str> {
    let tag = image.split_once(':')?.1;
    tag.split('-').find(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase()) && *w != "slim")
}

fn dockerfile_problems(dockerfile: &str, dockerignore: &str, port: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let mut stages: Vec<Vec<Instruction>> = Vec::new();
    for instruction in instructions(dockerfile) {
        if instruction.keyword == "FROM" {
            stages.push(Vec::new());
        }
        match stages.last_mut() {
            Some(stage) => stage.push(instruction),
            None => problems.push(format!("{} before the first FROM", instruction.keyword)),
        }
    }
    let from = |stage: &[Instruction]| -> Vec<String> {
        stage.first().map(|i| i.args.split_whitespace().map(String::from).collect()).unwrap_or_default()
    };
    let names: Vec<String> = stages.iter().filter_map(|s| from(s).get(2).cloned()).collect();
    let [first, .., last] = stages.as_slice() else {
        problems.push("not a multi-stage build (one FROM)".into());
        return problems;
    };
    let (builder, runtime) = (from(first)[0].clone(), from(last)[0].clone());
    if !builder.starts_with("rust:") {
        problems.push(format!("the build stage starts from {builder}, not a rust image"));
    }
    // The binary links the builder's glibc.
    if debian_release(&builder).is_none() || debian_release(&builder) != debian_release(&runtime) {
        problems.push(format!("{builder} and {runtime} are not the same Debian release"));
    }

    let last_of = |keyword: &str| last.iter().rfind(|i| i.keyword == keyword).map(|i| i.args.clone());
    match last_of("USER") {
        None => problems.push("the final stage runs as root (no USER)".into()),
        Some(user) if matches!(user.split(':').next(), Some("root" | "0")) => {
            problems.push(format!("the final stage runs as root (USER {user})"));
        }
        Some(_) => {}
    }
    match last_of("HEALTHCHECK") {
        Some(check) if check.contains("CMD") => {}
        other => problems.push(format!("the final stage has no HEALTHCHECK command ({other:?})")),
    }
    let exposed = last_of("EXPOSE").unwrap_or_default();
    if !exposed.split_whitespace().any(|p| p == port || p == format!("{port}/tcp")) {
        problems.push(format!("the final stage does not EXPOSE {port} (EXPOSE {exposed})"));
    }

    let ignored: Vec<&str> =
        dockerignore.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    for copy in stages.iter().flatten().filter(|i| i.keyword == "COPY" || i.keyword == "ADD") {
        let words: Vec<&str> = copy.args.split_whitespace().collect();
        let (flags, paths): (Vec<&str>, Vec<&str>) = words.iter().partition(|w| w.starts_with("--"));
        if let Some(stage) = flags.iter().find_map(|f| f.strip_prefix("--from=")) {
            if !names.iter().any(|n| n == stage) {
                problems.push(format!("COPY --from={stage}: no such stage"));
            }
            continue;
        }
        let Some((_, sources)) = paths.split_last() else {
            problems.push(format!("{} {}: no source", copy.keyword, copy.args));
            continue;
        };
        for source in sources {
            let source = source.trim_start_matches("./").trim_end_matches('/');
            if !repo(source).exists() {
                problems.push(format!("COPY {source}: no such file in the repo"));
            }
            let hidden = |p: &&str| {
                source == *p
                    || source.starts_with(&format!("{p}/"))
                    || p.strip_prefix('*').is_some_and(|s| source.ends_with(s))
            };
            if ignored.iter().any(hidden) {
                problems.push(format!("COPY {source}: excluded from the build context by .dockerignore"));
            }
        }
    }
    problems
}

/// The exec form of the image's HEALTHCHECK command.
fn healthcheck_command(dockerfile: &str) -> Vec<String> {
    let check =
        instructions(dockerfile).into_iter().rfind(|i| i.keyword == "HEALTHCHECK").expect("a HEALTHCHECK");
    let (_, command) = check.args.split_once("CMD").expect("HEALTHCHECK ... CMD");
    serde_json::from_str(command.trim()).expect("HEALTHCHECK CMD in exec form (a JSON array)")
}

async fn healthcheck_passes(command: &[String], port: u16) -> bool {
    let status = tokio::process::Command::new(&command[0])
        .args(&command[1..])
        .env("PORT", port.to_string())
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .expect("the health check command runs");
    status.success()
}

#[test]
fn the_compose_file_follows_the_compose_specification() {
    let problems = schema_problems(&read("docker-compose.yml"));
    assert!(problems.is_empty(), "docker-compose.yml: {problems:#?}");
}

#[test]
fn compose_and_env_example_agree_on_every_dev_value() {
    let problems = compose_env_problems(&Files::load());
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn compose_ships_with_the_development_sign_in_off_unless_started_with_it() {
    let f = Files::load();
    let environment = f.service("callgate")["environment"].as_object().expect("callgate's environment");
    let switch = text(&environment["CALLGATE_DEV"]);
    assert_eq!(interpolated(&switch, &BTreeMap::new()), "false", "docker compose up: {switch}");
    let asked = BTreeMap::from([("CALLGATE_DEV", "true")]);
    assert_eq!(interpolated(&switch, &asked), "true", "CALLGATE_DEV=true docker compose up turns it on");

    // As compose starts callgate when nobody asked: it refuses the file's published secrets.
    let env: BTreeMap<String, String> =
        environment.iter().map(|(k, v)| (k.clone(), interpolated(&text(v), &BTreeMap::new()))).collect();
    let refused = callgate::config::Config::from_lookup(|name| env.get(name).cloned())
        .expect_err("the development secrets are refused without the switch");
    assert!(refused.reason.contains("development"), "{refused}");
    let mut asked_env = env.clone();
    asked_env.insert("CALLGATE_DEV".into(), "true".into());
    let config = callgate::config::Config::from_lookup(|name| asked_env.get(name).cloned())
        .expect("with the switch, the file's settings start the service");
    assert!(config.dev_mode);
}

#[test]
fn compose_runs_livekit_1_13_5_with_a_config_whose_keys_and_webhook_match() {
    let problems = livekit_problems(&Files::load());
    assert!(problems.is_empty(), "{problems:#?}");
}

/// LiveKit Egress (deploy/egress/egress.yaml) signs with the dev key pair,
/// dials the LiveKit clients dial, shares LiveKit's Redis, and answers its
/// status where deploy/lib/services.sh looks.
fn egress_problems(f: &Files) -> Vec<String> {
    let mut problems = Vec::new();
    let conf = yaml(&read("deploy/egress/egress.yaml"));
    same(&mut problems, "egress's api_key", &conf["api_key"], &json!(f.dev("LIVEKIT_API_KEY")));
    same(&mut problems, "egress's api_secret", &conf["api_secret"], &json!(f.dev("LIVEKIT_API_SECRET")));
    same(&mut problems, "egress's ws_url", &conf["ws_url"], &json!(f.dev("LIVEKIT_URL")));
    same(&mut problems, "egress's redis", &conf["redis"], &f.livekit["redis"]);
    let port = shell_var(&f.services_sh, "EGRESS_HEALTH_PORT");
    same(&mut problems, "egress's health_port", &json!(text(&conf["health_port"])), &json!(port));
    // A room composite must fit on two cores.
    let cost = conf["cpu_cost"]["room_composite_cpu_cost"].as_f64().unwrap_or(4.0);
    if cost >= 2.0 {
        problems
            .push(format!("egress's room_composite_cpu_cost {cost} refuses a room composite on two cores"));
    }
    same(
        &mut problems,
        "egress's version",
        &json!(shell_var(&f.provision_sh, "EGRESS_VERSION")),
        &json!("1.8.6"),
    );
    problems
}

#[test]
fn egress_uses_the_dev_keys_livekits_redis_and_fits_two_cores() {
    let problems = egress_problems(&Files::load());
    assert!(problems.is_empty(), "{problems:#?}");
}

/// The volume (by name) a service mounts at `path`.
fn volume_at(service: &Value, path: &str) -> Option<String> {
    let mounts = service["volumes"].as_array()?;
    mounts.iter().map(text).find_map(|m| {
        let mut parts = m.split(':');
        let (source, target) = (parts.next()?, parts.next()?);
        (target == path).then(|| source.to_owned())
    })
}

/// Compose's egress: the pinned image, the loopback stack's config (checked
/// above) on the host network it was written for, after Redis and LiveKit,
/// writing into a named volume callgate mounts at RECORDING_DIR.
fn compose_egress_problems(f: &Files) -> Vec<String> {
    let mut problems = Vec::new();
    let egress = f.service("egress");
    let version = shell_var(&f.provision_sh, "EGRESS_VERSION");
    same(&mut problems, "egress's image", &egress["image"], &json!(format!("livekit/egress:v{version}")));
    same(&mut problems, "egress's network", &egress["network_mode"], &json!("host"));
    same(&mut problems, "egress's capabilities", &egress["cap_add"], &json!(["SYS_ADMIN"]));
    let file = text(&egress["environment"]["EGRESS_CONFIG_FILE"]);
    same(
        &mut problems,
        "egress's config",
        &json!(volume_at(egress, &file)),
        &json!("./deploy/egress/egress.yaml"),
    );
    for dependency in ["redis", "livekit"] {
        same(
            &mut problems,
            &format!("egress waits for {dependency}"),
            &egress["depends_on"][dependency]["condition"],
            &json!("service_healthy"),
        );
    }
    let dir = f.dev("RECORDING_DIR");
    let written = volume_at(egress, dir);
    let read = volume_at(f.service("callgate"), dir);
    if written.is_none() || written != read {
        problems.push(format!("egress writes {written:?} at {dir}, callgate reads {read:?} there"));
    }
    if let Some(name) = &written
        && f.compose["volumes"].get(name).is_none()
    {
        problems.push(format!("the volume {name} is not declared"));
    }
    problems
}

#[test]
fn compose_runs_egress_writing_into_the_volume_callgate_reads_recordings_from() {
    let problems = compose_egress_problems(&Files::load());
    assert!(problems.is_empty(), "{problems:#?}");
    let mut broken = Files::load();
    broken.compose["services"]["callgate"]["volumes"] = json!(["other:/var/lib/callgate/recordings"]);
    let problems = compose_egress_problems(&broken);
    assert!(problems.iter().any(|p| p.starts_with("egress writes")), "not caught: {problems:#?}");
}

#[test]
fn compose_runs_coturn_with_the_repo_config_and_the_shared_secret() {
    let problems = coturn_problems(&Files::load());
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_dockerfile_builds_in_stages_and_runs_unprivileged_with_a_health_check() {
    let port = Files::load().dev("PORT").to_owned();
    let problems = dockerfile_problems(&read("deploy/Dockerfile"), &read(".dockerignore"), &port);
    assert!(problems.is_empty(), "{problems:#?}");
}

/// The builder stage before its first build: Cargo.toml (plus `extra`),
/// Cargo.lock and the stubs of deploy/stub-targets.sh, less `remove`. Cargo
/// reads the whole manifest, and refuses one naming a missing file, before
/// it looks for the target asked for: a target that does not exist tells the
/// two apart without building anything.
fn cargo_accepts_the_stubs(extra: &str, remove: Option<&str>) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("callgate-stubs-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    std::fs::write(dir.join("Cargo.toml"), read("Cargo.toml") + extra).expect("write Cargo.toml");
    std::fs::copy(repo("Cargo.lock"), dir.join("Cargo.lock")).expect("copy Cargo.lock");
    std::fs::copy(repo("deploy/stub-targets.sh"), dir.join("stub-targets.sh")).expect("copy the script");
    let stubbed = Command::new("sh").arg("stub-targets.sh").current_dir(&dir).status().expect("sh runs");
    assert!(stubbed.success(), "stub-targets.sh failed");
    if let Some(file) = remove {
        std::fs::remove_file(dir.join(file)).expect("a stub to remove");
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "--offline", "--locked", "--bin", "no-such-target"])
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .output()
        .expect("cargo runs");
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if stderr.contains("no bin target named `no-such-target`") { Ok(()) } else { Err(stderr) }
}

#[test]
fn the_image_dependency_layer_gives_cargo_a_file_for_every_target() {
    cargo_accepts_the_stubs("", None).expect("Cargo accepts the stubbed manifest");
    let added = "\n[[bench]]\nname = \"added_later\"\nharness = false\n";
    cargo_accepts_the_stubs(added, None).expect("a bench added later is stubbed too");
    let refused = cargo_accepts_the_stubs("", Some("benches/consent_latency.rs"));
    assert!(refused.is_err_and(|e| e.contains("can't find `consent_latency` bench")));
}

#[tokio::test]
async fn the_image_health_check_passes_only_while_the_service_answers_200() {
    let command = healthcheck_command(&read("deploy/Dockerfile"));
    let app = spawn_app().await;
    let port = app.address.rsplit(':').next().and_then(|p| p.parse().ok()).expect("the app's port");
    assert!(healthcheck_passes(&command, port).await, "{command:?} against a running service");

    let unavailable = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = unavailable.local_addr().expect("address").port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = unavailable.accept().await {
            let mut request = [0u8; 1024];
            let _ = conn.read(&mut request).await;
            let _ = conn.write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n").await;
        }
    });
    assert!(!healthcheck_passes(&command, port).await, "healthy although /health answers 503");

    let closed =
        std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port();
    assert!(!healthcheck_passes(&command, closed).await, "healthy although nothing listens");
}

#[test]
fn a_compose_file_the_specification_refuses_is_caught() {
    let misspelt = read("docker-compose.yml").replace("depends_on:", "depend_on:");
    let problems = schema_problems(&misspelt);
    assert!(problems.iter().any(|p| p.contains("'depend_on'")), "{problems:#?}");

    let (ok, duplicate) = yamlcheck(&["json", "-"], "services:\n  a: {image: x}\n  a: {image: y}\n");
    assert!(!ok && duplicate.contains("duplicate key 'a'"), "{duplicate}");
}

#[test]
fn values_out_of_step_with_the_loopback_stack_are_caught() {
    let mut f = Files::load();
    let env = &mut f.compose["services"]["callgate"]["environment"];
    env["TURN_SECRET"] = json!("another-secret");
    env.as_object_mut().expect("a mapping").remove("RINGING_TIMEOUT");
    f.compose["services"]["livekit"]["image"] = json!("livekit/livekit-server:v1.12.0");
    f.livekit_compose["keys"] = json!({"devkey": "another-livekit-secret-0123456789abcdef"});
    f.livekit_compose["logging"]["level"] = json!("debug");
    f.turnserver = f.turnserver.replace("static-auth-secret=", "static-auth-secret=x");

    let problems = [compose_env_problems(&f), livekit_problems(&f), coturn_problems(&f)].concat();
    let expected = [
        "callgate's TURN_SECRET",
        "has no RINGING_TIMEOUT",
        "LiveKit's image",
        "LiveKit's keys",
        "logging differs",
        "static-auth-secret",
    ];
    for needle in expected {
        assert!(problems.iter().any(|p| p.contains(needle)), "{needle:?} not caught: {problems:#?}");
    }
}

#[test]
fn a_dockerfile_running_as_root_or_copying_what_is_not_there_is_caught() {
    let dockerfile = read("deploy/Dockerfile");
    let dockerignore = read(".dockerignore");
    let check = |extra: &str| dockerfile_problems(&format!("{dockerfile}\n{extra}\n"), &dockerignore, "8080");

    assert!(check("USER root").iter().any(|p| p.contains("runs as root")));
    assert!(check("HEALTHCHECK NONE").iter().any(|p| p.contains("no HEALTHCHECK")));
    assert!(check("EXPOSE 9000").iter().any(|p| p.contains("does not EXPOSE 8080")));
    assert!(check("COPY config.toml ./").iter().any(|p| p.contains("config.toml: no such file")));
    assert!(check("COPY target/release/callgate ./").iter().any(|p| p.contains("excluded")));
    assert!(check("COPY --from=build /x /x").iter().any(|p| p.contains("no such stage")));
    let single = dockerfile_problems("FROM debian:bookworm-slim\nUSER 1\n", &dockerignore, "8080");
    assert!(single.iter().any(|p| p.contains("not a multi-stage build")), "{single:?}");
}
