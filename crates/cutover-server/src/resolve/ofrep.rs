//! OpenFeature Remote Evaluation Protocol (OFREP): `POST /ofrep/v1/evaluate/flags/{key}` and the
//! bulk `POST /ofrep/v1/evaluate/flags`, with OFREP's own bodies and status codes, so that the
//! official OFREP providers work unmodified.
//!
//! A flag is an artifact; its value is the content of the version pinned in the environment,
//! `variant` is `v{n}`, `reason` is `STATIC` (or `DISABLED` with no value when nothing is pinned,
//! so that the client's default applies).

use std::borrow::Cow;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use super::coding::{Coding, CompressedPrefix};
use super::exposures::Exposures;
use super::native::environment_for;
use super::ticket;
use super::{Assignment, LiveValue, WorkspaceView};
use crate::AppState;
use crate::auth::Auth;
use crate::error::ApiError;

/// An OFREP error answer: `{"key"?, "errorCode", "errorDetails"}` with its status.
pub struct OfrepError {
    status: StatusCode,
    key: Option<String>,
    code: &'static str,
    details: String,
}

impl OfrepError {
    fn new(status: StatusCode, key: Option<&str>, code: &'static str, details: impl Into<String>) -> Self {
        Self { status, key: key.map(str::to_owned), code, details: details.into() }
    }

    /// The API's own errors (authentication, access) in OFREP's shape.
    fn from_api(error: ApiError, key: Option<&str>) -> Self {
        let code = match error.status {
            StatusCode::BAD_REQUEST => "INVALID_CONTEXT",
            StatusCode::NOT_FOUND => "FLAG_NOT_FOUND",
            _ => "GENERAL",
        };
        Self::new(error.status, key, code, error.message)
    }
}

/// OFREP's error answer, as the OpenAPI document describes it ([`OfrepError`] writes it).
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[expect(dead_code, reason = "describes OfrepError's body for the OpenAPI document")]
pub struct OfrepErrorBody {
    /// The flag, when the request was about one.
    #[schema(nullable = false)]
    key: Option<String>,
    /// `PARSE_ERROR`, `INVALID_CONTEXT`, `TARGETING_KEY_MISSING`, `FLAG_NOT_FOUND` or `GENERAL`.
    error_code: String,
    error_details: String,
}

impl OfrepError {
    fn into_value(self) -> Value {
        let mut body = Map::new();
        if let Some(key) = self.key {
            body.insert("key".into(), Value::String(key));
        }
        body.insert("errorCode".into(), Value::String(self.code.into()));
        body.insert("errorDetails".into(), Value::String(self.details));
        Value::Object(body)
    }
}

impl IntoResponse for OfrepError {
    fn into_response(self) -> Response {
        let status = self.status;
        let mut response = (status, axum::Json(self.into_value())).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(crate::error::RETRY_AFTER_SECONDS));
        }
        response
    }
}

/// `{"context": {"targetingKey"?, "environment"?, ...}}`: OFREP requires `context`.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct EvaluationRequest {
    #[schema(schema_with = evaluation_context)]
    pub context: Map<String, Value>,
}

/// The evaluation context as the document states it: `environment` names where to evaluate
/// (an sdk token may leave it out: its environment is fixed); `targetingKey` picks a variant
/// inside running experiments; other attributes are accepted and ignored.
fn evaluation_context() -> utoipa::openapi::ObjectBuilder {
    use utoipa::openapi::{ObjectBuilder, Type};
    let environment = ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(cutover_api::schema::ENVIRONMENT_NAME))
        .min_length(Some(1))
        .max_length(Some(63));
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property("environment", environment)
        .required("environment")
        // A string; the server ignores a targeting key of another type (as if none were sent).
        .property("targetingKey", ObjectBuilder::new().schema_type(utoipa::openapi::schema::SchemaType::AnyValue))
}

/// A successful evaluation. `value` is absent when nothing is pinned (`reason: DISABLED`).
#[derive(Debug, Serialize, ToSchema)]
pub struct EvaluationSuccess {
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub value: Option<Value>,
    /// `STATIC`, `DISABLED` (and `SPLIT` inside experiments).
    pub reason: &'static str,
    /// `v{n}`; null when nothing is pinned.
    pub variant: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: Value,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BulkEvaluationSuccess {
    /// Each an evaluation success, or `{key, errorCode, errorDetails}` for a flag that could not
    /// be evaluated (a running experiment without a targeting key).
    #[schema(value_type = Vec<Object>)]
    pub flags: Vec<Value>,
    /// Where to hear about changes: an SSE stream of `refetchEvaluation` messages.
    #[schema(value_type = Vec<Object>)]
    pub event_streams: Vec<Value>,
}

/// The request's `context`. A body that is not JSON is a `PARSE_ERROR`; one without `context`
/// (OFREP's document requires it), or whose context is not an object, is `INVALID_CONTEXT`.
///
/// Resolve reads two attributes of the context, so the body is read in one pass that keeps only
/// those ([`RequestBody`]): no tree, and no allocation unless a string has escapes. A body that
/// pass refuses is parsed again the way it always was ([`parse_request_tree`]), so that every
/// error (serde_json's own message, with its position) is the one a `Value` parse gives.
fn parse_request<'a>(body: &'a Bytes, key: Option<&str>) -> Result<Context<'a>, OfrepError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(invalid_context(key, "send a body: {\"context\": {...}}"));
    }
    match serde_json::from_slice::<RequestBody<'a>>(body) {
        Ok(RequestBody::Object(Some(Shaped::Map(context)))) => Ok(context),
        Ok(RequestBody::Object(None | Some(Shaped::Null))) => {
            Err(invalid_context(key, "context is required: {\"context\": {...}}"))
        }
        Ok(RequestBody::Object(Some(Shaped::Text(_) | Shaped::Other))) => {
            Err(invalid_context(key, "context must be an object"))
        }
        Ok(RequestBody::Other) => Err(not_an_object(key)),
        Err(_) => parse_request_tree(body, key).map(|context| Context {
            environment: Field::of(context.get("environment")),
            targeting_key: Field::of(context.get("targetingKey")),
        }),
    }
}

