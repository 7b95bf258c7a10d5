//! The Debian package (issue #30), built and installed on this machine as an operator would:
//! `cargo deb --no-build` from the release build, its contents and conffiles, `systemd-analyze
//! verify` on the installed unit, `dpkg -i`, the installed binary started as the package's user
//! with the installed configuration (listen addresses moved to free ports), the unit's readiness
//! wait, a sample batch pushed with an agency's certificate, the reload's `config check` and
//! SIGHUP, a clean stop; then an upgrade to the next revision keeping the operator's edits under
//! /etc, the data and the key file (the same batch is already known); then `dpkg --purge`, and
//! the machine left as it was found.
//!
//! systemd itself does not run here (no systemctl): the unit's commands are run as it would run
//! them. The test needs root (dpkg, a system user, runuser), as `.ci/run` has, and cargo-deb,
//! which `.ci/run` installs.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::{repo, wait_until, wait_with_timeout, ApiClient};

const PACKAGE: &str = "credit-gateway";
const USER: &str = "credit-gateway";
const BIN: &str = "/usr/bin/credit-gateway";
const CONF: &str = "/etc/credit-gateway/credit-gateway.toml";
const UNIT: &str = "/usr/lib/systemd/system/credit-gateway.service";
const WAIT_READY: &str = "/usr/lib/credit-gateway/wait-ready";
const CERTS: &str = "/etc/credit-gateway/certs";
const STATE: &str = "/var/lib/credit-gateway";
const LOGS: &str = "/var/log/credit-gateway";
/// Written once this test has installed the package: a later run may then clean up what a killed
/// run left, and never touches an installation it did not make.
const MARKER: &str = "/var/lib/credit-gateway/.installed-by-tests-package";

