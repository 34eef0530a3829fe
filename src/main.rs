use std::process::ExitCode;

use clap::{Parser, Subcommand};

use callgate::app::{Application, shutdown_signal};
use callgate::config::{Config, JwtConfig, JwtKey};
use callgate::infra::auth::{DevToken, mint_dev_token};

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
    callgate::telemetry::init(config.log_format);
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
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let secret = var("JWT_SECRET").ok_or_else(|| anyhow::anyhow!("configuration: JWT_SECRET: missing"))?;
    let config = JwtConfig {
        key: JwtKey::Hmac(callgate::config::Secret::new(secret.clone())),
        issuer: var("JWT_ISSUER"),
        audience: var("JWT_AUDIENCE"),
        gender_claim: var("GENDER_CLAIM").unwrap_or_else(|| "gender".into()),
        max_age: None,
    };
    callgate::domain::UserId::parse(user).map_err(|e| anyhow::anyhow!("--user: {e}"))?;
    let token = DevToken { user, name, gender, roles, ttl: std::time::Duration::from_secs(ttl) };
    println!("{}", mint_dev_token(&secret, &config, &token)?);
    Ok(())
}