fn invalid_context(key: Option<&str>, details: &str) -> OfrepError {
    OfrepError::new(StatusCode::BAD_REQUEST, key, "INVALID_CONTEXT", details)
}

fn not_an_object(key: Option<&str>) -> OfrepError {
    OfrepError::new(StatusCode::BAD_REQUEST, key, "PARSE_ERROR", "the body must be a JSON object: {\"context\": {...}}")
}

/// The request's `context` parsed into a tree: the reference [`parse_request`] keeps to.
fn parse_request_tree(body: &[u8], key: Option<&str>) -> Result<Map<String, Value>, OfrepError> {
    let request: Value = serde_json::from_slice(body).map_err(|e| {
        OfrepError::new(
            StatusCode::BAD_REQUEST,
            key,
            "PARSE_ERROR",
            format!("the body is not an evaluation request: {e}"),
        )
    })?;
    let Value::Object(mut request) = request else {
        return Err(not_an_object(key));
    };
    match request.remove("context") {
        Some(Value::Object(context)) => Ok(context),
        None | Some(Value::Null) => Err(invalid_context(key, "context is required: {\"context\": {...}}")),
        Some(_) => Err(invalid_context(key, "context must be an object")),
    }
}

/// What resolve reads of an evaluation context: `environment` and `targetingKey`, as sent.
#[derive(Debug, Default, PartialEq)]
struct Context<'a> {
    environment: Field<'a>,
    targeting_key: Field<'a>,
}

/// One context attribute as sent: resolve only tells strings from null from anything else.
#[derive(Debug, Default, PartialEq)]
enum Field<'a> {
    #[default]
    Absent,
    Null,
    Text(Cow<'a, str>),
    Other,
}

impl Field<'_> {
    fn of(value: Option<&Value>) -> Field<'static> {
        match value {
            None => Field::Absent,
            Some(Value::Null) => Field::Null,
            Some(Value::String(text)) => Field::Text(Cow::Owned(text.clone())),
            Some(_) => Field::Other,
        }
    }
}

/// An evaluation request's body as [`parse_request`] reads it: an object and its last `context`
/// (a `Map` keeps the last of repeated keys), or anything else.
enum RequestBody<'a> {
    Object(Option<Shaped<'a, Context<'a>>>),
    Other,
}

/// A JSON value, as far as resolve cares: null, a string, an object read as `M`, or other.
enum Shaped<'a, M> {
    Null,
    Text(Cow<'a, str>),
    Map(M),
    Other,
}

/// An object's keys that resolve reads. serde_json's `Value` gives one key a meaning of its own
/// (its `RawValue` marker, with the `raw_value` feature on): meeting it, this pass gives up and
/// the tree parse decides, as it always did.
enum Attribute {
    Context,
    Environment,
    TargetingKey,
    Other,
}

/// Reads an object into `Self`.
trait ReadMap<'de>: Sized {
    fn read<A: MapAccess<'de>>(map: A) -> Result<Self, A::Error>;
}

impl<'de> ReadMap<'de> for Context<'de> {
    fn read<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        let mut context = Context::default();
        while let Some(key) = map.next_key::<Attribute>()? {
            match key {
                Attribute::Environment => context.environment = map.next_value::<Shaped<'de, Skip>>()?.into(),
                Attribute::TargetingKey => context.targeting_key = map.next_value::<Shaped<'de, Skip>>()?.into(),
                Attribute::Context | Attribute::Other => map.next_value::<Skip>().map(drop)?,
            }
        }
        Ok(context)
    }
}

impl<'a> From<Shaped<'a, Skip>> for Field<'a> {
    fn from(shaped: Shaped<'a, Skip>) -> Self {
        match shaped {
            Shaped::Null => Field::Null,
            Shaped::Text(text) => Field::Text(text),
            Shaped::Map(Skip) | Shaped::Other => Field::Other,
        }
    }
}

/// Any JSON value, read through and dropped (checked as a `Value` parse checks it: serde_json's
/// parser does the checking, whatever the visitor keeps).
struct Skip;

impl<'de> ReadMap<'de> for Skip {
    fn read<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
        while map.next_key::<Attribute>()?.is_some() {
            map.next_value::<Skip>()?;
        }
        Ok(Skip)
    }
}

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ShapeVisitor::<Skip>(PhantomData)).map(|_| Skip)
    }
}

impl<'de, M: ReadMap<'de>> Deserialize<'de> for Shaped<'de, M> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ShapeVisitor::<M>(PhantomData))
    }
}

