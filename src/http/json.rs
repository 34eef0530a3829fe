//! A JSON body extractor whose errors are problem+json naming the field.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::header::CONTENT_TYPE;
use serde::de::DeserializeOwned;

use crate::domain::Code;
use crate::http::error::ApiError;

pub struct ApiJson<T>(pub T);

/// A query string extractor whose errors are problem+json too.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(query)) => Ok(ApiQuery(query)),
            Err(rejection) => Err(ApiError::BadRequest {
                code: Code::InvalidQuery,
                field: None,
                detail: rejection.body_text(),
            }),
        }
    }
}

const MAX_BODY: usize = 64 * 1024;

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let declared = req.headers().contains_key(CONTENT_TYPE);
        let json_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json") || v.contains("+json"));
        let bytes = Bytes::from_request(req, state).await.map_err(|_| ApiError::BadRequest {
            code: Code::BodyUnreadable,
            field: None,
            detail: "the request body could not be read".into(),
        })?;
        // A body-less POST (no content at all) counts as `{}`.
        let empty = bytes.iter().all(u8::is_ascii_whitespace);
        let bodyless = empty && !declared;
        if !json_type && !bodyless {
            return Err(ApiError::BadRequest {
                code: Code::UnsupportedMediaType,
                field: None,
                detail: "send a JSON body with Content-Type: application/json".into(),
            });
        }
        parse(&bytes).map(ApiJson)
    }
}

/// Parses a body; an empty one counts as `{}` so that optional bodies work.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.len() > MAX_BODY {
        return Err(ApiError::BadRequest {
            code: Code::BodyTooLarge,
            field: None,
            detail: format!("the body exceeds {MAX_BODY} bytes"),
        });
    }
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { bytes };
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        // serde_json reports some type errors (a number where an enum is
        // expected) as syntax errors; only JSON that does not parse is one.
        let parses = serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok();
        if (inner.is_syntax() || inner.is_eof()) && !parses {
            return ApiError::BadRequest {
                code: Code::MalformedJson,
                field: None,
                detail: format!("the body is not valid JSON: {inner}"),
            };
        }
        let message = inner.to_string();
        // serde names a missing field only in its message.
        let field = match message.strip_prefix("missing field `") {
            Some(rest) => {
                let name = rest.split('`').next().unwrap_or_default();
                if path == "." { name.to_owned() } else { format!("{path}.{name}") }
            }
            None => path,
        };
        let detail = match message.rsplit_once(" at line ") {
            Some((head, _)) => head.to_owned(),
            None => message,
        };
        ApiError::Invalid {
            code: Code::InvalidField,
            detail: format!("{field}: {detail}"),
            field: Some(field),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Body {
        participant_ids: Vec<String>,
        kind: Option<u8>,
    }

    fn field_of(json: &str) -> Option<String> {
        match parse::<Body>(json.as_bytes()) {
            Err(ApiError::Invalid { field, .. }) => field,
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn a_missing_field_is_named() {
        assert_eq!(field_of("{}").as_deref(), Some("participantIds"));
    }

    #[test]
    fn a_wrongly_typed_field_is_named_with_its_path() {
        assert_eq!(field_of(r#"{"participantIds": "bob"}"#).as_deref(), Some("participantIds"));
        assert_eq!(field_of(r#"{"participantIds": [1]}"#).as_deref(), Some("participantIds[0]"));
        assert_eq!(field_of(r#"{"participantIds": [], "kind": -1}"#).as_deref(), Some("kind"));
    }

    #[test]
    fn broken_json_is_a_bad_request() {
        assert!(matches!(parse::<Body>(b"{"), Err(ApiError::BadRequest { .. })));
        assert!(matches!(parse::<Body>(br#"{"participantIds": ["a"#), Err(ApiError::BadRequest { .. })));
    }
}
