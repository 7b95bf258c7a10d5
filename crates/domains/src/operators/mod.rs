//! Operators: who may use the operator API and the console, and what each role may do.
//!
//! Mechanism: password sign-in with argon2id hashes kept in the configuration, a server-side
//! session behind an `HttpOnly; SameSite=Strict` cookie, and a per-session CSRF token on every
//! state-changing request. Chosen over client certificates on the admin listener because the
//! operators of a provincial government intranet sign in from shared, managed desktops where a
//! browser certificate per person is rarely provisioned (and hard to revoke at the desk), while a
//! named account with a password the security office can rotate in one file is what their audits
//! expect; the admin listener takes TLS (`server.admin_tls`) before it may leave loopback, so the
//! password never crosses a network in clear. The CLI on the gateway's own host uses a token the
//! gateway writes at start into the data directory (mode 0600): whoever can read that file can
//! read the database itself.
//!
//! Roles: `viewer` reads with personal identifiers masked; `operator` also acts (replay, exits,
//! objections, repairs, publication), still masked; `reviewer` is the level above (复核, GD Art.
//! 34) and resolves the objections under its review, masked; `auditor` verifies the audit chain
//! and sees full values, each such read entering the audit chain.
//!
//! Owns: checking passwords, sessions, CSRF tokens, the failed sign-in limit. Never does: serve
//! pages or touch the store (the admin server audits what this module decides).
//!
//! Invariants: a session token and a CSRF token are 256-bit random values, compared in constant
//! time; a name that failed 5 times in 15 minutes (or an address that failed 20 times) is locked
//! until the oldest failure ages out, whether or not the next password is right.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};

use crate::config::{OperatorConfig, OperatorRole};

/// A session ends after this long without a request...
const IDLE: Duration = Duration::from_secs(30 * 60);
/// ...and in any case after this long.
const ABSOLUTE: Duration = Duration::from_secs(12 * 3600);
const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
const MAX_FAILURES_PER_NAME: usize = 5;
/// Past this many counted names and addresses, those with no failure in the window are dropped.
const PRUNE_ABOVE: usize = 10_000;
const MAX_FAILURES_PER_ADDRESS: usize = 20;

pub const SESSION_COOKIE: &str = "cg_session";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The file in the data directory holding the local CLI's token.
pub const LOCAL_TOKEN_FILE: &str = "admin.token";

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Operator {
        name: String,
        role: OperatorRole,
    },
    /// The CLI on the gateway's host (holds the data directory's token).
    Local,
}

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Read,
    Act,
    Audit,
    /// The level above's review (复核, GD Art. 34).
    Review,
}

impl Principal {
    pub fn name(&self) -> String {
        match self {
            Self::Operator { name, .. } => name.clone(),
            Self::Local => "local-cli".into(),
        }
    }

    pub fn role(&self) -> &'static str {
        match self {
            Self::Operator {
                role: OperatorRole::Viewer,
                ..
            } => "viewer",
            Self::Operator {
                role: OperatorRole::Operator,
                ..
            } => "operator",
            Self::Operator {
                role: OperatorRole::Auditor,
                ..
            } => "auditor",
            Self::Operator {
                role: OperatorRole::Reviewer,
                ..
            } => "reviewer",
            Self::Local => "local",
        }
    }

    pub fn may(&self, need: Need) -> bool {
        match (self, need) {
            (Self::Local, _) => true,
            (Self::Operator { .. }, Need::Read) => true,
            (Self::Operator { role, .. }, Need::Act) => *role == OperatorRole::Operator,
            (Self::Operator { role, .. }, Need::Audit) => *role == OperatorRole::Auditor,
            (Self::Operator { role, .. }, Need::Review) => *role == OperatorRole::Reviewer,
        }
    }

    /// Whether answers carry personal identifiers unmasked.
    pub fn sees_full_values(&self) -> bool {
        matches!(
            self,
            Self::Local
                | Self::Operator {
                    role: OperatorRole::Auditor,
                    ..
                }
        )
    }
}

/// Why a sign-in failed: the operator's (a retry with the right password helps, unless locked).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignInError {
    #[error("wrong name or password")]
    Wrong,
    #[error("too many failed sign-ins: try again later")]
    Locked,
}

struct Session {
    name: String,
    role: OperatorRole,
    csrf: String,
    started: Instant,
    last_seen: Instant,
}

/// The operators, their sessions and the failed sign-in limit.
pub struct Gate {
    /// Replaced whole by a reload (issue #26): a new operator signs in without a restart.
    operators: std::sync::RwLock<HashMap<String, (OperatorRole, String)>>,
    sessions: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<String, Vec<Instant>>>,
    local_token: String,
}

/// An authenticated request: who, and the CSRF token its session expects (none for the CLI token).
pub struct Authenticated {
    pub principal: Principal,
    pub csrf: Option<String>,
    pub session: Option<String>,
}

impl Gate {
    pub fn new(operators: &[OperatorConfig], local_token: String) -> Self {
        Self {
            operators: std::sync::RwLock::new(by_name(operators)),
            sessions: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            local_token,
        }
    }

