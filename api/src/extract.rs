//! Extractors that parse untrusted input into types at the edge and answer problem+json
//! when they cannot, like every other error of the API.

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use petportrait_core::ids::Id;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A resource id from the path, parsed into its type. A malformed id names no resource,
/// so it answers 404 like an unknown one.
pub struct PathId<T>(pub T);

impl<S: Send + Sync, T: Id> FromRequestParts<S> for PathId<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(text) = Path::<String>::from_request_parts(parts, state).await.map_err(|_| ApiError::not_found())?;
        T::parse(&text).map(PathId).ok_or_else(ApiError::not_found)
    }
}

/// The query string, parsed; a malformed one answers axum's status (400) as
/// problem+json, code `invalid_parameter`.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Query(value))
            .map_err(|rejection| ApiError::new(rejection.status(), "invalid_parameter", rejection.body_text()))
    }
}
