//! Decoding of Redis replies, done here instead of by the client library.
//!
//! Everything portsyncd reads from Redis is written by others too, so it is taken as a raw
//! [`redis::Value`] and decoded by the functions below: a value is bytes unless portsyncd itself
//! needs it as text, a reply of an unexpected shape or a server error for one entry is an
//! [`EntryErrorReason`] for that entry alone, and no failure here ever says anything about the
//! connection (see `error::breaks_connection`). All functions are pure and total: any `Value`, of
//! any size, gives an answer.

use std::collections::BTreeMap;

use redis::Value;

use super::error::EntryErrorReason;

/// A Redis hash as read: field to value, both raw bytes.
pub type RawHash = BTreeMap<Vec<u8>, Vec<u8>>;

/// `v` (one reply, or the replies of a pipeline) unless it holds an error reply about the server's
/// state (LOADING, READONLY, OOM, ...: [`super::error::server_state_code`]): that fails the whole
/// command or batch, as a server error the caller's error class sees, instead of passing for an
/// error of the entry it happened to name.
pub fn server_state(v: Value) -> redis::RedisResult<Value> {
    let state = |e: &Value| match e {
        Value::ServerError(se) if super::error::server_state_code(se.code()) => Some(se.clone()),
        _ => None,
    };
    let found = match &v {
        Value::Array(items) => items.iter().find_map(state),
        other => state(other),
    };
    match found {
        Some(e) => Err(e.into()),
        None => Ok(v),
    }
}

/// The reason for an error reply, or None if `v` is no error.
pub fn error_reason(v: &Value) -> Option<EntryErrorReason> {
    match v {
        Value::ServerError(e) => Some(EntryErrorReason::of_server_error(e.code())),
        _ => None,
    }
}

/// A string-like value as bytes (bulk, simple, verbatim strings; integers and doubles as their
/// decimal text, the way Redis itself would print them).
pub fn bytes(v: Value) -> Result<Vec<u8>, EntryErrorReason> {
    match v {
        Value::BulkString(b) => Ok(b),
        Value::SimpleString(s) => Ok(s.into_bytes()),
        Value::VerbatimString { text, .. } => Ok(text.into_bytes()),
        Value::Okay => Ok(b"OK".to_vec()),
        Value::Int(i) => Ok(i.to_string().into_bytes()),
        other => Err(shape_error(&other)),
    }
}

/// A reply to HGET: None for nil, else the value's bytes.
pub fn opt_bytes(v: Value) -> Result<Option<Vec<u8>>, EntryErrorReason> {
    match v {
        Value::Nil => Ok(None),
        other => bytes(other).map(Some),
    }
}

/// A reply to HGETALL: the hash (empty: no such key).
pub fn hash(v: Value) -> Result<RawHash, EntryErrorReason> {
    match v {
        Value::Array(items) => {
            if items.len() % 2 != 0 {
                return Err(EntryErrorReason::BadReply);
            }
            let mut out = RawHash::new();
            let mut it = items.into_iter();
            while let (Some(f), Some(v)) = (it.next(), it.next()) {
                out.insert(bytes(f)?, bytes(v)?);
            }
            Ok(out)
        }
        Value::Map(pairs) => pairs
            .into_iter()
            .map(|(f, v)| Ok((bytes(f)?, bytes(v)?)))
            .collect(),
        Value::Nil => Ok(RawHash::new()),
        other => Err(shape_error(&other)),
    }
}

/// A reply that is an integer (EXISTS, HEXISTS, SADD, a script's `return n`).
pub fn int(v: Value) -> Result<i64, EntryErrorReason> {
    match v {
        Value::Int(i) => Ok(i),
        Value::Boolean(b) => Ok(i64::from(b)),
        other => Err(shape_error(&other)),
    }
}

