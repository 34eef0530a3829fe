//! The cluster deployment, deploy/helm/callgate, cannot be installed here (no
//! Kubernetes), so it is checked offline. `helm lint --strict`; `helm
//! template` with the default values and with ci/cluster-values.yaml (many
//! replicas, autoscaled, an Ingress, existing Secrets), each rendering
//! validated by kubeconform against the Kubernetes JSON schemas that the
//! kubernetes-validate package ships (strict: an unknown field is an error;
//! an unknown kind too), for the oldest Kubernetes the chart accepts and the
//! newest the package knows. Nothing is downloaded: deploy/local.sh installs
//! the tools ($CALLGATE_HELM, $CALLGATE_KUBECONFORM, the venv's
//! kubernetes-validate) and tests/cluster/k8s.py lays the schemas out.
//!
//! Then what no schema knows: every setting the service reads has a place in
//! the chart; the pods are probed, unprivileged and kept available; LiveKit's
//! nodes share callgate's Redis and send their webhooks to its Service; the
//! real LiveKit binary parses the config the chart writes for it; and the
//! real callgate drains on SIGTERM within the grace the chart gives it.
//! The last tests break the chart and show that each check catches it.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::helpers::binary::{free_port, launch};
use crate::helpers::events::{EventStream, try_connect};
use crate::helpers::{base_config, isolated_database, jwt_secret};

const CHART: &str = "deploy/helm/callgate";
const CLUSTER_VALUES: &str = "deploy/helm/callgate/ci/cluster-values.yaml";
/// The chart's `kubeVersion` floor, and the newest kubernetes-validate ships.
const KUBERNETES: [&str; 2] = ["1.30.0", "1.37.0"];
const NEWEST: &str = "1.37.0";
const RELEASE: &str = "calls";
const NAMESPACE: &str = "calls";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// Runs a tool named by `var` (deploy/local.sh exports them): whether it
/// succeeded, its stdout and its stderr.
fn run(var: &str, fallback: &str, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let program = std::env::var(var).unwrap_or_else(|_| fallback.to_owned());
    let mut child = Command::new(&program)
        .args(args)
        .current_dir(repo(""))
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {program} (${var}; deploy/local.sh up installs it): {e}"));
    if let Some(input) = stdin {
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write to the tool's stdin");
    }
    let out = child.wait_with_output().expect("the tool ran");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

fn helm(args: &[&str]) -> Result<String, String> {
    match run("CALLGATE_HELM", "helm", args, None) {
        (true, stdout, _) => Ok(stdout),
        (false, stdout, stderr) => Err(format!("helm {}:\n{stdout}{stderr}", args.join(" "))),
    }
}

/// `helm lint --strict` of the chart in `dir`: its output, or why it failed.
fn lint(dir: &Path, values: Option<&str>) -> Result<String, String> {
    let dir = dir.to_str().expect("a UTF-8 path");
    let mut args = vec!["lint", "--strict", "--kube-version", NEWEST, dir];
    if let Some(values) = values {
        args.extend(["--values", values]);
    }
    let out = helm(&args)?;
    // --strict fails on warnings; an error that still exits 0 would show here.
    if out.contains("[WARNING]") || out.contains("[ERROR]") { Err(out) } else { Ok(out) }
}

/// `helm template` of the chart in `dir` with `values` files and `--set`s.
fn render_in(dir: &Path, values: &[&str], sets: &[&str], kubernetes: &str) -> Result<String, String> {
    let dir = dir.to_str().expect("a UTF-8 path");
    let mut args = vec!["template", RELEASE, dir, "--namespace", NAMESPACE, "--kube-version", kubernetes];
    for file in values {
        args.extend(["--values", file]);
    }
    for set in sets {
        args.extend(["--set", set]);
    }
    helm(&args)
}

fn render(values: &[&str]) -> String {
    render_in(&repo(CHART), values, &[], NEWEST).unwrap_or_else(|e| panic!("{e}"))
}

/// The two renderings every check reads: defaults, and the cluster example.
fn renderings() -> [(&'static str, String); 2] {
    [("default values", render(&[])), (CLUSTER_VALUES, render(&[CLUSTER_VALUES]))]
}

fn python(args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut all = vec!["tests/cluster/k8s.py"];
    all.extend_from_slice(args);
    run("CALLGATE_PYTHON", "python3", &all, stdin)
}

/// The directory of kubernetes-validate's schemas for `kubernetes`, laid out for kubeconform.
fn schemas(kubernetes: &str) -> String {
    let (ok, out, err) = python(&["schemas", env!("CARGO_TARGET_TMPDIR"), kubernetes], None);
    assert!(ok, "k8s.py schemas (the venv needs kubernetes-validate: deploy/local.sh up): {out}{err}");
    out.trim().to_owned()
}

/// kubeconform's verdict on `manifests`: its summary, or its complaints.
fn kubeconform(manifests: &str, kubernetes: &str) -> Result<String, String> {
    let location = format!("{}/{{{{.ResourceKind}}}}{{{{.KindSuffix}}}}.json", schemas(kubernetes));
    let args = ["-strict", "-summary", "-schema-location", &location, "-"];
    match run("CALLGATE_KUBECONFORM", "kubeconform", &args, Some(manifests)) {
        (true, stdout, _) => Ok(stdout),
        (false, stdout, stderr) => Err(format!("{stdout}{stderr}")),
    }
}

/// helm template's output as JSON documents.
fn documents(manifests: &str) -> Vec<Value> {
    let (ok, out, err) = python(&["json"], Some(manifests));
    assert!(ok, "k8s.py json: {out}{err}");
    serde_json::from_str(&out).expect("k8s.py prints JSON")
}

/// The rendered objects of one rendering, by kind and component.
struct Rendered {
    docs: Vec<Value>,
}

impl Rendered {
    fn of(manifests: &str) -> Rendered {
        Rendered { docs: documents(manifests) }
    }

    fn find(&self, kind: &str, component: &str) -> Option<&Value> {
        let mut found = self.docs.iter().filter(|d| {
            d["kind"] == kind && d["metadata"]["labels"]["app.kubernetes.io/component"] == component
        });
        let first = found.next();
        assert!(found.next().is_none(), "several {kind}s of {component}");
        first
    }

    fn get(&self, kind: &str, component: &str) -> &Value {
        self.find(kind, component).unwrap_or_else(|| panic!("no {kind} of {component}"))
    }

    fn pod(&self, component: &str) -> &Value {
        &self.get("Deployment", component)["spec"]["template"]
    }

    fn container(&self, component: &str) -> &Value {
        &self.pod(component)["spec"]["containers"][0]
    }

    fn config(&self) -> BTreeMap<String, String> {
        let data = self.get("ConfigMap", "callgate")["data"].as_object().expect("the ConfigMap's data");
        data.iter().map(|(k, v)| (k.clone(), v.as_str().expect("a string").to_owned())).collect()
    }
}

fn env_of(container: &Value) -> Vec<&Value> {
    container["env"].as_array().map(|e| e.iter().collect()).unwrap_or_default()
}

fn env_entry<'a>(container: &'a Value, name: &str) -> &'a Value {
    env_of(container).into_iter().find(|e| e["name"] == name).unwrap_or_else(|| panic!("no env {name}"))
}

