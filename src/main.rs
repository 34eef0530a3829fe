use std::process::ExitCode;

use clap::{Parser, Subcommand};

use callgate::app::{Application, shutdown_signal};
use callgate::config::{Config, JwtConfig, JwtKey};
use callgate::infra::auth::{DevToken, mint_dev_token};
use secrecy::ExposeSecret;

#[derive(Parser)]
#[command(name = "callgate", version, about = "Control plane for calls on LiveKit")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (the default).
    Serve,
    /// Print a development user token signed with JWT_SECRET.
    Token {
        #[arg(long)]
        user: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        gender: Option<String>,
        #[arg(long = "role")]
        roles: Vec<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 86_400)]
        ttl: u64,
    },
    /// Print the OpenAPI document (as served at /openapi.json).
    Openapi,
    /// Write .env.example, the README's configuration table and the Helm
    /// chart's settings from the configuration schema (in the repository's
    /// root).
    ConfigDocs {
        /// Only say which of them differ from the schema (exit 1 if any).
        #[arg(long)]
        check: bool,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve().await,
        Command::Token { user, name, gender, roles, ttl } => {
            print_token(&user, name.as_deref(), gender.as_deref(), &roles, ttl)
        }
        Command::Openapi => print_openapi(),
        Command::ConfigDocs { check } => config_docs(check),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("callgate: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_openapi() -> anyhow::Result<()> {
    println!("{}", callgate::http::document().to_pretty_json()?);
    Ok(())
}

async fn serve() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    callgate::telemetry::init(config.log_format, &config.log_filter);
    let app = Application::build(config).await?;
    tracing::info!(port = app.port(), admin_port = ?app.admin_port(), "callgate listening");
    let stop = app.stop_token();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        stop.cancel();
    });
    app.run_until_stopped().await
}

fn print_token(
    user: &str,
    name: Option<&str>,
    gender: Option<&str>,
    roles: &[String],
    ttl: u64,
) -> anyhow::Result<()> {
    let config = JwtConfig::from_env()?;
    let JwtKey::Hmac(secret) = &config.key else {
        anyhow::bail!("configuration: JWT_SECRET: missing (development tokens are signed with it)");
    };
    callgate::domain::UserId::parse(user).map_err(|e| anyhow::anyhow!("--user: {e}"))?;
    let token = DevToken { user, name, gender, roles, ttl: std::time::Duration::from_secs(ttl) };
    println!("{}", mint_dev_token(secret.expose_secret(), &config, &token)?);
    Ok(())
}

fn config_docs(check: bool) -> anyhow::Result<()> {
    let mut stale = Vec::new();
    for document in &callgate::config::docs::DOCUMENTS {
        let current = std::fs::read_to_string(document.path)
            .map_err(|e| anyhow::anyhow!("{} (run in the repository's root): {e}", document.path))?;
        let wanted = document.render(&current).map_err(anyhow::Error::msg)?;
        if wanted == current {
            continue;
        }
        stale.push(document.path);
        if !check {
            std::fs::write(document.path, wanted)?;
            println!("wrote {}", document.path);
        }
    }
    if check && !stale.is_empty() {
        anyhow::bail!(
            "{} differ from the configuration schema: run `cargo run -- config-docs`",
            stale.join(", ")
        );
    }
    Ok(())
}