struct ShapeVisitor<M>(PhantomData<M>);

impl<'de, M: ReadMap<'de>> Visitor<'de> for ShapeVisitor<M> {
    type Value = Shaped<'de, M>;

    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Shaped::Other)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Shaped::Other)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Shaped::Other)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Shaped::Other)
    }

    fn visit_borrowed_str<E: de::Error>(self, text: &'de str) -> Result<Self::Value, E> {
        Ok(Shaped::Text(Cow::Borrowed(text)))
    }

    /// A string with escapes (serde_json unescaped it into its scratch buffer).
    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        Ok(Shaped::Text(Cow::Owned(text.to_owned())))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Shaped::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Shaped::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        M::read(map).map(Shaped::Map)
    }
}

impl<'de> Deserialize<'de> for Attribute {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Attribute;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("a string key")
            }

            fn visit_str<E: de::Error>(self, key: &str) -> Result<Attribute, E> {
                Ok(match key {
                    "context" => Attribute::Context,
                    "environment" => Attribute::Environment,
                    "targetingKey" => Attribute::TargetingKey,
                    RAW_VALUE_KEY => return Err(E::custom("serde_json's raw value marker")),
                    _ => Attribute::Other,
                })
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// The key serde_json's `Value` parse reads as its `RawValue` marker (`serde_json::raw::TOKEN`).
const RAW_VALUE_KEY: &str = "$serde_json::private::RawValue";

impl<'de> Deserialize<'de> for RequestBody<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BodyMap<'a>(Option<Shaped<'a, Context<'a>>>);
        impl<'de> ReadMap<'de> for BodyMap<'de> {
            fn read<A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
                let mut context = None;
                while let Some(key) = map.next_key::<Attribute>()? {
                    match key {
                        Attribute::Context => context = Some(map.next_value::<Shaped<'de, Context<'de>>>()?),
                        Attribute::Environment | Attribute::TargetingKey | Attribute::Other => {
                            map.next_value::<Skip>().map(drop)?
                        }
                    }
                }
                Ok(BodyMap(context))
            }
        }
        Ok(match Shaped::<BodyMap<'de>>::deserialize(deserializer)? {
            Shaped::Map(BodyMap(context)) => RequestBody::Object(context),
            Shaped::Null | Shaped::Text(_) | Shaped::Other => RequestBody::Other,
        })
    }
}

async fn authenticate(parts: &mut Parts, state: &AppState, key: Option<&str>) -> Result<Auth, OfrepError> {
    Auth::from_request_parts(parts, state).await.map_err(|e| OfrepError::from_api(e, key))
}

/// The environment a request evaluates in: an sdk token's own, or `context.environment`.
fn environment(auth: &Auth, context: &Context<'_>, key: Option<&str>) -> Result<String, OfrepError> {
    let named = match &context.environment {
        Field::Absent | Field::Null => None,
        Field::Text(name) => Some(name.as_ref()),
        Field::Other => {
            return Err(OfrepError::new(
                StatusCode::BAD_REQUEST,
                key,
                "INVALID_CONTEXT",
                "context.environment must be a string",
            ));
        }
    };
    environment_for(auth, named).map_err(|e| {
        if e.status == StatusCode::BAD_REQUEST {
            OfrepError::new(
                StatusCode::BAD_REQUEST,
                key,
                "INVALID_CONTEXT",
                "name the environment in context.environment, or use an sdk token",
            )
        } else {
            OfrepError::from_api(e, key)
        }
    })
}

/// The answer for a pinned flag, as [`evaluate`] would give it, encoded.
pub fn encode_static(key: &str, environment: &str, version: i64, value: &Value, revision: i64) -> Bytes {
    let success = EvaluationSuccess {
        key: key.to_owned(),
        value: Some(value.clone()),
        reason: "STATIC",
        variant: Some(format!("v{version}")),
        metadata: json!({"environment": environment, "version": version, "revision": revision}),
    };
    serde_json::to_vec(&success).map(Bytes::from).unwrap_or_default()
}

/// The answer a user assigned to variant `index` of a running experiment gets, as [`evaluate`]
/// would give it, encoded (for the change preview).
pub fn encode_split(
    key: &str,
    environment: &str,
    experiment: &str,
    index: usize,
    version: i64,
    value: &Value,
    revision: i64,
) -> Bytes {
    let success = EvaluationSuccess {
        key: key.to_owned(),
        value: Some(value.clone()),
        reason: "SPLIT",
        variant: Some(format!("v{version}")),
        metadata: json!({
            "environment": environment,
            "version": version,
            "revision": revision,
            "experiment": experiment,
            "experimentVariant": cutover_domain::experiments::variant_key(index),
        }),
    };
    serde_json::to_vec(&success).map(Bytes::from).unwrap_or_default()
}

/// A bulk answer, up to its stream ticket: `{"flags":` … and the start of `eventStreams`, as
/// [`BulkEvaluationSuccess`] serialises (keys in order).
const BULK_STREAM_HEAD: &[u8] =
    b",\"eventStreams\":[{\"endpoint\":{\"requestUri\":\"/api/v1/stream?format=ofrep&ticket=";