/// Where an env entry reads its Secret: (name, key).
fn secret_ref(container: &Value, name: &str) -> (String, String) {
    let by = &env_entry(container, name)["valueFrom"]["secretKeyRef"];
    (by["name"].as_str().unwrap_or_default().to_owned(), by["key"].as_str().unwrap_or_default().to_owned())
}

/// What Kubernetes does to `$(NAME)` in an env value or an argument.
fn expand(text: &str, vars: &[(&str, &str)]) -> String {
    vars.iter().fold(text.to_owned(), |text, (name, value)| text.replace(&format!("$({name})"), value))
}

/// The environment variables the service reads: the configuration schema's.
fn settings_the_service_reads() -> BTreeSet<String> {
    callgate::config::schema::vars().map(|var| var.name.to_owned()).collect()
}

/// The callgate pod's settings: ConfigMap keys and env names.
fn settings_in_the_chart(r: &Rendered) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = r.config().into_keys().collect();
    names.extend(env_of(r.container("callgate")).iter().filter_map(|e| e["name"].as_str()).map(String::from));
    names
}

fn settings_problems(r: &Rendered, reads: &BTreeSet<String>) -> Vec<String> {
    let chart = settings_in_the_chart(r);
    let mut problems: Vec<String> = reads
        .difference(&chart)
        .map(|n| format!("{n}: read by the service, absent from the chart"))
        .collect();
    // REDIS_PASSWORD only feeds $(REDIS_PASSWORD) in REDIS_URL.
    let unknown = chart.iter().filter(|n| !reads.contains(*n) && *n != "REDIS_PASSWORD");
    problems.extend(unknown.map(|n| format!("{n}: set by the chart, read by nobody")));
    problems
}

/// The pod-template labels a selector must match.
fn selects(selector: &Value, pod: &Value) -> bool {
    let wanted = selector["matchLabels"].as_object().expect("matchLabels");
    !wanted.is_empty() && wanted.iter().all(|(k, v)| &pod["metadata"]["labels"][k] == v)
}

