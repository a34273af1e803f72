//! The API's errors: a status code and a JSON body `{ "error": code, "detail": text }`.
//!
//! The code is a short stable word a program can match on (`bad_id`, `not_held`…); the detail
//! is the one line a person reads. This module owns the mapping from the lower layers' typed
//! errors to status codes, so that every handler answers the same failure the same way.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::content::ContentError;
use crate::files::FilesError;
use crate::node::NodeError;
use crate::store::StoreError;

/// The body of every error the API answers.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A stable code: `bad_request`, `bad_id`, `unauthorized`, `local_only`, `not_held`,
    /// `not_found`, `not_pinned`, `conflict`, `too_large`, `quota`, `unsatisfiable_range`,
    /// `fetch_failed`, `timeout`, `unavailable`, `corrupt`, `internal`.
    pub error: String,
    /// What went wrong, in one line.
    pub detail: String,
}

/// An error as a handler returns it.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl std::fmt::Display) -> Self {
        Self {
            status,
            code,
            detail: detail.to_string(),
        }
    }

    pub fn bad_request(detail: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", detail)
    }

    pub fn bad_id(detail: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_id", detail)
    }

    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", detail)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong API token (send `Authorization: Bearer TOKEN`; the token is in DATA_DIR/api)",
        )
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.code.to_owned(),
            detail: self.detail.clone(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.body();
        (self.status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let (status, code) = match &e {
            StoreError::Missing { .. } | StoreError::Incomplete { .. } => {
                (StatusCode::NOT_FOUND, "not_held")
            }
            StoreError::NotPinned(_) => (StatusCode::NOT_FOUND, "not_pinned"),
            StoreError::QuotaExceeded { .. } => (StatusCode::INSUFFICIENT_STORAGE, "quota"),
            StoreError::Corrupt { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "corrupt"),
            StoreError::Io { source, .. } if is_disk_full(source) => {
                (StatusCode::INSUFFICIENT_STORAGE, "quota")
            }
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        Self::new(status, code, e)
    }
}

fn is_disk_full(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOSPC)
}

impl From<ContentError> for ApiError {
    fn from(e: ContentError) -> Self {
        Self::bad_request(e)
    }
}

impl From<FilesError> for ApiError {
    fn from(e: FilesError) -> Self {
        match e {
            FilesError::Store(s) => s.into(),
            FilesError::Content(ContentError::MalformedManifest { .. }) => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "corrupt", e)
            }
            FilesError::Content(c) => c.into(),
            FilesError::Io { ref source, .. } if is_disk_full(source) => {
                Self::new(StatusCode::INSUFFICIENT_STORAGE, "quota", e)
            }
            FilesError::Io { ref source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                Self::new(StatusCode::NOT_FOUND, "not_found", e)
            }
            FilesError::NoSuchPath { .. } => Self::new(StatusCode::NOT_FOUND, "not_found", e),
            FilesError::IsFolder { .. }
            | FilesError::NotAFolder { .. }
            | FilesError::Exists { .. } => Self::new(StatusCode::CONFLICT, "conflict", e),
            FilesError::Incomplete { .. } | FilesError::NotHeld { .. } => {
                Self::new(StatusCode::NOT_FOUND, "not_held", e)
            }
            FilesError::Corrupt { .. } => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "corrupt", e)
            }
            FilesError::Output(_) => Self::internal(e),
            _ => Self::bad_request(e),
        }
    }
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> Self {
        match e {
            NodeError::Store(s) => s.into(),
            NodeError::Files(f) => f.into(),
            NodeError::Content(c) => c.into(),
            NodeError::NoProviders { .. } => Self::new(StatusCode::NOT_FOUND, "not_found", e),
            NodeError::Incomplete { .. } => Self::new(StatusCode::BAD_GATEWAY, "fetch_failed", e),
            NodeError::DeadlinePassed { .. } => {
                Self::new(StatusCode::GATEWAY_TIMEOUT, "timeout", e)
            }
            NodeError::Stopped => Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e),
            NodeError::Dial { .. } => Self::new(StatusCode::BAD_GATEWAY, "dial_failed", e),
            _ => Self::new(StatusCode::BAD_GATEWAY, "fetch_failed", e),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let code = match r.status() {
            StatusCode::PAYLOAD_TOO_LARGE => "too_large",
            _ => "bad_request",
        };
        Self::new(r.status(), code, r.body_text())
    }
}

impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(r: axum::extract::rejection::PathRejection) -> Self {
        Self::bad_request(r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        Self::bad_request(r.body_text())
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        Self::internal(e)
    }
}

impl From<crate::collections::CollectionError> for ApiError {
    fn from(e: crate::collections::CollectionError) -> Self {
        use crate::collections::CollectionError as C;
        let (status, code) = match &e {
            C::MalformedId(_) => (StatusCode::BAD_REQUEST, "bad_id"),
            C::Malformed(_) | C::BadName => (StatusCode::BAD_REQUEST, "bad_request"),
            C::Store(_) => return Self::internal(e),
            C::NotAuthorized => (StatusCode::FORBIDDEN, "not_authorized"),
            C::UnknownName(_) | C::NotFollowed(_) | C::NotListed(_) | C::NotFound => {
                (StatusCode::NOT_FOUND, "not_found")
            }
            C::NameTaken(_) => (StatusCode::CONFLICT, "exists"),
            C::OwnCollection(_) => (StatusCode::CONFLICT, "own_collection"),
            C::BadSignature(_)
            | C::WrongCollection
            | C::Stale { .. }
            | C::SeqJump { .. }
            | C::BrokenChain { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_collection"),
            C::Search(_) => return Self::internal(e),
        };
        Self::new(status, code, e)
    }
}

impl From<crate::node::collections::ServiceError> for ApiError {
    fn from(e: crate::node::collections::ServiceError) -> Self {
        match e {
            crate::node::collections::ServiceError::Collection(c) => c.into(),
            crate::node::collections::ServiceError::Node(n) => n.into(),
        }
    }
}
