//! The OpenAPI 3.1 description of the agency API and the operator API (`openapi.json` beside this
//! file, served at `GET /openapi.json` on both listeners). Tests below keep it in step with the
//! code: every route the routers match and every error code is described.

pub const SPEC: &str = include_str!("openapi.json");

#[cfg(test)]
mod tests {
    use super::SPEC;
    use serde_json::Value;

    fn spec() -> Value {
        serde_json::from_str(SPEC).expect("openapi.json is JSON")
    }

    /// `(&Method::GET, ["v1", "repairs", id, "decide"])` -> ("get", "/v1/repairs/{id}/decide").
    fn agency_routes() -> Vec<(String, String)> {
        let source = include_str!("routes.rs");
        let mut out = Vec::new();
        for line in source.lines() {
            let Some(rest) = line.trim().strip_prefix("(&Method::") else {
                continue;
            };
            let Some((method, rest)) = rest.split_once(", [") else {
                continue;
            };
            let Some((segments, _)) = rest.split_once(']') else {
                continue;
            };
            let path: Vec<String> = segments
                .split(',')
                .map(str::trim)
                .map(
                    |s| match s.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                        Some(literal) => literal.to_string(),
                        // `action @ ("exit" | "reentry")` and plain bindings are parameters.
                        None => format!("{{{}}}", s.split(' ').next().unwrap_or(s)),
                    },
                )
                .collect();
            out.push((method.to_lowercase(), format!("/{}", path.join("/"))));
        }
        out
    }

    /// `("POST", "/outbox/replay")` patterns of the admin server.
    fn operator_routes() -> Vec<(String, String)> {
        let source = include_str!("../telemetry/admin.rs");
        let mut out = Vec::new();
        for line in source.lines() {
            let line = line.trim();
            // `"/audit/verify" => ...` arms of GET-only dispatchers.
            if let Some(rest) = line.strip_prefix("\"/") {
                if let Some((path, tail)) = rest.split_once('"') {
                    if tail.trim_start().starts_with("=>") {
                        out.push(("get".into(), format!("/{path}")));
                    }
                }
            }
            for method in ["GET", "POST"] {
                let Some(rest) = line.strip_prefix(&format!("(\"{method}\", \"")) else {
                    continue;
                };
                if let Some((path, _)) = rest.split_once('"') {
                    out.push((method.to_lowercase(), path.to_string()));
                }
            }
        }
        out
    }

    #[test]
    fn every_route_is_described() {
        let spec = spec();
        let paths = spec["paths"].as_object().unwrap();
        let agency = agency_routes();
        assert!(agency.len() >= 20, "the scan finds the routes: {agency:?}");
        let operator = operator_routes();
        assert!(operator.len() >= 15, "{operator:?}");
        for (method, path) in agency.iter().chain(&operator) {
            let path = path.replace("{action}", "exit");
            let described = paths.iter().any(|(p, ops)| {
                let same = p == &path
                    || (p.split('/').count() == path.split('/').count()
                        && p.split('/')
                            .zip(path.split('/'))
                            .all(|(a, b)| a == b || (a.starts_with('{') && b.starts_with('{'))));
                same && ops.get(method.as_str()).is_some()
            });
            assert!(described, "{method} {path} is not in openapi.json");
        }
    }

    #[test]
    fn every_error_code_is_described() {
        let spec = spec();
        let codes: Vec<&str> = spec["components"]["schemas"]["Error"]["properties"]["error"]
            ["properties"]["code"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        for e in crate::ingest::respond::one_of_each() {
            assert!(
                codes.contains(&e.code()),
                "{} is not in openapi.json",
                e.code()
            );
        }
        for code in [
            "unauthenticated",
            "forbidden_role",
            "csrf_refused",
            "sign_in_failed",
            "sign_in_locked",
            "reason_required",
        ] {
            assert!(codes.contains(&code), "{code}");
        }
    }
}