fn livekit_config(r: &Rendered) -> String {
    env_entry(r.container("livekit"), "LIVEKIT_CONFIG")["value"].as_str().expect("a value").to_owned()
}

fn yaml_value(text: &str) -> Value {
    documents(text).into_iter().next().expect("one YAML document")
}

/// What the rendering says that no schema checks.
fn deployment_problems(r: &Rendered) -> Vec<String> {
    let mut problems = Vec::new();
    let mut check = |ok: bool, what: &str| {
        if !ok {
            problems.push(what.to_owned());
        }
    };
    let config = r.config();
    let (pod, callgate) = (r.pod("callgate"), r.container("callgate"));
    let port_of = |name: &str| {
        let ports = callgate["ports"].as_array().expect("ports");
        ports.iter().find(|p| p["name"] == name).map(|p| p["containerPort"].to_string())
    };
    check(port_of("http").as_ref() == config.get("PORT"), "the container's http port is PORT");
    check(port_of("admin").as_ref() == config.get("ADMIN_PORT"), "the container's admin port is ADMIN_PORT");
    for (probe, path) in
        [("readinessProbe", "/ready"), ("livenessProbe", "/health"), ("startupProbe", "/health")]
    {
        let get = &callgate[probe]["httpGet"];
        check(get["path"] == path && get["port"] == "http", &format!("{probe} is GET {path} on http"));
    }
    check(config.get("CALLGATE_DEV").map(String::as_str) == Some("false"), "CALLGATE_DEV is false");

    // Unprivileged: the image's user (deploy/Dockerfile's USER 10001), nothing writable but /tmp.
    let user = read("deploy/Dockerfile").lines().rfind(|l| l.starts_with("USER ")).map(|l| l[5..].to_owned());
    let uid = user.as_deref().and_then(|u| u.split(':').next()).unwrap_or_default().to_owned();
    let security = &pod["spec"]["securityContext"];
    check(security["runAsNonRoot"] == true, "the callgate pod runs as non-root");
    check(security["runAsUser"].as_u64() == uid.parse().ok(), "the callgate pod runs as the image's user");
    for component in ["callgate", "livekit", "coturn"] {
        let context = &r.container(component)["securityContext"];
        check(
            context["readOnlyRootFilesystem"] == true,
            &format!("{component}'s root file system is read-only"),
        );
        check(context["allowPrivilegeEscalation"] == false, &format!("{component} cannot escalate"));
        check(
            r.pod(component)["spec"]["securityContext"]["runAsNonRoot"] == true,
            &format!("{component} non-root"),
        );
        check(
            r.container(component)["resources"]["requests"].is_object(),
            &format!("{component} requests resources"),
        );
    }

    // Kept available: a PodDisruptionBudget over the callgate pods and the LiveKit nodes.
    for component in ["callgate", "livekit"] {
        let budget = r.find("PodDisruptionBudget", component);
        let covers = budget.is_some_and(|b| selects(&b["spec"]["selector"], r.pod(component)));
        check(covers, &format!("a PodDisruptionBudget selects the {component} pods"));
    }
    let service = r.get("Service", "callgate");
    check(
        selects(&serde_json::json!({"matchLabels": service["spec"]["selector"]}), pod),
        "the Service selects callgate",
    );

    // Shutdown: preStop, then SIGTERM; the grace covers both (the drain is measured below).
    let spec = &pod["spec"];
    let grace = spec["terminationGracePeriodSeconds"].as_u64().unwrap_or(0);
    let pre_stop = callgate["lifecycle"]["preStop"]["sleep"]["seconds"].as_u64().unwrap_or(0);
    check(pre_stop > 0 && grace >= pre_stop + 25, "terminationGracePeriodSeconds >= preStop + 25 s of drain");

    // LiveKit: host networking, one per node, on callgate's Redis, webhooks to callgate's Service.
    let lk = r.pod("livekit");
    check(lk["spec"]["hostNetwork"] == true, "LiveKit uses host networking");
    let anti =
        &lk["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0];
    check(
        anti["topologyKey"] == "kubernetes.io/hostname" && selects(&anti["labelSelector"], lk),
        "one LiveKit per node (required anti-affinity)",
    );
    let lk_config = yaml_value(&livekit_config(r));
    let service_port =
        &service["spec"]["ports"].as_array().expect("ports").iter().find(|p| p["name"] == "http");
    let webhook = format!(
        "http://{}.{NAMESPACE}.svc:{}/webhooks/livekit",
        service["metadata"]["name"].as_str().unwrap_or_default(),
        service_port.map(|p| p["port"].to_string()).unwrap_or_default()
    );
    check(
        lk_config["webhook"]["urls"] == serde_json::json!([webhook]),
        "LiveKit's webhook goes to the Service",
    );
    let key = config.get("LIVEKIT_API_KEY").cloned().unwrap_or_default();
    check(lk_config["webhook"]["api_key"] == key.as_str(), "LiveKit signs webhooks with LIVEKIT_API_KEY");
    check(lk_config["keys"][&key] == "$(LIVEKIT_API_SECRET)", "LiveKit's key pair is callgate's");
    let redis_url = env_entry(callgate, "REDIS_URL")["value"].as_str().unwrap_or_default().to_owned();
    let redis = reqwest::Url::parse(&expand(&redis_url, &[("REDIS_PASSWORD", "pw")])).expect("REDIS_URL");
    let address = format!("{}:{}", redis.host_str().unwrap_or_default(), redis.port().unwrap_or(6379));
    check(lk_config["redis"]["address"] == address.as_str(), "LiveKit uses callgate's Redis");
    let db = redis.path().trim_start_matches('/').to_owned();
    check(lk_config["redis"]["db"].as_u64() == db.parse().ok(), "LiveKit uses callgate's Redis database");
    let lk_service = r.get("Service", "livekit");
    let api = format!(
        "http://{}.{NAMESPACE}.svc:{}",
        lk_service["metadata"]["name"].as_str().unwrap_or_default(),
        lk_config["port"]
    );
    check(config.get("LIVEKIT_API_URL") == Some(&api), "callgate calls LiveKit's Service");
    check(
        selects(&serde_json::json!({"matchLabels": lk_service["spec"]["selector"]}), lk),
        "LiveKit's Service selects it",
    );

    // The shared secrets come from one place for all three.
    for (component, name) in [("callgate", "LIVEKIT_API_SECRET"), ("livekit", "LIVEKIT_API_SECRET")] {
        check(
            secret_ref(r.container(component), name) == secret_ref(callgate, "LIVEKIT_API_SECRET"),
            &format!("{component} reads {name} where callgate does"),
        );
    }
    for component in ["livekit", "coturn"] {
        check(
            secret_ref(r.container(component), "TURN_SECRET") == secret_ref(callgate, "TURN_SECRET"),
            &format!("{component} reads TURN_SECRET where callgate does"),
        );
    }
    let coturn = r.container("coturn");
    let args: Vec<&str> = coturn["args"].as_array().expect("args").iter().filter_map(Value::as_str).collect();
    check(args.contains(&"--use-auth-secret"), "Coturn takes TURN REST credentials");
    check(args.contains(&"--static-auth-secret=$(TURN_SECRET)"), "Coturn's secret is TURN_SECRET");
    check(r.pod("coturn")["spec"]["hostNetwork"] == true, "Coturn uses host networking");

    // Optional parts, where enabled: the autoscaler scales callgate; the Ingress never exposes the admin port.
    if let Some(hpa) = r.find("HorizontalPodAutoscaler", "callgate") {
        let target = &hpa["spec"]["scaleTargetRef"];
        let name = &r.get("Deployment", "callgate")["metadata"]["name"];
        check(target["kind"] == "Deployment" && &target["name"] == name, "the autoscaler scales callgate");
        check(
            r.get("Deployment", "callgate")["spec"].get("replicas").is_none(),
            "replicas are the autoscaler's",
        );
    }
    for ingress in r.docs.iter().filter(|d| d["kind"] == "Ingress") {
        for rule in ingress["spec"]["rules"].as_array().into_iter().flatten() {
            for path in rule["http"]["paths"].as_array().into_iter().flatten() {
                check(
                    path["backend"]["service"]["port"]["name"] == "http",
                    "the Ingress routes to http only",
                );
            }
        }
    }
    problems.extend(egress_problems(r));
    problems
}

/// Egress's config as its pod reads it: EGRESS_CONFIG_BODY (with a Redis
/// password), else the file its ConfigMap mounts.
fn egress_config(r: &Rendered) -> Value {
    let container = r.container("egress");
    let env = env_of(container);
    if let Some(body) = env.iter().find(|e| e["name"] == "EGRESS_CONFIG_BODY") {
        return yaml_value(body["value"].as_str().unwrap_or_default());
    }
    let file = env.iter().find(|e| e["name"] == "EGRESS_CONFIG_FILE").map(|e| e["value"].clone());
    let mounted = container["volumeMounts"].as_array().into_iter().flatten().any(|m| {
        m["mountPath"] == "/etc/egress" && pod_volume(r.pod("egress"), &m["name"])["configMap"].is_object()
    });
    assert!(
        file == Some(Value::from("/etc/egress/config.yaml")) && mounted,
        "egress reads no config: {container}"
    );
    yaml_value(r.get("ConfigMap", "egress")["data"]["config.yaml"].as_str().unwrap_or_default())
}

fn pod_volume<'a>(pod: &'a Value, name: &Value) -> &'a Value {
    let volumes = pod["spec"]["volumes"].as_array().expect("volumes");
    volumes.iter().find(|v| &v["name"] == name).unwrap_or_else(|| panic!("no volume {name}"))
}