/// What follows the ticket.
const BULK_STREAM_TAIL: &[u8] = b"\"},\"inactivityDelaySec\":120,\"type\":\"sse\"}]}";

/// The bulk answer's bytes before the stream ticket, around an encoded `flags` array.
fn bulk_prefix(flags: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(flags.len() + 128);
    out.extend_from_slice(b"{\"flags\":");
    out.extend_from_slice(flags);
    out.extend_from_slice(BULK_STREAM_HEAD);
    out
}

/// The bulk answer's bytes from the stream ticket on: the only part that differs per token.
fn bulk_tail(ticket: &str) -> Bytes {
    let mut out = Vec::with_capacity(ticket.len() + BULK_STREAM_TAIL.len() + 2);
    // The ticket as a JSON string's content (it has no character to escape; this keeps it so).
    let _ = serde_json::to_writer(&mut out, ticket);
    out.pop();
    out.remove(0);
    out.extend_from_slice(BULK_STREAM_TAIL);
    out.into()
}

/// The `flags` array of a bulk answer where nothing but pins decide: each pinned flag's answer,
/// already encoded, by key, joined.
fn encode_flags(live: Option<&HashMap<String, Arc<LiveValue>>>) -> Vec<u8> {
    let mut keys: Vec<&String> = live.map(|pins| pins.keys().collect()).unwrap_or_default();
    keys.sort_unstable();
    let mut out = Vec::with_capacity(2 + keys.len() * 128);
    out.push(b'[');
    for (i, key) in keys.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        if let Some(value) = live.and_then(|pins| pins.get(key)) {
            out.extend_from_slice(&value.ofrep);
        }
    }
    out.push(b']');
    out
}

/// The bulk answer of an environment where nothing but pins decide, up to the stream ticket: the
/// same bytes for every caller, built once per revision (with the view), and compressed once per
/// coding, by the first request that asks for it.
pub struct SharedBulk {
    pub prefix: Bytes,
    compressed: [tokio::sync::OnceCell<Option<CompressedPrefix>>; 3],
}

impl std::fmt::Debug for SharedBulk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedBulk").field("prefix_bytes", &self.prefix.len()).finish_non_exhaustive()
    }
}

impl SharedBulk {
    pub fn new(live: Option<&HashMap<String, Arc<LiveValue>>>) -> Self {
        Self { prefix: bulk_prefix(&encode_flags(live)).into(), compressed: Default::default() }
    }

    /// The prefix compressed in `coding`, compressed now if no request asked for it before
    /// (off the async workers; concurrent requests wait for the one compression). `None` for
    /// identity, or if compressing failed (then the answer is sent plain).
    async fn compressed(&self, coding: Coding) -> Option<&CompressedPrefix> {
        let slot = coding.slot()?;
        let compressed = self.compressed[slot].get_or_init(|| async {
            let prefix = self.prefix.clone();
            match tokio::task::spawn_blocking(move || CompressedPrefix::new(coding, &prefix)).await {
                Ok(Ok(compressed)) => Some(compressed),
                Ok(Err(e)) => {
                    tracing::error!(coding = coding.name(), error = %e, "compressing a bulk answer failed");
                    None
                }
                Err(e) => {
                    tracing::error!(coding = coding.name(), error = %e, "compressing a bulk answer failed");
                    None
                }
            }
        });
        compressed.await.as_ref()
    }
}

/// A response body made of shared chunks, sent as they are (no copy into one buffer), with its
/// length known up front (`Content-Length`).
struct Chunks(std::collections::VecDeque<Bytes>);

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(self.get_mut().0.pop_front().map(|chunk| Ok(http_body::Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.0.iter().map(|chunk| chunk.len() as u64).sum())
    }
}

/// Evaluates one flag. `Ok(None)`: no such flag. Inside a running experiment, the targeting key
/// picks the variant (reason `SPLIT`); without one the answer is `TARGETING_KEY_MISSING`.
fn evaluate(
    exposures: &Exposures,
    view: &WorkspaceView,
    environment: &str,
    key: &str,
    targeting_key: Option<&str>,
) -> Result<Option<EvaluationSuccess>, OfrepError> {
    if !view.artifacts.contains_key(key) {
        return Ok(None);
    }
    let assignment = match view.experiment(environment, key) {
        Some(experiment) => experiment.assign(targeting_key).ok_or_else(|| {
            OfrepError::new(
                StatusCode::BAD_REQUEST,
                Some(key),
                "TARGETING_KEY_MISSING",
                "this flag is in a running experiment: send context.targetingKey",
            )
        })?,
        None => Assignment::Pinned,
    };
    let (experiment, index, reason) = match assignment {
        Assignment::Variant { experiment, index } => {
            if let Some(user) = targeting_key {
                exposures.record(experiment, user, index);
            }
            (experiment, index, "SPLIT")
        }
        Assignment::Control { experiment } => (experiment, 0, "STATIC"),
        Assignment::Pinned => {
            let live = view.get(environment, key);
            let metadata = match live {
                Some(live) => json!({"environment": environment, "version": live.version, "revision": view.revision}),
                None => json!({"environment": environment, "revision": view.revision}),
            };
            return Ok(Some(EvaluationSuccess {
                key: key.to_owned(),
                value: live.map(|l| l.value.clone()),
                reason: if live.is_some() { "STATIC" } else { "DISABLED" },
                variant: live.map(|l| format!("v{}", l.version)),
                metadata,
            }));
        }
    };
    let version = experiment.version(index);
    Ok(Some(EvaluationSuccess {
        key: key.to_owned(),
        value: experiment.values.get(index).cloned(),
        reason,
        variant: Some(format!("v{version}")),
        metadata: json!({
            "environment": environment,
            "version": version,
            "revision": view.revision,
            "experiment": &*experiment.id,
            "experimentVariant": cutover_domain::experiments::variant_key(index),
        }),
    }))
}