    /// Check a password (argon2id, slow on purpose: call it off the async threads). On success,
    /// a new session: (session token, CSRF token, role).
    pub fn sign_in(
        &self,
        name: &str,
        password: &str,
        from: IpAddr,
    ) -> Result<(String, String, OperatorRole), SignInError> {
        let now = Instant::now();
        // Every name, known or not, counts its own failures: a shared count for unknown names
        // locked them all at once and told them apart from configured ones (issue #31: names
        // could be enumerated). The map is bounded by the per-address limit and pruned below.
        let name_key = format!("n:{name}");
        let addr_key = format!("a:{from}");
        {
            // Check and count in one step, before the slow hash: parallel guesses each take a
            // failure slot (given back on success), so at most the limit run at all.
            let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
            if f.len() > PRUNE_ABOVE {
                f.retain(|_, times| {
                    times
                        .iter()
                        .any(|t| now.duration_since(*t) < FAILURE_WINDOW)
                });
            }
            if within(&mut f, &name_key, now) >= MAX_FAILURES_PER_NAME
                || within(&mut f, &addr_key, now) >= MAX_FAILURES_PER_ADDRESS
            {
                return Err(SignInError::Locked);
            }
            f.entry(name_key.clone()).or_default().push(now);
            f.entry(addr_key.clone()).or_default().push(now);
        }
        let known = self
            .operators
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned();
        let verified = known.as_ref().and_then(|(role, hash)| {
            let parsed = PasswordHash::new(hash).ok()?;
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .ok()
                .map(|_| *role)
        });
        let Some(role) = verified else {
            // Unknown names cost the same as wrong passwords, so names cannot be probed by timing.
            if known.is_none() {
                let _ = hash_password("not-an-operator");
            }
            return Err(SignInError::Wrong);
        };
        {
            let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
            for key in [&name_key, &addr_key] {
                if let Some(list) = f.get_mut(key) {
                    if let Some(pos) = list.iter().rposition(|t| *t == now) {
                        list.remove(pos);
                    }
                }
            }
        }
        let (token, csrf) = (random_token(), random_token());
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|_, s| alive(s, now));
        sessions.insert(
            token.clone(),
            Session {
                name: name.to_string(),
                role,
                csrf: csrf.clone(),
                started: now,
                last_seen: now,
            },
        );
        Ok((token, csrf, role))
    }

    /// Whether no operator is configured at all (the console's sign-in page says so).
    pub fn is_empty(&self) -> bool {
        self.operators
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty()
    }

    /// Whether `name` is a configured operator.
    pub fn knows(&self, name: &str) -> bool {
        self.operators
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(name)
    }

    /// Put a reloaded list of operators in force. A session whose operator is gone or whose role
    /// or password changed ends: it was granted under what no longer holds.
    pub fn replace_operators(&self, operators: &[OperatorConfig]) {
        let next = by_name(operators);
        let mut current = self.operators.write().unwrap_or_else(|e| e.into_inner());
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, s| {
                let before = current.get(&s.name);
                let after = next.get(&s.name);
                after.is_some() && before == after && after.is_some_and(|(role, _)| *role == s.role)
            });
        *current = next;
    }

    pub fn sign_out(&self, session: &str) {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(session);
    }

    /// The principal behind a request's `Authorization: Bearer` (the CLI's token) or session
    /// cookie; `None` when neither holds.
    pub fn authenticate(&self, headers: &http::HeaderMap) -> Option<Authenticated> {
        if let Some(token) = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        {
            return same(token.trim(), &self.local_token).then_some(Authenticated {
                principal: Principal::Local,
                csrf: None,
                session: None,
            });
        }
        let session = cookie(headers, SESSION_COOKIE)?;
        let now = Instant::now();
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let (key, s) = sessions.iter_mut().find(|(k, _)| same(k, &session))?;
        if !alive(s, now) {
            let key = key.clone();
            sessions.remove(&key);
            return None;
        }
        s.last_seen = now;
        Some(Authenticated {
            principal: Principal::Operator {
                name: s.name.clone(),
                role: s.role,
            },
            csrf: Some(s.csrf.clone()),
            session: Some(key.clone()),
        })
    }
}

fn by_name(operators: &[OperatorConfig]) -> HashMap<String, (OperatorRole, String)> {
    operators
        .iter()
        .map(|o| (o.name.clone(), (o.role, o.password_hash.clone())))
        .collect()
}

/// Failures of `key` within the window; forgets expired ones (and the key when none is left).
fn within(f: &mut HashMap<String, Vec<Instant>>, key: &str, now: Instant) -> usize {
    let Some(list) = f.get_mut(key) else {
        return 0;
    };
    list.retain(|t| now.duration_since(*t) < FAILURE_WINDOW);
    let n = list.len();
    if n == 0 {
        f.remove(key);
    }
    n
}