/// The claim a container mounts at `path` (None: nothing there).
fn claim_at(r: &Rendered, component: &str, path: &str) -> Option<String> {
    let mounts = r.container(component)["volumeMounts"].as_array()?;
    let mount = mounts.iter().find(|m| m["mountPath"] == path)?;
    let claim = &pod_volume(r.pod(component), &mount["name"])["persistentVolumeClaim"]["claimName"];
    claim.as_str().map(str::to_owned)
}

/// Where egress is enabled: it signs with callgate's LiveKit key pair,
/// joins rooms through the chart's LiveKit, talks to LiveKit over its
/// Redis, fits a room composite on two CPUs, is probed, and writes to the
/// ReadWriteMany claim callgate reads at RECORDING_DIR.
fn egress_problems(r: &Rendered) -> Vec<String> {
    let mut problems = Vec::new();
    let mut check = |ok: bool, what: &str| {
        if !ok {
            problems.push(what.to_owned());
        }
    };
    let Some(deployment) = r.find("Deployment", "egress") else {
        check(r.find("PersistentVolumeClaim", "egress").is_none(), "no recordings volume without egress");
        return problems;
    };
    let (egress, callgate, config) = (r.container("egress"), r.container("callgate"), r.config());
    check(
        secret_ref(egress, "LIVEKIT_API_SECRET") == secret_ref(callgate, "LIVEKIT_API_SECRET"),
        "egress reads LIVEKIT_API_SECRET where callgate does",
    );
    let key = config.get("LIVEKIT_API_KEY").cloned().unwrap_or_default();
    check(env_entry(egress, "LIVEKIT_API_KEY")["value"] == key.as_str(), "egress signs with LIVEKIT_API_KEY");
    let conf = egress_config(r);
    check(conf.get("api_secret").is_none(), "no secret in egress's config");
    let lk = yaml_value(&livekit_config(r));
    check(
        conf["redis"]["address"] == lk["redis"]["address"] && conf["redis"]["db"] == lk["redis"]["db"],
        "egress uses LiveKit's Redis",
    );
    if env_of(callgate).iter().any(|e| e["name"] == "REDIS_PASSWORD") {
        check(conf["redis"]["password"] == "$(REDIS_PASSWORD)", "egress has Redis's password");
        check(
            secret_ref(egress, "REDIS_PASSWORD") == secret_ref(callgate, "REDIS_PASSWORD"),
            "egress reads REDIS_PASSWORD where callgate does",
        );
    }
    let lk_service = r.get("Service", "livekit");
    let ws_url = format!(
        "ws://{}.{NAMESPACE}.svc:{}",
        lk_service["metadata"]["name"].as_str().unwrap_or_default(),
        lk["port"]
    );
    check(conf["ws_url"] == ws_url.as_str(), "egress joins rooms through LiveKit's Service");
    let cost = conf["cpu_cost"]["room_composite_cpu_cost"].as_f64().unwrap_or(4.0);
    check(cost < 2.0, "a room composite fits two CPUs (cpu_cost)");
    let health = egress["ports"].as_array().and_then(|p| p.iter().find(|p| p["name"] == "health").cloned());
    check(
        health.is_some_and(|p| p["containerPort"] == conf["health_port"])
            && egress["readinessProbe"]["httpGet"]["port"] == "health",
        "egress is probed on its health_port",
    );
    check(
        egress["resources"]["requests"]["cpu"].is_string()
            && egress["resources"]["limits"]["memory"].is_string(),
        "egress requests CPU and has a memory limit",
    );
    check(
        deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"].as_u64() >= Some(600),
        "egress has time to finish its recordings",
    );
    let dir = config.get("RECORDING_DIR").cloned().unwrap_or_default();
    let egress_dir =
        config.get("RECORDING_EGRESS_DIR").filter(|d| !d.is_empty()).cloned().unwrap_or(dir.clone());
    let read = claim_at(r, "callgate", &dir);
    check(read.is_some(), "callgate mounts the recordings at RECORDING_DIR");
    check(read.is_some() && claim_at(r, "egress", &egress_dir) == read, "egress writes where callgate reads");
    let shared = r.docs.iter().find(|d| {
        d["kind"] == "PersistentVolumeClaim" && read.as_deref().is_some_and(|c| d["metadata"]["name"] == c)
    });
    check(
        shared.is_some_and(|c| c["spec"]["accessModes"] == serde_json::json!(["ReadWriteMany"])),
        "the recordings claim is ReadWriteMany",
    );
    problems
}