/// `context.targetingKey`: absent when missing, null or empty; otherwise it must be a valid
/// targeting key (as events require), else `INVALID_CONTEXT`.
fn targeting_key<'a>(context: &'a Context<'_>, key: Option<&str>) -> Result<Option<&'a str>, OfrepError> {
    let invalid = |details: String| OfrepError::new(StatusCode::BAD_REQUEST, key, "INVALID_CONTEXT", details);
    match &context.targeting_key {
        Field::Absent | Field::Null => Ok(None),
        Field::Text(k) if k.is_empty() => Ok(None),
        Field::Text(k) => match cutover_domain::check_targeting_key("context.targetingKey", k) {
            Ok(()) => Ok(Some(k)),
            Err(e) => Err(invalid(e.to_string())),
        },
        Field::Other => Err(invalid("context.targetingKey must be a string".into())),
    }
}

/// Evaluates one flag (an artifact) in the environment of the token or `context.environment`.
#[utoipa::path(
    post, path = "/ofrep/v1/evaluate/flags/{key}", tag = "ofrep",
    security(("token" = []), ("api_key" = [])),
    params(("key" = String, Path, description = "Flag key: the artifact key. A key with `/` may be sent as it is (`prompts/greeting`) or percent-encoded")),
    request_body = EvaluationRequest,
    responses(
        (status = 200, body = EvaluationSuccess),
        (status = 400, description = "`errorCode` PARSE_ERROR, INVALID_CONTEXT (no `context`, no environment) or TARGETING_KEY_MISSING", body = OfrepErrorBody),
        (status = 401, description = "missing or invalid token, or `Authorization` and `X-API-Key` carrying different tokens", body = OfrepErrorBody),
        (status = 403, description = "the token may not evaluate in this environment", body = OfrepErrorBody),
        (status = 404, description = "`errorCode` FLAG_NOT_FOUND", body = OfrepErrorBody),
        (status = 413, description = "the body is larger than the server accepts", body = OfrepErrorBody),
        (status = 503, description = "the workspace's flags cannot be loaded: the database does not answer", body = OfrepErrorBody)
    )
)]
pub async fn evaluate_flag(
    State(state): State<AppState>,
    axum::extract::Path(key): axum::extract::Path<String>,
    request: axum::extract::Request,
) -> Result<Response, OfrepError> {
    let (mut parts, body) = request.into_parts();
    let auth = authenticate(&mut parts, &state, Some(&key)).await?;
    let body = axum::body::to_bytes(body, state.config.max_body_bytes).await.map_err(|_| {
        OfrepError::new(StatusCode::PAYLOAD_TOO_LARGE, Some(&key), "GENERAL", "the request body is too large")
    })?;
    let context = parse_request(&body, Some(&key))?;
    let environment = environment(&auth, &context, Some(&key))?;
    let targeting_key = targeting_key(&context, Some(&key))?;
    let view =
        state.resolver.view(auth.workspace_id()).await.map_err(|e| OfrepError::from_api(e.into(), Some(&key)))?;
    if !view.environments.contains(&environment) {
        return Err(OfrepError::new(
            StatusCode::BAD_REQUEST,
            Some(&key),
            "INVALID_CONTEXT",
            format!("environment {environment:?} does not exist"),
        ));
    }
    if view.experiment(&environment, &key).is_none() {
        if let (Some(_), Some(live)) = (view.artifacts.get(&key), view.get(&environment, &key)) {
            let json = HeaderValue::from_static("application/json");
            return Ok(([(header::CONTENT_TYPE, json)], live.ofrep.clone()).into_response());
        }
    }
    let success = evaluate(&state.exposures, &view, &environment, &key, targeting_key)?.ok_or_else(|| {
        OfrepError::new(StatusCode::NOT_FOUND, Some(&key), "FLAG_NOT_FOUND", format!("flag {key:?} was not found"))
    })?;
    Ok(axum::Json(success).into_response())
}

/// The bulk ETag: the workspace revision and a hash of what else the answer depends on (the
/// environment, the targeting key, the experiments running or paused there), so that neither a
/// client whose context changed nor one whose experiment started gets a stale 304, nor one
/// whose stream ticket is about to expire.
fn etag(view: &WorkspaceView, environment: &str, context: &Context<'_>, ticket_window: i64) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    environment.hash(&mut hasher);
    // The advertised stream URL carries a ticket renewed every window.
    ticket_window.hash(&mut hasher);
    // The targeting key as JSON text (`"user-1"`, `null`), as sent. Only a validated context
    // gets here: a targeting key of another type was refused.
    let targeting_key = match &context.targeting_key {
        Field::Absent | Field::Other => None,
        Field::Null => Some("null".to_owned()),
        Field::Text(text) => serde_json::to_string(text).ok(),
    };
    targeting_key.hash(&mut hasher);
    if let Some(experiments) = view.experiments.get(environment) {
        let mut state: Vec<_> = experiments.values().map(|x| (&*x.id, x.running)).collect();
        state.sort_unstable();
        state.hash(&mut hasher);
    }
    format!("\"{}-{:x}\"", view.revision, hasher.finish())
}

fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|candidate| candidate.trim() == etag || candidate.trim() == "*")
}

/// Evaluates every flag that has a value in the environment. `ETag` changes with the revision;
/// `If-None-Match` with the current one answers 304. `eventStreams` advertises the SSE stream.
#[utoipa::path(
    post, path = "/ofrep/v1/evaluate/flags", tag = "ofrep",
    security(("token" = []), ("api_key" = [])),
    params(("If-None-Match" = Option<String>, Header, description = "ETag of the last answer")),
    request_body = EvaluationRequest,
    responses(
        (status = 200, body = BulkEvaluationSuccess, headers(("ETag" = String, description = "Revision of this answer"))),
        (status = 304, description = "nothing changed since the ETag in If-None-Match"),
        (status = 400, description = "`errorCode` PARSE_ERROR, or INVALID_CONTEXT (no `context`, no environment)", body = OfrepErrorBody),
        (status = 401, description = "missing or invalid token, or `Authorization` and `X-API-Key` carrying different tokens", body = OfrepErrorBody),
        (status = 403, description = "the token may not evaluate in this environment", body = OfrepErrorBody),
        (status = 413, description = "the body is larger than the server accepts", body = OfrepErrorBody),
        (status = 503, description = "the workspace's flags cannot be loaded: the database does not answer", body = OfrepErrorBody)
    )
)]
pub async fn evaluate_flags(
    State(state): State<AppState>,
    request: axum::extract::Request,
) -> Result<Response, OfrepError> {
    let (mut parts, body) = request.into_parts();
    let auth = authenticate(&mut parts, &state, None).await?;
    let body = axum::body::to_bytes(body, state.config.max_body_bytes).await.map_err(|_| {
        OfrepError::new(StatusCode::PAYLOAD_TOO_LARGE, None, "GENERAL", "the request body is too large")
    })?;
    let context = parse_request(&body, None)?;
    let environment = environment(&auth, &context, None)?;
    let targeting_key = targeting_key(&context, None)?;
    let view = state.resolver.view(auth.workspace_id()).await.map_err(|e| OfrepError::from_api(e.into(), None))?;
    if !view.environments.contains(&environment) {
        return Err(OfrepError::new(
            StatusCode::BAD_REQUEST,
            None,
            "INVALID_CONTEXT",
            format!("environment {environment:?} does not exist"),
        ));
    }
    let now = ticket::now_seconds();
    let shared = view.static_bulk.get(&environment);
    // Compressed once per revision where the answer is shared; an answer built per caller
    // (experiments) is sent plain rather than compressed per request.
    let coding = if shared.is_some() { super::coding::negotiate(&parts.headers) } else { Coding::Identity };
    let plain_etag = etag(&view, &environment, &context, ticket::window(now));
    let vary = [(header::VARY, HeaderValue::from_static("accept-encoding"))];
    if not_modified(&parts.headers, &tagged(&plain_etag, coding)) {
        let etag = etag_header(&tagged(&plain_etag, coding))?;
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)], vary).into_response());
    }
    // EventSource cannot send headers: the URL carries its own credential (ADR 0008), a ticket
    // bound to this token, workspace and environment; never the token itself.
    let ticket = state.tickets.issue(auth.workspace_id(), &auth.0.token.id, &environment, now);
    let tail = bulk_tail(&ticket);
    // `{"flags": …, "eventStreams": …}`, as `BulkEvaluationSuccess` serialises: shared bytes
    // (compressed once where asked) then the per-token tail. With experiments, each pinned flag's
    // encoded answer with the experiments' per-user answers spliced in.
    let (chunks, coding) = match shared {
        Some(shared) => match shared.compressed(coding).await.map(|c| (c, c.finish(&tail))) {
            Some((compressed, Ok(end))) => ([compressed.head.clone(), end], coding),
            Some((_, Err(e))) => {
                tracing::error!(coding = coding.name(), error = %e, "compressing a bulk answer's tail failed");
                ([shared.prefix.clone(), tail], Coding::Identity)
            }
            None => ([shared.prefix.clone(), tail], Coding::Identity),
        },
        None => ([bulk_prefix(&splice_flags(&state, &view, &environment, targeting_key)).into(), tail], coding),
    };
    let mut response = Response::new(axum::body::Body::new(Chunks(chunks.into())));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::ETAG, etag_header(&tagged(&plain_etag, coding))?);
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    if coding != Coding::Identity {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(coding.name()));
    }
    Ok(response)
}

/// The ETag of an answer in `coding`: a strong validator of its own per coding (`"7-…-gzip"`),
/// since the encoded bytes differ from the plain ones; identity keeps the plain tag.
fn tagged(etag: &str, coding: Coding) -> std::borrow::Cow<'_, str> {
    match (coding, etag.strip_suffix('"')) {
        (Coding::Identity, _) | (_, None) => etag.into(),
        (coding, Some(open)) => format!("{open}-{}\"", coding.name()).into(),
    }
}

