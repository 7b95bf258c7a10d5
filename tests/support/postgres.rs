//! A throwaway PostgreSQL cluster for tests and the load generator: `initdb` into a fresh folder
//! (as the unprivileged `postgres` user when run as root: initdb refuses root), started on a free
//! loopback port with a private socket folder, one database per gateway. The cluster is stopped
//! and its folder removed when the process that started it ends (a small reaper watches it, so
//! this holds after a panic too).
//!
//! The server programs come from `PG_BIN` when set, else the newest
//! `/usr/lib/postgresql/<version>/bin` (Debian's layout), else `PATH`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// The environment variable that runs the end-to-end suite on PostgreSQL.
pub const ENGINE_ENV: &str = "CREDIT_GATEWAY_TEST_ENGINE";

/// Whether this test run asks for PostgreSQL.
pub fn requested() -> bool {
    std::env::var(ENGINE_ENV).is_ok_and(|v| v == "postgres")
}

pub struct Cluster {
    pub dir: PathBuf,
    pub port: u16,
    bin: PathBuf,
    run_as: Option<String>,
    next: AtomicUsize,
    options: std::sync::Mutex<String>,
}

/// The cluster of this process, started on first use.
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| Cluster::start().unwrap_or_else(|e| panic!("PostgreSQL for tests: {e}")))
}

/// Where the server programs are.
pub fn bin_dir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    let found = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
        .ok()?;
    let path = String::from_utf8_lossy(&found.stdout).trim().to_string();
    (!path.is_empty()).then(|| PathBuf::from(path).parent().map(Path::to_path_buf))?
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(54329)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Cluster {
    fn start() -> Result<Cluster, String> {
        Self::start_with(None)
    }

    /// A cluster of its own that speaks TLS only (`hostssl` for every TCP client) with this
    /// certificate and key (PEM); psql and the gateway reach it by `localhost`.
    pub fn start_tls(cert: &Path, key: &Path) -> Cluster {
        Self::start_with(Some((cert, key))).unwrap_or_else(|e| panic!("PostgreSQL with TLS: {e}"))
    }

    fn start_with(tls: Option<(&Path, &Path)>) -> Result<Cluster, String> {
        let bin = bin_dir()
            .ok_or("no PostgreSQL server programs (apt-get install postgresql, or set PG_BIN)")?;
        let run_as = is_root().then(|| "postgres".to_string());
        let dir = std::env::temp_dir().join(format!(
            "credit-gateway-pg-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(dir.join("socket")).map_err(|e| e.to_string())?;
        if let Some(user) = &run_as {
            let ok = Command::new("chown")
                .args(["-R", user])
                .arg(&dir)
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if !ok {
                return Err(format!("cannot give {} to the user {user}", dir.display()));
            }
        }
        let cluster = Cluster {
            port: free_port(),
            dir,
            bin,
            run_as,
            next: AtomicUsize::new(0),
            options: Default::default(),
        };
        cluster.run(
            "initdb",
            &[
                "-D",
                &cluster.data().to_string_lossy(),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        )?;
        let mut options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=400",
            cluster.port,
            cluster.dir.join("socket").display()
        );
        if let Some((cert, key)) = tls {
            let (crt, k) = (
                cluster.dir.join("server.crt"),
                cluster.dir.join("server.key"),
            );
            std::fs::copy(cert, &crt).map_err(|e| e.to_string())?;
            std::fs::copy(key, &k).map_err(|e| e.to_string())?;
            std::fs::write(
                cluster.data().join("pg_hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n",
            )
            .map_err(|e| e.to_string())?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600));
            }
            if let Some(user) = &cluster.run_as {
                let _ = Command::new("chown")
                    .args(["-R", user])
                    .arg(&cluster.dir)
                    .status();
            }
            options.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                crt.display(),
                k.display()
            ));
        }
        *cluster.options.lock().unwrap() = options;
        cluster.start_server()?;
        cluster.reap_when_gone();
        Ok(cluster)
    }

    /// A cluster of its own (to stop and start without disturbing other tests).
    pub fn start_own() -> Cluster {
        Self::start_with(None).unwrap_or_else(|e| panic!("PostgreSQL for tests: {e}"))
    }

    /// Start the server (again).
    pub fn start_server(&self) -> Result<(), String> {
        let options = self.options.lock().unwrap().clone();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data().to_string_lossy(),
                "-l",
                &self.dir.join("server.log").to_string_lossy(),
                "-o",
                &options,
                "-w",
                "start",
            ],
        )
    }

    /// Stop the server at once (as if its host went away); its data stays.
    pub fn stop_server(&self) -> Result<(), String> {
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data().to_string_lossy(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        )
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(path);
                c
            }
            None => Command::new(path),
        }
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let out = self
            .command(program)
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("{program}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{program} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// Stop the cluster and remove its folder once this process has ended.
    fn reap_when_gone(&self) {
        let pg_ctl = self.bin.join("pg_ctl");
        let stop = match &self.run_as {
            Some(user) => format!(
                "runuser -u {user} -- {} -D {} stop -m immediate",
                pg_ctl.display(),
                self.data().display()
            ),
            None => format!(
                "{} -D {} stop -m immediate",
                pg_ctl.display(),
                self.data().display()
            ),
        };
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf {dir}",
            pid = std::process::id(),
            dir = self.dir.display()
        );
        let _ = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
    }

    /// The URL of a database of `name`'s own.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// A new, empty database; its URL.
    pub fn database(&self) -> String {
        let name = format!(
            "gw_{}_{}",
            std::process::id(),
            self.next.fetch_add(1, Ordering::SeqCst)
        );
        self.sql("postgres", &format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("create database: {e}"));
        self.url(&name)
    }

    /// Run one SQL statement in `database` with psql; its output (unaligned, tuples only).
    pub fn sql(&self, database: &str, statement: &str) -> Result<String, String> {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args([
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-c",
                statement,
            ])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }
}