#[test]
fn the_chart_lints_clean_with_its_default_values_and_the_cluster_example() {
    for values in [None, Some(CLUSTER_VALUES)] {
        if let Err(e) = lint(&repo(CHART), values) {
            panic!("{e}");
        }
    }
}

#[test]
fn every_rendering_is_valid_for_the_kubernetes_schemas_the_package_ships() {
    for (what, manifests) in renderings() {
        let kinds = documents(&manifests).len();
        for kubernetes in KUBERNETES {
            let summary = kubeconform(&manifests, kubernetes)
                .unwrap_or_else(|e| panic!("{what}, Kubernetes {kubernetes}: kubeconform refused:\n{e}"));
            let wanted = format!("Valid: {kinds}, Invalid: 0, Errors: 0, Skipped: 0");
            assert!(summary.contains(&wanted), "{what}, Kubernetes {kubernetes}: {summary}");
        }
    }
}

#[test]
fn every_setting_the_service_reads_has_a_place_in_the_chart() {
    let reads = settings_the_service_reads();
    for (what, manifests) in renderings() {
        let problems = settings_problems(&Rendered::of(&manifests), &reads);
        assert!(problems.is_empty(), "{what}: {problems:#?}");
    }
}

#[test]
fn the_pods_are_probed_unprivileged_kept_available_and_wired_to_each_other() {
    for (what, manifests) in renderings() {
        let r = Rendered::of(&manifests);
        let problems = deployment_problems(&r);
        assert!(problems.is_empty(), "{what}: {problems:#?}");
    }
    let cluster = Rendered::of(&render(&[CLUSTER_VALUES]));
    let hpa = cluster.get("HorizontalPodAutoscaler", "callgate");
    assert!(hpa["spec"]["minReplicas"].as_u64() > Some(1), "the cluster example runs many replicas: {hpa}");
}

