//! The OpenAPI 3.1 description of the agency API and the operator API (`openapi.json` beside this
//! file, served at `GET /openapi.json` on both listeners). Tests below keep it in step with the
//! code: every route the routers match and every error code is described; every operation has a
//! unique `operationId`, every request body and success answer a real schema, and every example
//! validates against its schema (the `jsonschema` crate, draft 2020-12). `tests/openapi.rs` checks
//! the live gateway's answers against it (and runs schemathesis).

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

    /// The route constants the domains export (`crate::outbox::ops::route::REPLAY` ->
    /// `/outbox/replay`).
    /// Each domain's operator commands: its route constants and the parser of its requests.
    /// (module path, source): `crate::{module path}::route::X` is a constant of the source.
    const DOMAIN_OPS: [(&str, &str); 9] = [
        (
            "objections::ops",
            include_str!("../../crates/domains/src/objections/ops.rs"),
        ),
        (
            "repairs::ops",
            include_str!("../../crates/domains/src/repairs/ops.rs"),
        ),
        (
            "evaluation::ops",
            include_str!("../../crates/domains/src/evaluation/ops.rs"),
        ),
        (
            "ledger::ops",
            include_str!("../../crates/domains/src/ledger/ops.rs"),
        ),
        (
            "outbox::ops",
            include_str!("../../crates/domains/src/outbox/ops.rs"),
        ),
        (
            "audit::ops",
            include_str!("../../crates/domains/src/audit/ops.rs"),
        ),
        (
            "corrections::ops",
            include_str!("../../crates/domains/src/corrections/ops.rs"),
        ),
        (
            "rulebook::ops",
            include_str!("../../crates/domains/src/rulebook/ops.rs"),
        ),
        ("backup", include_str!("../../crates/domains/src/backup.rs")),
    ];

    fn route_constants() -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (module, source) in DOMAIN_OPS {
            for line in source.lines() {
                let Some(rest) = line.trim().strip_prefix("pub const ") else {
                    continue;
                };
                let Some((name, value)) = rest.split_once(": &str = \"") else {
                    continue;
                };
                if let Some((path, _)) = value.split_once('"') {
                    out.push((format!("crate::{module}::route::{name}"), path.to_string()));
                }
            }
        }
        out
    }

    /// `("POST", "/outbox/replay")` patterns of the admin server, literal or by the domains'
    /// route constants.
    fn operator_routes() -> Vec<(String, String)> {
        // The operator server's route table, and each domain's parser of its own paths (whose
        // `route::X` is that domain's constant).
        let mut source = concat!(
            include_str!("../operator/mod.rs"),
            include_str!("../operator/routes.rs")
        )
        .to_string();
        for (module, domain) in DOMAIN_OPS {
            source.push_str(&domain.replace("route::", &format!("crate::{module}::route::")));
        }
        let constants = route_constants();
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
            for (name, path) in &constants {
                if line.starts_with(&format!("{name} =>")) {
                    out.push(("get".into(), path.clone()));
                }
                for method in ["GET", "POST"] {
                    if line.starts_with(&format!("(\"{method}\", {name})")) {
                        out.push((method.to_lowercase(), path.clone()));
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
        use crate::answer::Answer;
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

    /// Validate `instance` against `schema`, whose `$ref`s point into the description's components.
    fn validate(spec: &Value, schema: &Value, instance: &Value) -> Result<(), String> {
        let mut root = schema.clone();
        if let Some(obj) = root.as_object_mut() {
            obj.insert("components".into(), spec["components"].clone());
            obj.insert(
                "$schema".into(),
                Value::String("https://json-schema.org/draft/2020-12/schema".into()),
            );
        }
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&root)
            .map_err(|e| format!("the schema does not compile: {e}"))?;
        let errors: Vec<String> = validator
            .iter_errors(instance)
            .map(|e| format!("{e} at {}", e.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    /// Every operation: `(path, method, operation)`.
    fn operations(spec: &Value) -> Vec<(String, String, Value)> {
        let mut out = Vec::new();
        for (path, ops) in spec["paths"].as_object().unwrap() {
            for (method, op) in ops.as_object().unwrap() {
                if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                    out.push((path.clone(), method.clone(), op.clone()));
                }
            }
        }
        out
    }

    /// A `$ref` to `#/components/...` resolved; anything else as it is.
    fn resolved<'a>(spec: &'a Value, v: &'a Value) -> &'a Value {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => spec
                .pointer(r.trim_start_matches('#'))
                .unwrap_or_else(|| panic!("{r} does not resolve")),
            None => v,
        }
    }

    /// Every media type object of an operation: (where, media type, object).
    fn media_of(
        spec: &Value,
        path: &str,
        method: &str,
        op: &Value,
    ) -> Vec<(String, String, Value)> {
        let mut out = Vec::new();
        if let Some(content) = op["requestBody"]["content"].as_object() {
            for (media, m) in content {
                out.push((format!("{method} {path} request"), media.clone(), m.clone()));
            }
        }
        for (status, r) in op["responses"].as_object().unwrap() {
            if let Some(content) = resolved(spec, r)["content"].as_object() {
                for (media, m) in content {
                    out.push((
                        format!("{method} {path} {status}"),
                        media.clone(),
                        m.clone(),
                    ));
                }
            }
        }
        out
    }

    #[test]
    fn every_operation_has_a_unique_camel_case_operation_id() {
        let spec = spec();
        let mut seen = std::collections::HashSet::new();
        for (path, method, op) in operations(&spec) {
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            assert!(
                id.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                    && id.chars().all(|c| c.is_ascii_alphanumeric()),
                "{method} {path}: {id:?} is not camelCase"
            );
            assert!(seen.insert(id.to_string()), "{id} is used twice");
        }
        assert!(seen.len() >= 50, "{} operations", seen.len());
    }

    /// A generated client gets a type for every body: no bare `{"type": "object"}`, no missing
    /// schema, for every request body and every success answer in JSON.
    #[test]
    fn every_request_body_and_success_answer_has_a_real_schema() {
        let spec = spec();
        let bare = |s: &Value| {
            s.is_null()
                || s.as_object().is_some_and(|o| o.is_empty())
                || *s == serde_json::json!({"type": "object"})
        };
        for (path, method, op) in operations(&spec) {
            if let Some(content) = op["requestBody"]["content"].as_object() {
                for (media, m) in content {
                    assert!(
                        !bare(&m["schema"]),
                        "{method} {path}: the {media} body has no schema"
                    );
                }
            }
            for (status, r) in op["responses"].as_object().unwrap() {
                let r = resolved(&spec, r);
                if let Some(json) = r["content"].get("application/json") {
                    let is_success = status.starts_with('2');
                    let described = !bare(&json["schema"]);
                    // `/openapi.json` answers this very document: any JSON.
                    assert!(
                        described || (is_success && path == "/openapi.json"),
                        "{method} {path} {status}: no schema"
                    );
                }
            }
        }
    }

    /// Only statuses the handlers can return: none lists 405 (each described method is routed),
    /// and every error status refers to the shared Error answers.
    #[test]
    fn error_statuses_are_the_shared_error_answers() {
        let spec = spec();
        for (path, method, op) in operations(&spec) {
            for (status, r) in op["responses"].as_object().unwrap() {
                assert_ne!(status, "405", "{method} {path}");
                let code: u16 = status.parse().unwrap();
                if code >= 400 && !(path == "/readyz" || path == "/rules/reload" && code == 422) {
                    assert_eq!(
                        r["$ref"],
                        format!("#/components/responses/E{code}"),
                        "{method} {path} {status}"
                    );
                    assert!(
                        r["description"].as_str().is_some_and(|d| !d.is_empty()),
                        "{method} {path} {status}: which codes"
                    );
                }
            }
        }
    }

    /// Every example (request bodies, answers, the shared error answers) validates against the
    /// schema beside it; every schema compiles and every `$ref` resolves.
    #[test]
    fn every_example_validates_against_its_schema() {
        let spec = spec();
        let mut checked = 0;
        let mut failures = Vec::new();
        let mut all = Vec::new();
        for (path, method, op) in operations(&spec) {
            all.extend(media_of(&spec, &path, &method, &op));
        }
        for (name, r) in spec["components"]["responses"].as_object().unwrap() {
            for (media, m) in r["content"].as_object().unwrap() {
                all.push((
                    format!("components/responses/{name}"),
                    media.clone(),
                    m.clone(),
                ));
            }
        }
        for (place, media, m) in all {
            let Some(schema) = m.get("schema") else {
                continue;
            };
            let mut examples: Vec<(String, Value)> = Vec::new();
            if let Some(e) = m.get("example") {
                examples.push(("example".into(), e.clone()));
            }
            for (name, e) in m["examples"].as_object().into_iter().flatten() {
                examples.push((name.clone(), e["value"].clone()));
            }
            for (name, value) in examples {
                checked += 1;
                if let Err(e) = validate(&spec, schema, &value) {
                    failures.push(format!("{place} {media} example {name}: {e}"));
                }
            }
        }
        for name in spec["components"]["schemas"].as_object().unwrap().keys() {
            let schema = serde_json::json!({"$ref": format!("#/components/schemas/{name}")});
            if let Err(e) = validate(&spec, &schema, &Value::Null) {
                if e.starts_with("the schema does not compile") {
                    failures.push(format!("{name}: {e}"));
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        assert!(checked >= 60, "only {checked} examples");
    }

    /// The shipped samples are the push examples, byte for byte in meaning: an example cannot
    /// drift from the files agencies are told to start from.
    #[test]
    fn the_push_examples_are_the_shipped_samples() {
        let spec = spec();
        let body = &spec["paths"]["/v1/records"]["post"]["requestBody"]["content"];
        let canonical: Value =
            serde_json::from_str(include_str!("../../examples/samples/canonical.json")).unwrap();
        assert_eq!(
            body["application/json"]["examples"]["canonical"]["value"],
            canonical
        );
        let penalties: Value =
            serde_json::from_str(include_str!("../../examples/samples/mi-penalties.json")).unwrap();
        assert_eq!(
            body["application/json"]["examples"]["mi-penalties"]["value"],
            penalties
        );
        assert_eq!(
            body["application/xml"]["examples"]["market-registration"]["value"],
            include_str!("../../examples/samples/market-registration.xml")
        );
    }
}
