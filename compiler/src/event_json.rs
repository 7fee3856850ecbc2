//! Events as JSON: the input of `policyc explain`, the examples of
//! `policyc diff`, and the event format of tests that compare the kernel with
//! the bundle evaluator.
//!
//! An event is one flat JSON object: `"hook"` and then DSL field names, each
//! with a value of the field's type:
//!
//! ```json
//! {"hook": "exec", "process.binary": "/usr/bin/sudo", "user.uid": 1000,
//!  "user.auid": "unset", "user.caps": ["CAP_NET_RAW"], "k8s.label[\"app\"]": "web"}
//! ```
//!
//! | field type | JSON value |
//! |---|---|
//! | path | a string, an absolute path |
//! | string | a string of at most the field's kernel buffer (`process.name`: 15 bytes) |
//! | uid, gid | a number `0..=4294967294`, or a string: a user/group *name* (resolved on the node) |
//! | login uid | as uid, and `"unset"` (or 4294967295, the kernel's "no id") |
//! | port | a number `0..=65535` |
//! | ip | a string, an IPv4 or IPv6 address |
//! | capability set | an array of `CAP_*` names |
//! | bool | `true` / `false` |
//! | `net.protocol`, `net.family` | one of the names (`"tcp"`, `"udp"`; `"ipv4"`, `"ipv6"`) |
//!
//! An indexed field is written with its key as a JSON string in brackets,
//! `k8s.label["app"]`. A field the event does not give is absent (it
//! satisfies no test of it). Unknown fields, fields the hook does not supply,
//! a key given twice and values of the wrong type are refused with an error
//! naming the field.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;

use policy_dsl::checked::{Event, FieldKey, Value};
use policy_dsl::schema::{capability_bit, Field, FieldType, Hook};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;

/// Why an event was refused: the field (or `hook`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventError {
    /// The key the problem is in (`hook`, `user.uid`…), `None` for the
    /// document as a whole.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "event field `{field}`: {}", self.message),
            None => write!(f, "event: {}", self.message),
        }
    }
}

impl std::error::Error for EventError {}

fn err(field: &str, message: impl Into<String>) -> EventError {
    EventError {
        field: Some(field.to_string()),
        message: message.into(),
    }
}