/// A SCAN page: the next cursor and the keys (raw bytes).
pub fn scan_page(v: Value) -> Result<(u64, Vec<Vec<u8>>), String> {
    let Value::Array(mut parts) = v else {
        return Err(format!("SCAN reply is not a list: {}", kind(&v)));
    };
    if parts.len() != 2 {
        return Err(format!("SCAN reply has {} parts, not 2", parts.len()));
    }
    let keys = parts.pop().unwrap_or(Value::Nil);
    let cursor = parts.pop().unwrap_or(Value::Nil);
    let cursor = bytes(cursor).map_err(|_| "SCAN cursor is not a string".to_string())?;
    let cursor = std::str::from_utf8(&cursor)
        .ok()
        .and_then(|c| c.parse::<u64>().ok())
        .ok_or_else(|| "SCAN cursor is not a number".to_string())?;
    let keys = match keys {
        Value::Array(k) | Value::Set(k) => k
            .into_iter()
            .map(bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| "SCAN key is not a string".to_string())?,
        other => return Err(format!("SCAN keys are not a list: {}", kind(&other))),
    };
    Ok((cursor, keys))
}

/// The replies of a pipeline run with `ignore_errors`: one per command, errors in place.
pub fn list(v: Value, expected: usize) -> Result<Vec<Value>, String> {
    match v {
        Value::Array(items) if items.len() == expected => Ok(items),
        Value::Array(items) => Err(format!("{} replies for {expected} commands", items.len())),
        other => Err(format!("pipeline reply is not a list: {}", kind(&other))),
    }
}

fn shape_error(v: &Value) -> EntryErrorReason {
    error_reason(v).unwrap_or(EntryErrorReason::BadReply)
}

/// A short name of the reply's type for messages.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Nil => "nil",
        Value::Int(_) => "integer",
        Value::BulkString(_) => "bulk string",
        Value::Array(_) => "array",
        Value::SimpleString(_) => "simple string",
        Value::Okay => "OK",
        Value::Map(_) => "map",
        Value::Attribute { .. } => "attribute",
        Value::Set(_) => "set",
        Value::Double(_) => "double",
        Value::Boolean(_) => "boolean",
        Value::VerbatimString { .. } => "verbatim string",
        Value::BigNumber(_) => "big number",
        Value::Push { .. } => "push",
        Value::ServerError(_) => "error",
        _ => "other",
    }
}