/// `livekit-server ports` parses its config as the server does (strictly:
/// an unknown key is refused) and prints the ports, starting nothing.
fn livekit_parses(config: &str) -> Result<String, String> {
    let program = std::env::var("CALLGATE_LIVEKIT_SERVER").unwrap_or_else(|_| "livekit-server".into());
    let out = Command::new(&program)
        .arg("ports")
        .env_clear()
        .env("LIVEKIT_CONFIG", config)
        .env("REDIS_PASSWORD", "a-redis-password")
        .output()
        .unwrap_or_else(|e| panic!("run {program} ($CALLGATE_LIVEKIT_SERVER): {e}"));
    // It exits 0 whatever happens; what it prints tells.
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if text.contains("TCP Ports") { Ok(text) } else { Err(text) }
}

/// The rendered LiveKit config as the pod sees it: the secrets put in by
/// Kubernetes; no public address looked up by STUN (there is no network here).
fn livekit_config_in_the_pod(r: &Rendered) -> String {
    let secrets = [
        ("LIVEKIT_API_SECRET", "Zm9yLXRoZS1jbHVzdGVyLXRlc3Qtb25seS0wMTIzNDU2Nzg5+/="),
        ("TURN_SECRET", "dHVybi1mb3ItdGhlLWNsdXN0ZXItdGVzdC0wMTIzNDU2Nzg5"),
    ];
    expand(&livekit_config(r), &secrets).replace("use_external_ip: true", "use_external_ip: false")
}

#[test]
fn livekit_accepts_the_config_the_chart_writes_for_its_nodes() {
    for (what, manifests) in renderings() {
        let r = Rendered::of(&manifests);
        let ports = livekit_parses(&livekit_config_in_the_pod(&r)).unwrap_or_else(|e| panic!("{what}: {e}"));
        let lk = yaml_value(&livekit_config(&r));
        let (tcp, start, end) =
            (&lk["rtc"]["tcp_port"], &lk["rtc"]["port_range_start"], &lk["rtc"]["port_range_end"]);
        assert!(ports.contains(&format!("{tcp} - ICE/TCP")), "{what}: {ports}");
        assert!(ports.contains(&format!("{start}-{end} - ICE/UDP range")), "{what}: {ports}");
    }
    let unknown = livekit_config_in_the_pod(&Rendered::of(&render(&[]))) + "\nno_such_setting: 1\n";
    let refused = livekit_parses(&unknown).expect_err("an unknown key is refused");
    assert!(refused.contains("could not parse config"), "{refused}");
}

