//! The `portico` command: parse arguments, set up logging, load the config, run the server
//! and turn signals into a graceful drain. Only this file reads argv, env and signals.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};

#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use portico::config::{self, Severity};
use portico::Server;

#[derive(Parser, Debug)]
#[command(
    name = "portico",
    version,
    about = "A TLS-terminating HTTP/1.1 + HTTP/2 reverse proxy"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Configuration file (for the default `run`).
    #[arg(short, long, global = true, default_value = "config.yaml")]
    config: PathBuf,
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    /// Log level or filter (overrides RUST_LOG), e.g. `debug` or `portico=debug`.
    #[arg(long, global = true)]
    log_level: Option<String>,
    /// Unix socket for zero-downtime binary upgrades (`run`): a new Portico started with the
    /// same path takes over the listening sockets of the running one, which then drains.
    #[arg(long, global = true)]
    upgrade_socket: Option<PathBuf>,
    /// Reload by itself when the configuration file, or a certificate, key or CA file it
    /// names, changes (`run`; checked every 2 seconds).
    #[arg(long, global = true)]
    watch: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve with the configuration (the default).
    Run,
    /// Validate the configuration, print every problem, exit non-zero on errors.
    Check,
    /// Show which route a request would take and why, and what the backend would receive.
    Explain {
        /// The method, e.g. GET.
        method: String,
        /// The absolute URL, e.g. https://api.example.com/v1/users?x=1.
        url: String,
        /// A request header, `name: value` (repeatable).
        #[arg(short = 'H', long = "header")]
        headers: Vec<String>,
        /// The client address the backend would see (default 127.0.0.1).
        #[arg(long, default_value = "127.0.0.1")]
        client_ip: std::net::IpAddr,
        /// The listener the request arrives on (default: by the URL's scheme and port).
        #[arg(long)]
        listener: Option<String>,
        /// Output: text for people, json for tools.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Ask the running Portico (through the admin listener named in the config) to reload.
    Reload {
        /// Validate and show what would change without applying it.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format, cli.log_level.as_deref());
    match cli.command.unwrap_or(Command::Run) {
        Command::Check => check(&cli.config),
        Command::Run => run(&cli.config, cli.upgrade_socket, cli.watch),
        Command::Reload { dry_run } => reload(&cli.config, dry_run),
        Command::Explain {
            method,
            url,
            headers,
            client_ip,
            listener,
            format,
        } => explain(
            &cli.config,
            &method,
            &url,
            &headers,
            client_ip,
            listener,
            format,
        ),
    }
}

fn init_logging(format: LogFormat, level: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let filter = match level {
        Some(l) => EnvFilter::new(l),
        // rustls warns once per connection about what a client sent (an IP address as SNI,
        // as wrk and scanners send): any client could flood the log. Handshake failures are
        // counted in metrics and logged at debug by Portico itself, as nginx logs
        // client-caused TLS errors at `info`. An explicit level or RUST_LOG is used as given.
        None => EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new("info,rustls=error")),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn check(path: &Path) -> ExitCode {
    match config::load_located(path) {
        Ok((config, mut warnings, locations)) => {
            warnings.extend(portico::lint::lint(&config, &locations));
            for w in &warnings {
                println!("{w}");
            }
            let errors = warnings
                .iter()
                .filter(|d| d.severity == Severity::Error)
                .count();
            println!(
                "{}: OK ({} warning{})",
                path.display(),
                warnings.len() - errors,
                if warnings.len() == 1 { "" } else { "s" }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

fn explain(
    path: &Path,
    method: &str,
    url: &str,
    headers: &[String],
    client: std::net::IpAddr,
    listener: Option<String>,
    format: Format,
) -> ExitCode {
    let (config, _) = match config::load(path) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let question = match explain_question(method, url, headers, client, listener) {
        Ok(q) => q,
        Err(e) => {
            eprintln!("portico explain: {e}");
            return ExitCode::from(2);
        }
    };
    match portico::explain::explain(&config, &question) {
        Ok(answer) => {
            match format {
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&answer).unwrap_or_default()
                ),
                Format::Text => print!("{}", portico::explain::render(&answer)),
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("portico explain: {e}");
            ExitCode::FAILURE
        }
    }
}

fn explain_question(
    method: &str,
    url: &str,
    headers: &[String],
    client: std::net::IpAddr,
    listener: Option<String>,
) -> Result<portico::explain::Question, String> {
    let method = http::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .map_err(|_| format!("invalid method {method:?}"))?;
    let url: http::Uri = url
        .parse()
        .map_err(|e| format!("invalid URL {url:?}: {e}"))?;
    let mut map = http::HeaderMap::new();
    for h in headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| format!("header {h:?} is not `name: value`"))?;
        let name = http::HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("invalid header name in {h:?}"))?;
        let value = http::HeaderValue::from_str(value.trim())
            .map_err(|_| format!("invalid header value in {h:?}"))?;
        map.append(name, value);
    }
    Ok(portico::explain::Question {
        method,
        url,
        headers: map,
        client,
        listener,
    })
}

fn reload(path: &Path, dry_run: bool) -> ExitCode {
    let admin = match config::load_admin(path) {
        Ok(Some(admin)) => admin,
        Ok(None) => {
            eprintln!(
                "{}: no `admin:` section; the running process can only be reloaded through its admin listener (or SIGHUP)",
                path.display()
            );
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    match portico::admin::client::post_reload(&admin, dry_run) {
        Ok((status, body)) => {
            let shown = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or_else(|| body.trim_end().to_owned());
            println!("{shown}");
            if status == 200 {
                ExitCode::SUCCESS
            } else {
                eprintln!("reload answered HTTP {status}");
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("portico: {e}");
            ExitCode::FAILURE
        }
    }
}

/// How often `run --watch` looks at the configuration files.
const WATCH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

fn run(path: &Path, upgrade_socket: Option<PathBuf>, watch: bool) -> ExitCode {
    let (config, warnings) = match config::load(path) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    for w in &warnings {
        tracing::warn!("{w}");
    }
    // With one CPU to run on (taskset, a one-core container) a work-stealing pool has one
    // worker anyway; the current-thread runtime then saves its cross-thread wake-ups.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut builder = if cpus == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (inherited, takeover) = match upgrade_socket.as_deref().map(portico::upgrade::take_over) {
        None | Some(Ok(None)) => (Vec::new(), None),
        Some(Ok(Some(mut takeover))) => {
            tracing::info!(
                listeners = takeover.sockets.len(),
                "took over the listening sockets of the running Portico"
            );
            (std::mem::take(&mut takeover.sockets), Some(takeover))
        }
        Some(Err(e)) => {
            eprintln!("portico: upgrade hand-over failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let mut server = match Server::bind_with(config, inherited).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("{e}");
                eprintln!("portico: {e}");
                if takeover.is_some() {
                    eprintln!("portico: the running Portico goes on serving");
                }
                return ExitCode::FAILURE;
            }
        };
        // Everything is bound and built: the previous process may drain now.
        if let Some(takeover) = takeover {
            if let Err(e) = takeover.ready() {
                tracing::warn!(error = %e, "could not tell the previous Portico to drain");
            }
        }
        let reloader = server.enable_reload(path.to_path_buf());
        if watch {
            tokio::spawn(Arc::clone(&reloader).watch(WATCH_INTERVAL));
        }
        if let Some(socket) = upgrade_socket {
            let (reloader, shutdown) = (Arc::clone(&reloader), server.shutdown_handle());
            tokio::spawn(async move {
                let served = portico::upgrade::serve(
                    &socket,
                    move || reloader.offered(),
                    move || shutdown.trigger(),
                )
                .await;
                if let Err(e) = served {
                    tracing::error!(path = %socket.display(), error = %e, "upgrade socket failed");
                }
            });
        }
        tokio::spawn(async move {
            use tokio::signal::unix::{signal, SignalKind};
            let Ok(mut hangups) = signal(SignalKind::hangup()) else {
                tracing::warn!("cannot listen for SIGHUP; reload through the admin listener");
                return;
            };
            while hangups.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading the configuration");
                reloader.reload(false).await;
            }
        });
        let shutdown = server.shutdown_handle();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown requested; send the signal again to exit at once");
            shutdown.trigger();
            wait_for_signal().await;
            tracing::warn!("second signal: exiting now");
            std::process::exit(1);
        });
        match server.run().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("{e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// SIGTERM or SIGINT (Ctrl-C).
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
