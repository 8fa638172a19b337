//! No panics on any input.

use super::*;
use proptest::prelude::*;

use crate::config::Format;
use crate::config::parse::from_text;

fn any_value() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("routes".to_string()),
        Just("match".to_string()),
        Just("action".to_string()),
        Just("ports".to_string()),
        Just("targets".to_string()),
        Just("target".to_string()),
        Just("host".to_string()),
        Just("port".to_string()),
        Just("type".to_string()),
        Just("from".to_string()),
        Just("to".to_string()),
        Just("name".to_string()),
        Just("security".to_string()),
        Just("tls".to_string()),
        Just("redirect".to_string()),
        Just("respond".to_string()),
        Just("headers".to_string()),
        Just("request".to_string()),
        Just("websocket".to_string()),
        Just("pingInterval".to_string()),
        Just("loadBalancing".to_string()),
        Just("healthCheck".to_string()),
        Just("protocol".to_string()),
        Just("path".to_string()),
        Just("status".to_string()),
        Just("rateLimit".to_string()),
        Just("basicAuth".to_string()),
        Just("users".to_string()),
        Just("password".to_string()),
        Just("proxyProtocol".to_string()),
        Just("accept".to_string()),
        "[a-zA-Z]{0,12}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (0u64..70_000).prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        Just(json!("forward")),
        Just(json!("preserve")),
        Just(json!("redirect")),
        Just(json!("respond")),
        Just(json!("block")),
        Just(json!("tcp")),
        Just(json!("{domain}{path}{x}")),
        Just(json!("$2b$04$")),
        Just(json!("$argon2id$v=19$m=8,t=1,p=1$")),
        ".{0,16}".prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn validation_never_panics(value in any_value()) {
        if let Err(errors) = from_value(&value) {
            prop_assert!(!errors.0.is_empty());
        }
        let _ = from_value(&json!({ "routes": [value.clone()] }));
        let _ = from_value(&json!({ "routes": [{ "match": value.clone(), "action": value }] }));
    }

    #[test]
    fn parsing_text_never_panics(text in ".{0,200}") {
        let _ = from_text(&text, Format::Json);
        let _ = from_text(&text, Format::Yaml);
        let _ = from_text(&text, Format::Toml);
    }
}