#[tokio::test]
async fn callgate_drains_on_sigterm_within_the_grace_the_chart_gives_it() {
    let r = Rendered::of(&render(&[]));
    let pod = &r.pod("callgate")["spec"];
    let grace = pod["terminationGracePeriodSeconds"].as_u64().expect("a grace");
    let pre_stop =
        r.container("callgate")["lifecycle"]["preStop"]["sleep"]["seconds"].as_u64().expect("a preStop");
    // Kubernetes sends SIGTERM after preStop and SIGKILL at the grace.
    let allowed = Duration::from_secs(grace - pre_stop);

    let config = base_config();
    let (database_url, prefix) = isolated_database(&config).await;
    let env = [("DATABASE_URL", database_url), ("ROOM_PREFIX", prefix)];
    let mut service = launch(free_port(), &env).await;
    let user = format!("u-{}", uuid::Uuid::new_v4().simple());
    let token = callgate::infra::auth::mint_dev_token(
        &jwt_secret(),
        &config.jwt,
        &callgate::infra::auth::DevToken {
            user: &user,
            name: None,
            gender: Some("female"),
            roles: &[],
            ttl: Duration::from_secs(600),
        },
    )
    .expect("a token");
    let url = format!("{}/api/v1/events", service.address.replacen("http", "ws", 1));
    let socket = try_connect(&url, Some(&token)).await.expect("an event stream opens, as clients keep one");
    let mut stream = EventStream::from_socket(socket);

    let pid = service.child.id().expect("the service's pid").to_string();
    let started = Instant::now();
    let signalled = Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
    assert!(signalled.success());
    let exited = tokio::time::timeout(allowed, service.child.wait()).await;
    let elapsed = started.elapsed();
    let status =
        exited.unwrap_or_else(|_| panic!("still running {allowed:?} after SIGTERM (the grace less preStop)"));
    assert!(status.expect("waited").success(), "a clean exit after SIGTERM");
    eprintln!("callgate drained and exited {elapsed:?} after SIGTERM (allowed: {allowed:?})");

    let mut closed = None;
    while let Some(frame) = stream.next_frame(Duration::from_secs(5)).await {
        if let Message::Close(frame) = frame {
            closed = frame;
            break;
        }
    }
    let frame = closed.expect("the stream was closed with a frame, not cut");
    assert_eq!(frame.code, CloseCode::Away, "{frame:?}");
}

/// A copy of the chart to break.
fn chart_copy() -> PathBuf {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).expect("a directory");
        for entry in std::fs::read_dir(from).expect("the chart").flatten() {
            let target = to.join(entry.file_name());
            if entry.path().is_dir() {
                copy(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), &target).expect("a copy");
            }
        }
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("chart-{}", uuid::Uuid::new_v4().simple()));
    copy(&repo(CHART), &dir);
    dir
}

fn edit(dir: &Path, file: &str, from: &str, to: &str) {
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).expect("a template");
    assert!(text.contains(from), "{file} has {from:?}");
    std::fs::write(&path, text.replacen(from, to, 1)).expect("write the template");
}