fn alive(s: &Session, now: Instant) -> bool {
    now.duration_since(s.last_seen) < IDLE && now.duration_since(s.started) < ABSOLUTE
}

/// Constant-time comparison of two tokens.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

pub fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

/// A cookie's value from the request headers.
pub fn cookie(headers: &http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// An argon2id PHC string for a password (for `operators hash-password`).
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt =
        argon2::password_hash::SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate() -> Gate {
        let ops = vec![
            OperatorConfig {
                name: "zhang".into(),
                role: OperatorRole::Operator,
                password_hash: hash_password("s3cret-1").unwrap(),
            },
            OperatorConfig {
                name: "li".into(),
                role: OperatorRole::Viewer,
                password_hash: hash_password("s3cret-2").unwrap(),
            },
        ];
        Gate::new(&ops, "local".into())
    }

    #[test]
    fn a_right_password_opens_a_session_with_its_role_and_a_wrong_one_does_not() {
        let g = gate();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(
            g.sign_in("zhang", "nope", ip).unwrap_err(),
            SignInError::Wrong
        );
        assert_eq!(
            g.sign_in("nobody", "s3cret-1", ip).unwrap_err(),
            SignInError::Wrong
        );
        let (token, csrf, role) = g.sign_in("zhang", "s3cret-1", ip).unwrap();
        assert_eq!(role, OperatorRole::Operator);
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::COOKIE,
            format!("lang=zh; {SESSION_COOKIE}={token}")
                .parse()
                .unwrap(),
        );
        let auth = g.authenticate(&headers).unwrap();
        assert_eq!(auth.csrf.as_deref(), Some(csrf.as_str()));
        assert!(auth.principal.may(Need::Act));
        assert!(!auth.principal.may(Need::Audit));
        assert!(!auth.principal.sees_full_values());
        g.sign_out(&token);
        assert!(g.authenticate(&headers).is_none());
    }

    #[test]
    fn five_failures_lock_the_name_even_for_the_right_password() {
        let g = gate();
        let ip: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..5 {
            assert_eq!(
                g.sign_in("li", "wrong", ip).unwrap_err(),
                SignInError::Wrong
            );
        }
        assert_eq!(
            g.sign_in("li", "s3cret-2", ip).unwrap_err(),
            SignInError::Locked
        );
        // Another operator from another address is not locked out by it.
        assert!(g
            .sign_in("zhang", "s3cret-1", "10.0.0.3".parse().unwrap())
            .is_ok());
    }

    #[test]
    fn unknown_and_known_names_are_locked_alike_so_names_cannot_be_enumerated() {
        let g = gate();
        let ip: IpAddr = "10.0.0.4".parse().unwrap();
        // Failures of unknown names lock only those names...
        for i in 0..5 {
            assert_eq!(
                g.sign_in(&format!("nobody{i}"), "x", ip).unwrap_err(),
                SignInError::Wrong
            );
        }
        for name in ["nobody9", "li"] {
            assert_eq!(
                g.sign_in(name, "x", ip).unwrap_err(),
                SignInError::Wrong,
                "{name}"
            );
        }
        // ...and five of the same name lock it, known or not.
        let other: IpAddr = "10.0.0.5".parse().unwrap();
        for name in ["ghost", "zhang"] {
            for _ in 0..5 {
                let _ = g.sign_in(name, "x", other);
            }
        }
        let third: IpAddr = "10.0.0.6".parse().unwrap();
        assert_eq!(
            g.sign_in("ghost", "x", third).unwrap_err(),
            SignInError::Locked
        );
        assert_eq!(
            g.sign_in("zhang", "x", third).unwrap_err(),
            SignInError::Locked
        );
    }

    #[test]
    fn parallel_guesses_get_no_more_tries_than_the_limit() {
        let g = std::sync::Arc::new(gate());
        let ip: IpAddr = "10.0.0.9".parse().unwrap();
        let outcomes: Vec<_> = (0..16)
            .map(|_| {
                let g = g.clone();
                std::thread::spawn(move || g.sign_in("zhang", "guess", ip))
            })
            .map(|t| t.join().unwrap().unwrap_err())
            .collect();
        let wrong = outcomes
            .iter()
            .filter(|e| **e == SignInError::Wrong)
            .count();
        assert!(wrong <= 5, "{wrong} passwords checked in parallel");
        assert_eq!(
            g.sign_in("zhang", "s3cret-1", ip).unwrap_err(),
            SignInError::Locked
        );
    }

    #[test]
    fn roles_decide_what_may_be_done() {
        let viewer = Principal::Operator {
            name: "v".into(),
            role: OperatorRole::Viewer,
        };
        let auditor = Principal::Operator {
            name: "a".into(),
            role: OperatorRole::Auditor,
        };
        assert!(viewer.may(Need::Read) && !viewer.may(Need::Act) && !viewer.may(Need::Audit));
        assert!(auditor.may(Need::Audit) && !auditor.may(Need::Act) && auditor.sees_full_values());
        assert!(Principal::Local.may(Need::Act) && Principal::Local.may(Need::Audit));
    }
}