/// A field value portsyncd needs as text: the text, or `NotUtf8`.
pub fn text(v: &[u8]) -> Result<&str, EntryErrorReason> {
    std::str::from_utf8(v).map_err(|_| EntryErrorReason::NotUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bulk(b: &[u8]) -> Value {
        Value::BulkString(b.to_vec())
    }

    fn wrongtype() -> Value {
        // What the server sends for HGETALL on a string key.
        match redis::parse_redis_value(
            b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
        ) {
            Ok(v) => v,
            Err(e) => panic!("parse: {e}"),
        }
    }

    #[test]
    fn a_hash_keeps_any_bytes() {
        let v = Value::Array(vec![
            bulk(b"description"),
            bulk(b"caf\xe9"),
            bulk(b"\xff\xfe"),
            bulk(b""),
        ]);
        let h = hash(v).expect("a hash");
        assert_eq!(h[b"description".as_slice()], b"caf\xe9".to_vec());
        assert_eq!(h[b"\xff\xfe".as_slice()], Vec::<u8>::new());
        assert_eq!(hash(Value::Array(vec![])), Ok(RawHash::new()));
    }

    #[test]
    fn a_wrong_type_or_odd_reply_is_an_entry_error() {
        assert_eq!(hash(wrongtype()), Err(EntryErrorReason::WrongType));
        assert_eq!(
            hash(Value::Array(vec![bulk(b"a")])),
            Err(EntryErrorReason::BadReply)
        );
        assert_eq!(hash(Value::Int(3)), Err(EntryErrorReason::BadReply));
        assert_eq!(opt_bytes(wrongtype()), Err(EntryErrorReason::WrongType));
        assert_eq!(opt_bytes(Value::Nil), Ok(None));
        assert_eq!(int(wrongtype()), Err(EntryErrorReason::WrongType));
        let script_error =
            redis::parse_redis_value(b"-ERR user_script:1: oops\r\n").unwrap_or(Value::Nil);
        assert_eq!(int(script_error), Err(EntryErrorReason::ServerError));
    }

    #[test]
    fn scan_pages() {
        let v = Value::Array(vec![
            bulk(b"17"),
            Value::Array(vec![bulk(b"PORT|Ethernet0"), bulk(b"PORT|\xe9")]),
        ]);
        assert_eq!(
            scan_page(v),
            Ok((17, vec![b"PORT|Ethernet0".to_vec(), b"PORT|\xe9".to_vec()]))
        );
        assert!(scan_page(Value::Array(vec![bulk(b"x"), Value::Array(vec![])])).is_err());
        assert!(scan_page(Value::Nil).is_err());
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Nil),
            any::<i64>().prop_map(Value::Int),
            proptest::collection::vec(any::<u8>(), 0..64).prop_map(Value::BulkString),
            ".{0,16}".prop_map(Value::SimpleString),
            Just(Value::Okay),
            any::<bool>().prop_map(Value::Boolean),
            Just(wrongtype()),
        ];
        leaf.prop_recursive(3, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                proptest::collection::vec((inner.clone(), inner.clone()), 0..4)
                    .prop_map(Value::Map),
                proptest::collection::vec(inner, 0..4).prop_map(Value::Set),
            ]
        })
    }

    proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        // Regression files live under tests/ (not beside src/).
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct(
                "tests/proptest-regressions/sonic_reply.txt"
            )
        )),
        ..proptest::prelude::ProptestConfig::default()
    })]
        /// Any reply decodes to an answer or an error, never a panic.
        #[test]
        fn decoding_is_total(v in arb_value(), n in 0usize..10) {
            let _ = hash(v.clone());
            let _ = opt_bytes(v.clone());
            let _ = int(v.clone());
            let _ = scan_page(v.clone());
            let _ = list(v, n);
        }

        /// A hash of any bytes round-trips through its RESP2 and RESP3 replies.
        #[test]
        fn hashes_of_any_bytes_round_trip(
            h in proptest::collection::btree_map(
                proptest::collection::vec(any::<u8>(), 0..32),
                proptest::collection::vec(any::<u8>(), 0..256),
                0..16,
            )
        ) {
            let resp2 = Value::Array(
                h.iter().flat_map(|(f, v)| [bulk(f), bulk(v)]).collect(),
            );
            prop_assert_eq!(hash(resp2), Ok(h.clone()));
            let resp3 = Value::Map(h.iter().map(|(f, v)| (bulk(f), bulk(v))).collect());
            prop_assert_eq!(hash(resp3), Ok(h));
        }
    }

    /// An error about the server's state fails the whole command or pipeline (as Busy, retried),
    /// wherever it stands; an error about one entry stays in place for that entry.
    #[test]
    fn server_state_errors_fail_the_batch_entry_errors_stay() {
        let parse = |b: &[u8]| redis::parse_redis_value(b).unwrap_or(Value::Nil);
        let loading = parse(b"-LOADING Redis is loading the dataset in memory\r\n");
        let wrongtype =
            parse(b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n");
        let batch = Value::Array(vec![Value::Int(1), wrongtype.clone(), Value::Int(0)]);
        assert_eq!(server_state(batch.clone()).ok(), Some(batch));
        assert_eq!(
            server_state(wrongtype.clone()).ok(),
            Some(wrongtype.clone())
        );
        for v in [
            loading.clone(),
            Value::Array(vec![Value::Int(1), wrongtype, loading]),
            parse(b"-OOM command not allowed when used memory > 'maxmemory'\r\n"),
            parse(b"-READONLY You can't write against a read only replica.\r\n"),
        ] {
            let err = server_state(v).expect_err("a server-state error");
            let db = crate::sonic::DbError::Command {
                db: "STATE_DB",
                op: "test".into(),
                source: err,
            };
            assert_eq!(db.class(), crate::sonic::ErrorClass::Busy, "{db}");
            assert!(db.is_transient());
        }
    }
}