#[test]
fn a_chart_that_renders_what_kubernetes_refuses_is_caught() {
    let dir = chart_copy();
    edit(&dir, "templates/deployment.yaml", "readinessProbe:", "readynessProbe:");
    edit(
        &dir,
        "templates/deployment.yaml",
        "terminationGracePeriodSeconds: {{ $s.terminationGracePeriodSeconds }}",
        "terminationGracePeriodSeconds: \"{{ $s.terminationGracePeriodSeconds }}\"",
    );
    std::fs::write(
        dir.join("templates/widget.yaml"),
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n",
    )
    .expect("write a template");
    let manifests = render_in(&dir, &[], &[], NEWEST).expect("it still renders");
    let refused = kubeconform(&manifests, NEWEST).expect_err("kubeconform refuses it");
    for needle in [
        "'readynessProbe' not allowed",
        "terminationGracePeriodSeconds': got string",
        "could not find schema for Widget",
    ] {
        assert!(refused.contains(needle), "{needle:?} not caught:\n{refused}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_chart_helm_cannot_read_or_values_that_cannot_work_are_caught() {
    let dir = chart_copy();
    edit(&dir, "templates/service.yaml", "{{ .Values.service.type }}", "{{ .Values.service.type");
    let refused = lint(&dir, None).expect_err("helm lint refuses a broken template");
    assert!(refused.contains("service.yaml"), "{refused}");
    let _ = std::fs::remove_dir_all(&dir);

    let chart = repo(CHART);
    let cases = [
        ("shutdown.terminationGracePeriodSeconds=20", "Kubernetes would kill callgate before it has drained"),
        ("coturn.maxPort=55000", "overlaps livekit.rtc"),
        ("config.PORT=9000", "config.PORT: set by the chart"),
        ("livekit.enabled=false", "needs livekit.apiUrl"),
    ];
    for (set, needle) in cases {
        let refused = render_in(&chart, &[], &[set], NEWEST).expect_err(set);
        assert!(refused.contains(needle), "{set}: {refused}");
    }

    let mut reads = settings_the_service_reads();
    reads.insert("A_SETTING_ADDED_LATER".into());
    let problems = settings_problems(&Rendered::of(&render(&[])), &reads);
    assert!(
        problems.iter().any(|p| p.starts_with("A_SETTING_ADDED_LATER: read by the service")),
        "{problems:?}"
    );

    let mut r = Rendered::of(&render(&[]));
    for doc in r.docs.iter_mut().filter(|d| d["kind"] == "Deployment") {
        doc["spec"]["template"]["spec"]["hostNetwork"] = Value::Bool(false);
        doc["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] = Value::Bool(false);
    }
    r.docs.retain(|d| d["kind"] != "PodDisruptionBudget");
    let problems = deployment_problems(&r);
    for needle in
        ["LiveKit uses host networking", "callgate pod runs as non-root", "PodDisruptionBudget selects"]
    {
        assert!(problems.iter().any(|p| p.contains(needle)), "{needle:?} not caught: {problems:#?}");
    }
}

#[test]
fn egress_and_its_recordings_volume_come_only_with_egress_enabled_and_its_checks_catch_a_miswiring() {
    let chart = repo(CHART);
    let default = Rendered::of(&render(&[]));
    assert!(default.find("Deployment", "egress").is_none(), "no egress by default (RECORDING_POLICY off)");
    assert!(default.find("PersistentVolumeClaim", "egress").is_none());
    assert_eq!(claim_at(&default, "callgate", "/var/lib/callgate/recordings"), None);
    let refused = render_in(&chart, &[], &["config.RECORDING_POLICY=all_party"], NEWEST)
        .expect_err("recording with no recorder is refused");
    assert!(refused.contains("needs egress.enabled"), "{refused}");

    // Without a Redis password egress reads its ConfigMap's file.
    let sets = ["egress.enabled=true", "config.RECORDING_POLICY=all_party"];
    let manifests = render_in(&chart, &[], &sets, NEWEST).unwrap_or_else(|e| panic!("{e}"));
    kubeconform(&manifests, NEWEST).unwrap_or_else(|e| panic!("{e}"));
    let mut r = Rendered::of(&manifests);
    let problems = deployment_problems(&r);
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(
        egress_config(&r)["redis"],
        serde_json::json!({"address": "redis.example.internal:6379", "db": 0})
    );

    for doc in r.docs.iter_mut().filter(|d| d["kind"] == "Deployment") {
        if doc["metadata"]["labels"]["app.kubernetes.io/component"] == "egress" {
            doc["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][1]["mountPath"] =
                "/elsewhere".into();
        }
    }
    let problems = egress_problems(&r);
    assert!(problems.iter().any(|p| p == "egress writes where callgate reads"), "not caught: {problems:#?}");
}

#[test]
fn on_a_redis_cluster_callgate_and_livekit_get_every_seed_node() {
    let sets = ["redis.cluster=true", "redis.address=redis-0.data:6379\\,redis-1.data:6379"];
    let manifests = render_in(&repo(CHART), &[], &sets, NEWEST).unwrap_or_else(|e| panic!("{e}"));
    let r = Rendered::of(&manifests);
    let callgate = r.container("callgate");
    assert_eq!(env_entry(callgate, "REDIS_CLUSTER")["value"], "true");
    assert_eq!(
        env_entry(callgate, "REDIS_URL")["value"],
        "redis://redis-0.data:6379,redis://redis-1.data:6379",
        "callgate reads REDIS_URL as the comma-separated seed nodes"
    );
    let lk = yaml_value(&livekit_config(&r));
    assert_eq!(
        lk["redis"],
        serde_json::json!({"cluster_addresses": ["redis-0.data:6379", "redis-1.data:6379"]})
    );
    livekit_parses(&livekit_config_in_the_pod(&r)).unwrap_or_else(|e| panic!("LiveKit refuses it: {e}"));
    kubeconform(&manifests, NEWEST).unwrap_or_else(|e| panic!("{e}"));

    let single = Rendered::of(&render(&[]));
    assert_eq!(env_entry(single.container("callgate"), "REDIS_CLUSTER")["value"], "false");
    let refused = render_in(&repo(CHART), &[], &["redis.cluster=true", "redis.db=2"], NEWEST)
        .expect_err("a database other than 0 on a cluster is refused");
    assert!(refused.contains("redis.db must be 0"), "{refused}");
}
