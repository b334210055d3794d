//! Validation of a custom resource against its CRD's `openAPIV3Schema`, as the API server
//! rejects an invalid object with 422: types, `required`, `enum`, `pattern`, min/max length
//! and value. `metadata` and `status` are the server's business and are not checked here.

use serde_json::Value;

/// Every violation, as `spec.url: Invalid value: "...": should match '...'`.
pub fn validate(schema: &Value, obj: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    if let Some(spec_schema) = schema.pointer("/properties/spec") {
        match obj.get("spec") {
            Some(spec) => check(spec_schema, spec, "spec", &mut errs),
            None if required(schema).contains(&"spec") => errs.push("spec: Required value".into()),
            None => {}
        }
    }
    errs
}

fn required(schema: &Value) -> Vec<&str> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn check(schema: &Value, v: &Value, at: &str, errs: &mut Vec<String>) {
    let invalid = |what: String| format!("{at}: Invalid value: {v}: {what}");
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        if !options.contains(v) {
            let list: Vec<String> = options.iter().map(Value::to_string).collect();
            errs.push(format!(
                "{at}: Unsupported value: {v}: supported values: {}",
                list.join(", ")
            ));
        }
    }
    let int_or_string = schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => {
            let Some(m) = v.as_object() else {
                errs.push(invalid("must be of type object".into()));
                return;
            };
            for r in required(schema) {
                if !m.contains_key(r) {
                    errs.push(format!("{at}.{r}: Required value"));
                }
            }
            let props = schema.get("properties").and_then(Value::as_object);
            for (k, c) in m {
                let sub = props
                    .and_then(|p| p.get(k))
                    .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()));
                if let Some(sub) = sub {
                    check(sub, c, &format!("{at}.{k}"), errs);
                }
            }
        }
        Some("array") => match v.as_array() {
            Some(items) => {
                if let Some(item) = schema.get("items") {
                    for (i, c) in items.iter().enumerate() {
                        check(item, c, &format!("{at}[{i}]"), errs);
                    }
                }
            }
            None => errs.push(invalid("must be of type array".into())),
        },
        Some("string") if !(int_or_string && v.is_i64()) => {
            let Some(s) = v.as_str() else {
                errs.push(invalid("must be of type string".into()));
                return;
            };
            if let Some(p) = schema.get("pattern").and_then(Value::as_str) {
                let re = regex::Regex::new(p).expect("CRD patterns are valid RE2");
                if !re.is_match(s) {
                    errs.push(invalid(format!("should match '{p}'")));
                }
            }
            let len = s.chars().count() as u64;
            if schema
                .get("maxLength")
                .and_then(Value::as_u64)
                .is_some_and(|m| len > m)
            {
                errs.push(invalid("too long".into()));
            }
            if schema
                .get("minLength")
                .and_then(Value::as_u64)
                .is_some_and(|m| len < m)
            {
                errs.push(invalid("too short".into()));
            }
        }
        Some("integer") if !(int_or_string && v.is_string()) => {
            let Some(n) = v.as_i64() else {
                errs.push(invalid("must be of type integer".into()));
                return;
            };
            if schema
                .get("minimum")
                .and_then(Value::as_i64)
                .is_some_and(|m| n < m)
            {
                errs.push(invalid("below the minimum".into()));
            }
            if schema
                .get("maximum")
                .and_then(Value::as_i64)
                .is_some_and(|m| n > m)
            {
                errs.push(invalid("above the maximum".into()));
            }
        }
        Some("boolean") if !v.is_boolean() => errs.push(invalid("must be of type boolean".into())),
        _ => {}
    }
}