/// The object's entries in document order, duplicates kept (serde_json's own
/// map would silently keep the last).
struct Entries(Vec<(String, serde_json::Value)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, serde_json::Value>()? {
                    out.push((k, v));
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Parse an event from JSON text.
///
/// # Errors
/// An [`EventError`] naming the field at fault (see the module docs).
pub fn parse_event(text: &str) -> Result<Event, EventError> {
    let entries: Entries = serde_json::from_str(text).map_err(|e| EventError {
        field: None,
        message: format!("not a JSON object: {e}"),
    })?;
    event_from_entries(entries.0)
}

/// Parse an event from a JSON value (which must be an object).
///
/// # Errors
/// As [`parse_event`].
pub fn event_from_json(value: &serde_json::Value) -> Result<Event, EventError> {
    let Some(object) = value.as_object() else {
        return Err(EventError {
            field: None,
            message: "not a JSON object".into(),
        });
    };
    event_from_entries(object.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

fn event_from_entries(entries: Vec<(String, serde_json::Value)>) -> Result<Event, EventError> {
    let mut seen = BTreeSet::new();
    for (k, _) in &entries {
        if !seen.insert(k.as_str()) {
            return Err(err(k, "given twice"));
        }
    }
    let hook_names = || {
        Hook::ALL
            .iter()
            .map(|(_, n)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let hook = match entries.iter().find(|(k, _)| k == "hook") {
        None => return Err(err("hook", format!("missing; one of {}", hook_names()))),
        Some((_, serde_json::Value::String(h))) => Hook::from_name(h).ok_or_else(|| {
            err(
                "hook",
                format!("unknown hook `{h}`; one of {}", hook_names()),
            )
        })?,
        Some((_, v)) => return Err(err("hook", format!("expected a hook name, got {v}"))),
    };
    let mut event = Event {
        hook,
        fields: Default::default(),
    };
    for (name, value) in entries.iter().filter(|(k, _)| k != "hook") {
        let key = parse_key(name, hook)?;
        let value = parse_value(name, key.field.info().ty, value)?;
        if event.fields.insert(key, value).is_some() {
            return Err(err(name, "given twice"));
        }
    }
    Ok(event)
}

/// `process.binary` or `k8s.label["app"]`, checked against the hook.
pub fn parse_key(name: &str, hook: Hook) -> Result<FieldKey, EventError> {
    let (base, index) = match name.split_once('[') {
        None => (name, None),
        Some((base, rest)) => {
            let Some(inner) = rest.strip_suffix(']') else {
                return Err(err(name, "an index is written `field[\"key\"]`"));
            };
            let key: String = serde_json::from_str(inner)
                .map_err(|_| err(name, "an index is a JSON string: `field[\"key\"]`"))?;
            (base, Some(key))
        }
    };
    let Some(field) = Field::from_name(base) else {
        let known: Vec<&str> = hook.fields().iter().map(|f| f.as_str()).collect();
        return Err(err(
            name,
            format!(
                "unknown field; `{}` events have: {}",
                hook.as_str(),
                known.join(", ")
            ),
        ));
    };
    if !field.hooks().contains(&hook) {
        let hooks: Vec<&str> = field.hooks().iter().map(|h| h.as_str()).collect();
        return Err(err(
            name,
            format!(
                "not supplied by `{}` events, only by: {}",
                hook.as_str(),
                hooks.join(", ")
            ),
        ));
    }
    match (field.info().indexed, index) {
        (true, None) => Err(err(name, format!("needs a key: `{base}[\"key\"]`"))),
        (false, Some(_)) => Err(err(name, "takes no index")),
        (_, key) => Ok(FieldKey { field, key }),
    }
}

/// A value of type `ty` for the field called `name`.
pub fn parse_value(
    name: &str,
    ty: FieldType,
    value: &serde_json::Value,
) -> Result<Value, EventError> {
    use serde_json::Value as J;
    let wrong = || {
        err(
            name,
            format!(
                "expected {}{}, got {value}",
                ty.describe(),
                match ty {
                    FieldType::Uid | FieldType::Gid => " (a number, or a name as a string)",
                    FieldType::LoginUid => " (a number, a name, or \"unset\")",
                    FieldType::Caps => " (an array of CAP_* names)",
                    FieldType::Path | FieldType::Ip | FieldType::Str { .. } => " (a string)",
                    FieldType::Enum(_) => " (a string)",
                    FieldType::Port => " (a number)",
                    FieldType::Bool => " (true or false)",
                }
            ),
        )
    };
    match (ty, value) {
        (FieldType::Path, J::String(s)) => {
            if !s.starts_with('/') {
                return Err(err(
                    name,
                    format!("`{s}` is not an absolute path (the kernel reports canonical paths)"),
                ));
            }
            if s.contains('\0') {
                return Err(err(name, "a path has no NUL byte"));
            }
            Ok(Value::Str(s.clone()))
        }
        (FieldType::Str { max }, J::String(s)) => {
            if s.len() > max {
                return Err(err(
                    name,
                    format!(
                        "{} bytes; the kernel holds at most {max} for this field",
                        s.len()
                    ),
                ));
            }
            Ok(Value::Str(s.clone()))
        }
        (FieldType::Enum(names), J::String(s)) => {
            if names.contains(&s.as_str()) {
                Ok(Value::Str(s.clone()))
            } else {
                Err(err(
                    name,
                    format!("`{s}` is not one of {}", names.join(", ")),
                ))
            }
        }
        (FieldType::Uid | FieldType::Gid | FieldType::LoginUid | FieldType::Port, J::Number(n)) => {
            let Some(n) = n.as_u64() else {
                return Err(wrong());
            };
            if ty == FieldType::LoginUid && n == crate::lower::UNSET_ID {
                return Ok(Value::Unset);
            }
            if n > ty.max_number() {
                return Err(err(
                    name,
                    format!("{n} is out of range 0..={}", ty.max_number()),
                ));
            }
            Ok(Value::Int(n))
        }
        (FieldType::LoginUid, J::String(s)) if s == "unset" => Ok(Value::Unset),
        (FieldType::Uid | FieldType::Gid, J::String(s)) if s == "unset" => Err(err(
            name,
            "`unset` is a value of the login uid (`user.auid`) only",
        )),
        (FieldType::Uid | FieldType::Gid | FieldType::LoginUid, J::String(s)) => {
            if policy_dsl::check::valid_account_name(s) {
                Ok(Value::Name(s.clone()))
            } else {
                Err(err(
                    name,
                    "not a user or group name (1 to 32 letters, digits, `_`, `-`, `.`, not starting with `-` or a digit)",
                ))
            }
        }
        (FieldType::Ip, J::String(s)) => s
            .parse::<IpAddr>()
            .map(Value::Ip)
            .map_err(|_| err(name, format!("`{s}` is not an IPv4 or IPv6 address"))),
        (FieldType::Bool, J::Bool(b)) => Ok(Value::Bool(*b)),
        (FieldType::Caps, J::Array(items)) => {
            let mut caps = BTreeSet::new();
            for item in items {
                match item {
                    J::String(c) if capability_bit(c).is_some() => {
                        caps.insert(c.clone());
                    }
                    J::String(c) => {
                        return Err(err(name, format!("`{c}` is not a capability (CAP_*)")))
                    }
                    _ => return Err(wrong()),
                }
            }
            Ok(Value::Caps(caps))
        }
        _ => Err(wrong()),
    }
}

/// The JSON of one value (the inverse of [`parse_value`]).
pub fn value_to_json(value: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        Value::Str(s) | Value::Name(s) => J::String(s.clone()),
        Value::Int(n) => J::from(*n),
        Value::Unset => J::String("unset".into()),
        Value::Bool(b) => J::Bool(*b),
        Value::Ip(a) => J::String(a.to_string()),
        Value::Caps(c) => J::Array(c.iter().cloned().map(J::String).collect()),
    }
}

/// The JSON object of an event: `hook` first, then the fields in field
/// order (the inverse of [`parse_event`]).
pub fn event_to_json(event: &Event) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    map.insert("hook".into(), event.hook.as_str().into());
    for (k, v) in &event.fields {
        map.insert(key_name(k), value_to_json(v));
    }
    serde_json::Value::Object(map)
}

/// One line of JSON: `{"hook": "exec", "process.binary": "/usr/bin/sudo"}`,
/// `hook` first and fields in the event's order.
pub fn event_to_line(event: &Event) -> String {
    let mut out = format!("{{\"hook\": {:?}", event.hook.as_str());
    for (k, v) in &event.fields {
        out.push_str(&format!(
            ", {}: {}",
            serde_json::Value::String(key_name(k)),
            value_to_json(v)
        ));
    }
    out.push('}');
    out
}

/// A field key as written in events (and bundle dimension names):
/// `k8s.label["app"]` with the key as a JSON string.
pub fn key_name(key: &FieldKey) -> String {
    match &key.key {
        None => key.field.as_str().to_string(),
        Some(k) => format!(
            "{}[{}]",
            key.field.as_str(),
            serde_json::Value::String(k.clone())
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_type() {
        let e = parse_event(
            r#"{"hook": "exec", "process.binary": "/usr/bin/sudo", "user.uid": 1000,
                "user.gid": "wheel", "user.auid": "unset", "user.caps": ["CAP_NET_RAW"],
                "k8s.label[\"app\"]": "web", "process.interactive": true}"#,
        )
        .unwrap();
        assert_eq!(e.hook, Hook::Exec);
        assert_eq!(e.fields.len(), 7);
        let line = event_to_line(&e);
        assert_eq!(parse_event(&line).unwrap(), e);
        assert_eq!(event_from_json(&event_to_json(&e)).unwrap(), e);
        let c = parse_event(
            r#"{"hook": "connect", "net.daddr": "::1", "net.dport": 443, "net.protocol": "tcp"}"#,
        )
        .unwrap();
        assert_eq!(c.fields.len(), 3);
        assert_eq!(
            parse_event(r#"{"hook": "exec", "user.auid": 4294967295}"#)
                .unwrap()
                .fields
                .values()
                .next(),
            Some(&Value::Unset)
        );
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (r#"{"process.binary": "/x"}"#, "hook"),
            (r#"{"hook": "boot"}"#, "hook"),
            (
                r#"{"hook": "exec", "process.binray": "/x"}"#,
                "process.binray",
            ),
            (r#"{"hook": "exec", "file.path": "/x"}"#, "file.path"),
            (r#"{"hook": "exec", "user.uid": -1}"#, "user.uid"),
            (r#"{"hook": "exec", "user.uid": 4294967295}"#, "user.uid"),
            (r#"{"hook": "exec", "user.uid": "unset"}"#, "user.uid"),
            (r#"{"hook": "connect", "net.dport": 70000}"#, "net.dport"),
            (r#"{"hook": "connect", "net.dport": "80"}"#, "net.dport"),
            (
                r#"{"hook": "connect", "net.daddr": "10.0.0.0/8"}"#,
                "net.daddr",
            ),
            (
                r#"{"hook": "connect", "net.protocol": "sctp"}"#,
                "net.protocol",
            ),
            (
                r#"{"hook": "exec", "process.binary": "bin/sh"}"#,
                "process.binary",
            ),
            (
                r#"{"hook": "exec", "process.name": "a-very-long-process-name"}"#,
                "process.name",
            ),
            (r#"{"hook": "exec", "user.caps": ["CAP_FLY"]}"#, "user.caps"),
            (
                r#"{"hook": "exec", "user.caps": "CAP_NET_RAW"}"#,
                "user.caps",
            ),
            (r#"{"hook": "exec", "k8s.label": "web"}"#, "k8s.label"),
            (
                r#"{"hook": "exec", "k8s.pod[\"a\"]": "web"}"#,
                "k8s.pod[\"a\"]",
            ),
            (
                r#"{"hook": "exec", "process.interactive": "yes"}"#,
                "process.interactive",
            ),
            (
                r#"{"hook": "exec", "user.uid": 1, "user.uid": 2}"#,
                "user.uid",
            ),
        ];
        for (text, field) in cases {
            let e = parse_event(text).unwrap_err();
            assert_eq!(e.field.as_deref(), Some(field), "{text}: {e}");
            assert!(e.to_string().contains(field), "{e}");
        }
        assert!(parse_event("[1]").unwrap_err().field.is_none());
    }
}
