//! Serde helpers for Octez's JSON forms: hex bytes, timestamps, protocol
//! source text.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serializer};
use serde_json::Value;

/// `bytes` fields (`Variable.bytes`, `bytes`): lowercase hex strings.
pub(crate) mod hex_bytes {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        hex::decode(&*s).map_err(D::Error::custom)
    }
}

/// `Time.Protocol` timestamps: written as `crate::time::rfc3339`; read from an
/// RFC 3339 string, a decimal string or a JSON integer.
pub(crate) mod timestamp {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(t: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::time::rfc3339(*t))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) => crate::time::parse_timestamp(&s)
                .ok_or_else(|| D::Error::custom(format!("invalid timestamp {s:?}"))),
            Value::Number(n) => n
                .as_i64()
                .ok_or_else(|| D::Error::custom(format!("timestamp {n} is not an int64"))),
            other => Err(D::Error::custom(format!("invalid timestamp {other}"))),
        }
    }
}

/// Text that is usually UTF-8 (protocol sources): a JSON string when it is
/// UTF-8, `{"hex": …}` otherwise. Reading also accepts Octez's own form for
/// invalid UTF-8, `{"invalid_utf8_string": [byte, …]}`.
pub(crate) mod text {
    use super::*;

    pub(crate) fn to_value(b: &[u8]) -> Value {
        match std::str::from_utf8(b) {
            Ok(s) => Value::String(s.to_owned()),
            Err(_) => serde_json::json!({ "hex": hex::encode(b) }),
        }
    }

    pub(crate) fn from_value(v: Value) -> Result<Vec<u8>, String> {
        match v {
            Value::String(s) => Ok(s.into_bytes()),
            Value::Object(m) => {
                if let (Some(Value::String(h)), 1) = (m.get("hex"), m.len()) {
                    return hex::decode(h).map_err(|e| e.to_string());
                }
                if let (Some(Value::Array(a)), 1) = (m.get("invalid_utf8_string"), m.len()) {
                    return a
                        .iter()
                        .map(|x| {
                            x.as_u64()
                                .and_then(|n| u8::try_from(n).ok())
                                .ok_or_else(|| format!("not a byte: {x}"))
                        })
                        .collect();
                }
                Err("expected a string, {\"hex\": …} or {\"invalid_utf8_string\": […]}".into())
            }
            other => Err(format!("expected a string, not {other}")),
        }
    }

    pub(crate) fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(b) {
            Ok(t) => s.serialize_str(t),
            Err(_) => serde::Serialize::serialize(&to_value(b), s),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        from_value(Value::deserialize(d)?).map_err(D::Error::custom)
    }

    /// The same for an optional field (absent or `null`: `None`).
    pub(crate) mod opt {
        use super::*;

        pub(crate) fn serialize<S: Serializer>(
            b: &Option<Vec<u8>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match b {
                Some(b) => super::serialize(b, s),
                None => s.serialize_none(),
            }
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<Vec<u8>>, D::Error> {
            match Value::deserialize(d)? {
                Value::Null => Ok(None),
                v => super::from_value(v).map(Some).map_err(D::Error::custom),
            }
        }
    }
}