#[test]
fn the_debian_package_installs_serves_as_its_user_upgrades_keeping_data_and_purges() {
    if common::postgres::requested() {
        eprintln!(
            "tests/package.rs: the installed package runs on sled (its configuration); it ran in \
             the sled pass of the suite"
        );
        return;
    }
    assert!(
        rustix::process::geteuid().is_root(),
        "tests/package.rs installs the Debian package (dpkg -i), creates its system user and runs \
         the gateway as that user: it needs root, as .ci/run has (CI runs as root)"
    );
    for (tool, why) in [
        ("dpkg-deb", "Debian's dpkg"),
        (
            "systemd-analyze",
            "Debian's systemd package (.ci/run installs it)",
        ),
        ("runuser", "util-linux"),
        ("curl", "the unit's readiness wait"),
    ] {
        assert!(
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .output()
                .is_ok_and(|o| o.status.success()),
            "{tool} is missing: {why}"
        );
    }
    assert!(
        cargo(&["deb", "--version"]).status.success(),
        "cargo-deb is missing: `cargo install cargo-deb --locked` (.ci/run installs it)"
    );
    leave_clean_or_refuse();
    let mut machine = Installed { installed: false };

    // The package, from the release build (two revisions: the second is the upgrade).
    let release = release_binary();
    let tmp = tempfile::tempdir().unwrap();
    // The service user reads the test's copy of the configuration and writes its log here.
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let deb1 = build_deb(&release, tmp.path(), "1");
    let deb2 = build_deb(&release, tmp.path(), "2");

    // What it holds: the binary, the unit and its readiness wait, the configuration, and every
    // shipped mapping, rule, calendar year and scoring profile as a conffile under /etc.
    let fields = ok("dpkg-deb", &["--field", s(&deb1), "Package", "Depends"]);
    assert!(fields.contains("Package: credit-gateway"), "{fields}");
    for dep in ["adduser", "curl", "procps"] {
        assert!(fields.contains(dep), "Depends lacks {dep}: {fields}");
    }
    let contents = ok("dpkg-deb", &["--contents", s(&deb1)]);
    let conffiles = ok("dpkg-deb", &["--info", s(&deb1), "conffiles"]);
    for file in [BIN, UNIT, WAIT_READY, CONF] {
        assert!(
            contents.contains(&format!(".{file}\n")),
            "{file} not in the package:\n{contents}"
        );
    }
    assert!(conffiles.lines().any(|l| l == CONF), "{conffiles}");
    let shipped = rule_files(&repo().join("mappings"));
    assert!(shipped.len() > 20, "{shipped:?}");
    for rel in &shipped {
        let path = format!("/etc/credit-gateway/mappings/{rel}");
        assert!(
            conffiles.lines().any(|l| l == path),
            "{path} is not a conffile:\n{conffiles}"
        );
    }
    let postinst = ok("dpkg-deb", &["--info", s(&deb1), "postinst"]);
    assert!(
        postinst.contains("adduser --system --group --home /var/lib/credit-gateway")
            && postinst.contains("deb-systemd-helper"),
        "{postinst}"
    );

    // dpkg -i: the service user and its folders; the configuration readable by it alone; the
    // development certificates of a first installation.
    machine.installed = true;
    ok("dpkg", &["-i", s(&deb1)]);
    std::fs::write(MARKER, "tests/package.rs\n").unwrap();
    let passwd = ok("getent", &["passwd", USER]);
    assert!(
        passwd
            .trim_end()
            .ends_with(":/var/lib/credit-gateway:/usr/sbin/nologin"),
        "{passwd}"
    );
    let uid: u32 = ok("id", &["-u", USER]).trim().parse().unwrap();
    let gid: u32 = ok("id", &["-g", USER]).trim().parse().unwrap();
    let state = std::fs::metadata(STATE).unwrap();
    assert_eq!((state.uid(), state.mode() & 0o777), (uid, 0o700));
    let conf = std::fs::metadata(CONF).unwrap();
    assert_eq!(
        (conf.uid(), conf.gid(), conf.mode() & 0o777),
        (0, gid, 0o640)
    );
    let logs = std::fs::metadata(LOGS).unwrap();
    assert_eq!((logs.uid(), logs.mode() & 0o777), (uid, 0o750));
    for cert in [
        "ca.pem",
        "server.pem",
        "server-key.pem",
        "clients/medical_insurance.pem",
    ] {
        let meta = std::fs::metadata(Path::new(CERTS).join(cert))
            .unwrap_or_else(|e| panic!("{CERTS}/{cert}: {e}"));
        assert_eq!(meta.uid(), uid, "{cert}");
    }
    let server_cert = std::fs::read(Path::new(CERTS).join("server.pem")).unwrap();

    // The installed unit: systemd's own check, and the lines issue #30 asks for.
    let verify = run("systemd-analyze", &["verify", UNIT]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(
        verify.status.success() && !said.contains("credit-gateway"),
        "systemd-analyze verify {UNIT}:\n{said}"
    );
    // (and the check does find a broken unit here, so its silence above means something)
    let broken = tmp.path().join("credit-gateway.service");
    std::fs::write(
        &broken,
        std::fs::read_to_string(UNIT).unwrap().replace(
            "ExecStart=/usr/bin/credit-gateway",
            "ExecStart=/usr/bin/no-such-gateway",
        ),
    )
    .unwrap();
    let verify = run("systemd-analyze", &["verify", s(&broken)]);
    assert!(
        !verify.status.success() || !verify.stderr.is_empty(),
        "systemd-analyze verify said nothing of a missing ExecStart binary"
    );
    let unit = std::fs::read_to_string(UNIT).unwrap();
    let lines: Vec<&str> = unit.lines().map(str::trim).collect();
    for line in [
        "Type=exec",
        "User=credit-gateway",
        "ExecStart=/usr/bin/credit-gateway --config /etc/credit-gateway/credit-gateway.toml serve",
        "ExecStartPost=/usr/lib/credit-gateway/wait-ready /etc/credit-gateway/credit-gateway.toml",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/credit-gateway",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "AmbientCapabilities=",
        "PrivateTmp=yes",
        "ProtectHome=yes",
        "Restart=on-failure",
        "LimitNOFILE=65536",
        "StandardError=journal",
    ] {
        assert!(lines.contains(&line), "the unit lacks {line}");
    }
    let reloads: Vec<&&str> = lines
        .iter()
        .filter(|l| l.starts_with("ExecReload="))
        .collect();
    assert_eq!(
        reloads,
        [
            &"ExecReload=/usr/bin/credit-gateway --config /etc/credit-gateway/credit-gateway.toml config check",
            &"ExecReload=/bin/kill -HUP $MAINPID"
        ],
        "a reload checks the configuration first, then sends SIGHUP"
    );

    // What ExecReload runs first, as the service user, on the installed tree.
    let check = as_user(&[BIN, "--config", CONF, "config", "check"]);
    assert!(
        check.status.success(),
        "config check on the installed configuration:\n{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    // Start the installed binary as the package's user on the installed configuration, the
    // listen addresses moved to free ports; the unit's readiness wait; a sample pushed.
    let config = test_config(tmp.path(), None);
    let mut gw = Running::start(&config, &tmp.path().join("gateway-1.log"));
    let receipt = push_sample(&gw);
    assert_eq!(receipt["new"], 6, "{receipt}");

    // A reload as the unit does it: the check passed above, then SIGHUP; still ready.
    let before = gw.log().matches("rules reloaded").count();
    signal("HUP", gw.pid);
    assert!(
        wait_until(Duration::from_secs(20), || gw
            .log()
            .matches("rules reloaded")
            .count()
            > before),
        "no reload after SIGHUP:\n{}",
        gw.log()
    );
    assert!(gw.readyz().starts_with("ready\n"), "{}", gw.readyz());

    // A clean stop; every line of the log one JSON object (the packaged log format).
    let pid = gw.pid;
    let log = gw.stop();
    for line in log.lines() {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "not a JSON line: {line}"
        );
    }
    assert!(log.contains("\"stopped\""), "{log}");
    // The readiness wait gives up at once when the gateway is gone.
    let waited = as_user(&[WAIT_READY, s(&config), &pid.to_string()]);
    assert!(
        !waited.status.success(),
        "wait-ready on a stopped gateway succeeded"
    );

    // The gateway made its data directory and its key file, all its user's, keys 0600.
    let key_file = Path::new(STATE).join("keys/gateway-keys.toml");
    let key = std::fs::metadata(&key_file).expect("the key file made at the first start");
    assert_eq!((key.uid(), key.mode() & 0o777), (uid, 0o600));
    let key_bytes = std::fs::read(&key_file).unwrap();
    for entry in walk(Path::new(STATE)) {
        if entry == Path::new(MARKER) {
            continue;
        }
        let meta = std::fs::symlink_metadata(&entry).unwrap();
        assert_eq!(
            meta.uid(),
            uid,
            "{} is not the service user's",
            entry.display()
        );
    }

    // The operator edits the configuration and a rule file; the next revision is installed.
    let edit = "\n# edited by the operator (tests/package.rs)\n";
    let sharing = "/etc/credit-gateway/mappings/rules/sharing.toml";
    for file in [CONF, sharing] {
        let mut text = std::fs::read_to_string(file).unwrap();
        text.push_str(edit);
        std::fs::write(file, text).unwrap();
    }
    ok("dpkg", &["-i", s(&deb2)]);
    let version = ok("dpkg-query", &["-W", "-f", "${Version}", PACKAGE]);
    assert_eq!(version, "0.1.0-2");
    for file in [CONF, sharing] {
        assert!(
            std::fs::read_to_string(file).unwrap().ends_with(edit),
            "the upgrade lost the operator's edit of {file}"
        );
    }
    let conf = std::fs::metadata(CONF).unwrap();
    assert_eq!((conf.gid(), conf.mode() & 0o777), (gid, 0o640));
    assert_eq!(
        std::fs::read(Path::new(CERTS).join("server.pem")).unwrap(),
        server_cert
    );
    assert_eq!(std::fs::read(&key_file).unwrap(), key_bytes);

    // The upgraded gateway opens the same data: the same batch is already known. This start
    // writes its log to a file under /var/log/credit-gateway (log.file), as the service user.
    let log_file = Path::new(LOGS).join("gateway.log");
    let config = test_config(tmp.path(), Some(&log_file));
    let mut gw = Running::start(&config, &tmp.path().join("gateway-2.log"));
    let receipt = push_sample(&gw);
    assert_eq!(receipt["new"], 0, "{receipt}");
    gw.stop();
    let written = std::fs::read_to_string(&log_file).unwrap();
    assert!(
        written
            .lines()
            .any(|l| l.contains("\"credit-gateway ready\"")),
        "{written}"
    );
    assert_eq!(std::fs::metadata(&log_file).unwrap().uid(), uid);

    // Purge: the package, its configuration (certificates included) and logs go; the data
    // directory and the key file stay (records, not configuration).
    ok("dpkg", &["--purge", PACKAGE]);
    for gone in [
        BIN,
        UNIT,
        WAIT_READY,
        CONF,
        CERTS,
        "/etc/credit-gateway",
        LOGS,
    ] {
        assert!(!Path::new(gone).exists(), "{gone} is left after the purge");
    }
    assert!(key_file.exists(), "the purge removed the key file");
    machine.clean();
    assert!(!Path::new(STATE).exists());
    assert!(run("getent", &["passwd", USER]).stdout.is_empty());
}

/// The installed gateway, started by `runuser` as the service user.
struct Running {
    runuser: Child,
    pid: u32,
    api: String,
    admin: String,
    log: PathBuf,
}

impl Running {
    fn start(config: &Path, log: &Path) -> Running {
        let mut runuser = Command::new("runuser")
            .args(["-u", USER, "--", BIN, "--config", s(config), "serve"])
            .current_dir(STATE) // the unit's WorkingDirectory
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(log).unwrap()))
            .spawn()
            .expect("runuser starts");
        let pid = gateway_pid(&mut runuser, log);
        // The unit's ExecStartPost, as the service user: returns once /readyz answers 200.
        let mut wait = Command::new("runuser")
            .args(["-u", USER, "--", WAIT_READY, s(config), &pid.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let status = wait_with_timeout(&mut wait, Duration::from_secs(120));
        let mut said = String::new();
        std::io::Read::read_to_string(&mut wait.stdout.take().unwrap(), &mut said).unwrap();
        assert!(
            status.success() && said.starts_with("credit-gateway ready (admin http://"),
            "wait-ready: {status} {said}\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        let mut lines = BufReader::new(runuser.stdout.take().unwrap()).lines();
        let ready = lines
            .find_map(|l| l.ok().filter(|l| l.starts_with("credit-gateway ready:")))
            .expect("the ready line");
        std::thread::spawn(move || for _ in lines {});
        let part = |key: &str| {
            ready
                .split(key)
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .unwrap()
                .to_string()
        };
        let (api, admin) = (part("api=https://"), part("admin=http://"));
        // The address the readiness wait read from the data directory is the gateway's.
        let addr_file = Path::new(STATE).join("data/admin.addr");
        assert_eq!(std::fs::read_to_string(addr_file).unwrap().trim(), admin);
        assert!(said.contains(&admin), "{said}");
        Running {
            runuser,
            pid,
            api,
            admin,
            log: log.to_path_buf(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn readyz(&self) -> String {
        ok(
            "curl",
            &[
                "-fsS",
                "--max-time",
                "5",
                &format!("http://{}/readyz", self.admin),
            ],
        )
    }

    /// SIGTERM to the gateway itself (runuser would kill it 2 s after passing it on); its exit
    /// status (runuser's) must be 0. The log.
    fn stop(&mut self) -> String {
        signal("TERM", self.pid);
        let status = wait_with_timeout(&mut self.runuser, Duration::from_secs(60));
        let log = self.log();
        assert!(
            status.success(),
            "the gateway stopped with {status}:\n{log}"
        );
        log
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.runuser.try_wait().ok().flatten().is_none() {
            signal("KILL", self.pid);
            let _ = self.runuser.kill();
            let _ = self.runuser.wait();
        }
    }
}

/// The gateway's process: runuser's child (runuser forks for its PAM session), or runuser
/// itself if it executed the binary in place.
fn gateway_pid(runuser: &mut Child, log: &Path) -> u32 {
    let parent = runuser.id();
    let is_gateway = |pid: u32| {
        std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == Path::new(BIN))
    };
    let mut found = None;
    let seen = wait_until(Duration::from_secs(30), || {
        if is_gateway(parent) {
            found = Some(parent);
            return true;
        }
        found = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .find(|&pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                // pid (comm) state ppid ...: comm may hold spaces, so read after the last ')'.
                let ppid = stat
                    .rsplit(')')
                    .next()
                    .and_then(|rest| rest.split_whitespace().nth(1))
                    .and_then(|p| p.parse::<u32>().ok());
                ppid == Some(parent) && is_gateway(pid)
            });
        found.is_some() || runuser.try_wait().ok().flatten().is_some()
    });
    found.unwrap_or_else(|| {
        panic!(
            "no gateway process under runuser (seen: {seen}):\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        )
    })
}

/// The installed configuration with the listen addresses on free ports (and, when given,
/// `log.file`), readable by the service user.
fn test_config(dir: &Path, log_file: Option<&Path>) -> PathBuf {
    let mut config: toml::Table = toml::from_str(&std::fs::read_to_string(CONF).unwrap()).unwrap();
    let server = config["server"].as_table_mut().unwrap();
    server.insert("listen".into(), "127.0.0.1:0".into());
    server.insert("admin_listen".into(), "127.0.0.1:0".into());
    if let Some(file) = log_file {
        let log = config["log"].as_table_mut().unwrap();
        log.insert("file".into(), s(file).into());
    }
    let path = dir.join(if log_file.is_some() {
        "test-2.toml"
    } else {
        "test-1.toml"
    });
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    path
}

/// `examples/samples/mi-penalties.json` pushed as the medical-insurance platform with the
/// client certificate the package made; the receipt, checked against `expected.toml`.
fn push_sample(gw: &Running) -> serde_json::Value {
    let certs = Path::new(CERTS);
    let tls = credit_gateway::identity::tls::client_config(
        &certs.join("ca.pem"),
        &certs.join("clients/medical_insurance.pem"),
        &certs.join("clients/medical_insurance-key.pem"),
    )
    .expect("the agency's certificate made at installation");
    let body = std::fs::read(repo().join("examples/samples/mi-penalties.json")).unwrap();
    let reply = ApiClient::new(tls, &gw.api).post(
        "/v1/records?mapping=mi-penalties",
        "application/json",
        body,
    );
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let receipt = reply.json();
    let expected = common::samples::expected();
    assert_eq!(
        receipt["accepted"].as_i64(),
        expected["mi-penalties"]["accepted"].as_integer(),
        "{receipt}"
    );
    receipt
}

/// The package this test installed: purged, its data directory and user removed, also when the
/// test fails half-way.
struct Installed {
    installed: bool,
}

impl Installed {
    fn clean(&mut self) {
        if self.installed {
            self.installed = false;
            purge_everything();
        }
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        self.clean();
    }
}

fn purge_everything() {
    if installed() {
        let _ = run("dpkg", &["--purge", PACKAGE]);
    }
    let _ = std::fs::remove_dir_all(STATE);
    if run("getent", &["passwd", USER]).status.success() {
        let _ = run("deluser", &["--quiet", "--system", USER]);
    }
    if run("getent", &["group", USER]).status.success() {
        let _ = run("delgroup", &["--quiet", "--system", USER]);
    }
}

/// A machine with the package (or its data directory) from elsewhere is not this test's to
/// purge; what an earlier run of this test left (it was killed) is cleaned up.
fn leave_clean_or_refuse() {
    if !installed() && !Path::new(STATE).exists() {
        return;
    }
    assert!(
        Path::new(MARKER).exists(),
        "credit-gateway is installed on this machine, or {STATE} exists, and this test did not \
         install it: the package test installs and purges the package, so it runs only where \
         neither is (a CI machine); remove them first if they are not needed"
    );
    purge_everything();
}

fn installed() -> bool {
    run("dpkg-query", &["-W", "-f", "${Status}", PACKAGE])
        .stdout
        .starts_with(b"install ok")
}

/// `cargo deb --no-build` of the release build, revision `revision`, into `dir`.
fn build_deb(release: &Path, dir: &Path, revision: &str) -> PathBuf {
    assert!(release.exists());
    let out = dir.join(format!("credit-gateway-{revision}.deb"));
    let built = cargo(&[
        "deb",
        "--no-build",
        "--strip",
        "--fast",
        "--deb-revision",
        revision,
        "--output",
        s(&out),
    ]);
    assert!(
        built.status.success() && out.exists(),
        "cargo deb:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    out
}

/// The release build of the binary, built now if it is not up to date (as tests/release.rs).
fn release_binary() -> PathBuf {
    let out = cargo(&[
        "build",
        "--release",
        "--bin",
        "credit-gateway",
        "--message-format=json-render-diagnostics",
    ]);
    assert!(
        out.status.success(),
        "the release build fails:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "credit-gateway")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("cargo names the release executable")
}

fn cargo(args: &[&str]) -> Output {
    common::cargo()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("cargo runs")
}

/// Every rule file under `dir` (mappings, rules, outbound formats, calendar years, scoring
/// profiles), relative to it.
fn rule_files(dir: &Path) -> Vec<String> {
    walk(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| p.strip_prefix(dir).unwrap().to_str().unwrap().to_string())
        .collect()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() && !path.is_symlink() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}

fn as_user(command: &[&str]) -> Output {
    let mut args = vec!["-u", USER, "--"];
    args.extend_from_slice(command);
    Command::new("runuser")
        .args(&args)
        .current_dir(STATE)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn signal(name: &str, pid: u32) {
    let _ = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status();
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

/// Run, assert success, stdout.
fn ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}