fn etag_header(etag: &str) -> Result<HeaderValue, OfrepError> {
    HeaderValue::from_str(etag).map_err(|_| OfrepError::new(StatusCode::INTERNAL_SERVER_ERROR, None, "GENERAL", "etag"))
}

/// The `flags` array of an environment with experiments: pinned flags from their encoded
/// answers, flags in an experiment evaluated for this caller, by key.
fn splice_flags(state: &AppState, view: &WorkspaceView, environment: &str, targeting_key: Option<&str>) -> Vec<u8> {
    let live = view.live.get(environment);
    let experiments = view.experiments.get(environment);
    let mut keys: Vec<&String> = live.map(|pins| pins.keys().collect()).unwrap_or_default();
    keys.extend(experiments.into_iter().flat_map(|experiments| experiments.keys()));
    keys.sort_unstable();
    keys.dedup();
    let mut out = Vec::with_capacity(2 + keys.len() * 128);
    out.push(b'[');
    let mut first = true;
    for key in keys {
        let encoded: Option<std::borrow::Cow<'_, [u8]>> =
            match (experiments.and_then(|x| x.get(key)), live.and_then(|pins| pins.get(key))) {
                (None, Some(pinned)) => Some(pinned.ofrep[..].into()),
                _ => match evaluate(&state.exposures, view, environment, key, targeting_key) {
                    Ok(success) => success.and_then(|s| serde_json::to_vec(&s).ok()).map(Into::into),
                    Err(failure) => serde_json::to_vec(&failure.into_value()).ok().map(Into::into),
                },
            };
        let Some(encoded) = encoded else { continue };
        if !first {
            out.push(b',');
        }
        first = false;
        out.extend_from_slice(&encoded);
    }
    out.push(b']');
    out
}

/// The single-flag route. Its key is the rest of the path, so that keys with `/` work as the
/// official providers send them, unencoded (`…/flags/prompts/greeting`), as well as encoded;
/// OpenAPI documents it as OFREP does, `…/flags/{key}`.
pub fn flag_route() -> utoipa_axum::router::OpenApiRouter<AppState> {
    let (schemas, paths, method_router) = utoipa_axum::routes!(evaluate_flag);
    let mut router = utoipa_axum::router::OpenApiRouter::new().route("/ofrep/v1/evaluate/flags/{*key}", method_router);
    let openapi = router.get_openapi_mut();
    openapi.paths.paths.extend(paths.paths);
    openapi.components.get_or_insert_with(Default::default).schemas.extend(schemas);
    router
}

/// Requests under `/ofrep/` that match no route, in OFREP's error shape (`errorCode` GENERAL),
/// so that an OFREP client reports them as a provider error rather than failing to parse.
pub fn no_route(status: StatusCode, method: &axum::http::Method, path: &str) -> Response {
    let details = if status == StatusCode::METHOD_NOT_ALLOWED {
        format!("{method} is not allowed on {path}")
    } else {
        format!("no OFREP route for {method} {path}")
    };
    OfrepError::new(status, None, "GENERAL", details).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(version: i64, value: Value, key: &str) -> Arc<LiveValue> {
        let ofrep = encode_static(key, "prod", version, &value, 9);
        Arc::new(LiveValue { version, value, ofrep })
    }

    #[test]
    fn the_shared_flags_array_is_every_pinned_answer_by_key() {
        let mut pins = HashMap::new();
        pins.insert("b/two".to_owned(), live(2, json!({"n": 2}), "b/two"));
        pins.insert("a".to_owned(), live(1, json!("hi"), "a"));
        let encoded: Value = serde_json::from_slice(&encode_flags(Some(&pins))).unwrap();
        assert_eq!(
            encoded,
            json!([
                {"key": "a", "value": "hi", "reason": "STATIC", "variant": "v1",
                 "metadata": {"environment": "prod", "version": 1, "revision": 9}},
                {"key": "b/two", "value": {"n": 2}, "reason": "STATIC", "variant": "v2",
                 "metadata": {"environment": "prod", "version": 2, "revision": 9}}
            ])
        );
        assert_eq!(&encode_flags(None)[..], b"[]");
    }

    /// What `parse_request` answered when it parsed every body into a `Value`.
    fn parse_as_a_tree(body: &[u8]) -> Result<Context<'static>, Value> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(invalid_context(Some("k"), "send a body: {\"context\": {...}}").into_value());
        }
        parse_request_tree(body, Some("k"))
            .map(|context| Context {
                environment: Field::of(context.get("environment")),
                targeting_key: Field::of(context.get("targetingKey")),
            })
            .map_err(OfrepError::into_value)
    }

    #[test]
    fn the_one_pass_parse_answers_what_the_tree_parse_answers() {
        let deep = format!("{{\"context\":{{\"a\":{}1{}}}}}", "[".repeat(200), "]".repeat(200));
        let bodies: Vec<&[u8]> = vec![
            br#"{"context":{"targetingKey":"user-1"}}"#,
            br#"{"context":{"environment":"production","targetingKey":"u\u0031","plan":{"a":[1,2.5,null]}}}"#,
            br#" {"other":[{"context":1}],"context":{"targetingKey":null,"environment":null}} "#,
            br#"{"context":{"targetingKey":5}}"#,
            br#"{"context":{"targetingKey":[1,{"a":2}]}}"#,
            br#"{"context":{"environment":{"x":1}}}"#,
            br#"{"context":{"environment":true,"targetingKey":""}}"#,
            br#"{"context":{"environment":"a","environment":"b","targetingKey":"x","targetingKey":7}}"#,
            br#"{"context":1,"context":{"targetingKey":"x"}}"#,
            br#"{"context":{"targetingKey":"x"},"context":null}"#,
            br#"{"context":{"context":"not this one"}}"#,
            br#"{}"#,
            br#"{"context":null}"#,
            br#"{"context":"x"}"#,
            br#"{"context":[]}"#,
            br#"[]"#,
            br#""s""#,
            b"1",
            b"null",
            b"true",
            b"",
            b"  \n\t",
            b"{not json",
            br#"{"context":{}} trailing"#,
            br#"{"context":{}}{"context":{}}"#,
            br#"{"context":{"a":1e400}}"#,
            br#"{"context":{"a":18446744073709551616,"b":-9223372036854775809}}"#,
            br#"{"context":{"a":"\ud800"}}"#,
            b"{\"context\":{\"a\":\"\xff\"}}",
            b"{\"context\":{\"\xff\":1}}",
            b"{\"context\":{\"a\":\"tab\there\"}}",
            br#"{"context":{"a":01}}"#,
            br#"{"context":{"a":-}}"#,
            br#"{"context":{,}}"#,
            br#"{"context":{"a":1,}}"#,
            br#"{"context":{"a":[1,]}}"#,
            br#"{"context":{1:2}}"#,
            deep.as_bytes(),
            // serde_json's `Value` gives this key a meaning (with its `raw_value` feature).
            br#"{"$serde_json::private::RawValue":"{\"context\":{\"targetingKey\":\"k\"}}"}"#,
            br#"{"$serde_json::private::RawValue":5}"#,
            br#"{"\u0024serde_json::private::RawValue":"{}"}"#,
            br#"{"context":{"$serde_json::private::RawValue":"{\"environment\":\"dev\"}"}}"#,
            br#"{"context":{"x":{"$serde_json::private::RawValue":"1"}}}"#,
            br#"{"context":{"x":{"a":1,"$serde_json::private::RawValue":"1"}}}"#,
        ];
        for body in bodies {
            let shown = String::from_utf8_lossy(body);
            let bytes = Bytes::copy_from_slice(body);
            let fast = parse_request(&bytes, Some("k"));
            let fast =
                fast.map(|c| Context { environment: owned(c.environment), targeting_key: owned(c.targeting_key) });
            assert_eq!(fast.map_err(OfrepError::into_value), parse_as_a_tree(body), "{shown}");
        }
    }

    fn owned(field: Field<'_>) -> Field<'static> {
        match field {
            Field::Absent => Field::Absent,
            Field::Null => Field::Null,
            Field::Text(text) => Field::Text(Cow::Owned(text.into_owned())),
            Field::Other => Field::Other,
        }
    }

    #[test]
    fn the_bulk_etag_is_what_it_was_when_the_context_was_a_map() {
        let view = WorkspaceView { revision: 42, ..WorkspaceView::default() };
        for body in [
            r#"{"context":{"targetingKey":"user-1"}}"#,
            r#"{"context":{"targetingKey":"\u00fc \"quoted\" \\ \u0001"}}"#,
            r#"{"context":{"targetingKey":null}}"#,
            r#"{"context":{"targetingKey":""}}"#,
            r#"{"context":{}}"#,
        ] {
            let Value::Object(tree) = &serde_json::from_str::<Value>(body).unwrap()["context"] else { panic!() };
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            "prod".hash(&mut hasher);
            7_i64.hash(&mut hasher);
            tree.get("targetingKey").map(Value::to_string).hash(&mut hasher);
            let before = format!("\"42-{:x}\"", hasher.finish());
            let bytes = Bytes::from(body);
            let Ok(context) = parse_request(&bytes, None) else { panic!("{body}") };
            assert_eq!(etag(&view, "prod", &context, 7), before, "{body}");
        }
    }

    #[test]
    fn a_shared_prefix_and_a_tail_are_the_bytes_serde_would_write() {
        let mut pins = HashMap::new();
        pins.insert("a".to_owned(), live(1, json!("hi"), "a"));
        let ticket =
            "t1.0190a0b0-0000-7000-8000-000000000001.0190a0b0-0000-7000-8000-000000000002.prod.1700000400.0a1b";
        let event_streams = vec![json!({
            "type": "sse",
            "endpoint": {"requestUri": format!("/api/v1/stream?format=ofrep&ticket={ticket}")},
            "inactivityDelaySec": 120,
        })];
        // The envelope as serde writes it, around the flags' own encoding.
        let mut whole = b"{\"flags\":".to_vec();
        whole.extend_from_slice(&encode_flags(Some(&pins)));
        whole.extend_from_slice(b",\"eventStreams\":");
        serde_json::to_writer(&mut whole, &event_streams).unwrap();
        whole.push(b'}');
        let shared = SharedBulk::new(Some(&pins));
        let joined = [&shared.prefix[..], &bulk_tail(ticket)[..]].concat();
        assert_eq!(String::from_utf8(joined).unwrap(), String::from_utf8(whole).unwrap());
    }
}
