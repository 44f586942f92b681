//! The HTTP API under `/api/v1`: handlers, one module per resource. The route table is in
//! [`crate::router`], the document's frame in [`crate::openapi`], and the extractors and
//! parameter helpers the handlers share in [`crate::extract`].

pub mod artifacts;
pub mod audit;
pub mod environments;
pub mod events;
pub mod experiments;
pub mod health;
pub mod params;
pub mod pins;
pub mod pools;
pub mod queues;
pub mod responses;
pub mod results;
pub mod rollouts;
pub mod tokens;
pub mod versions;
pub mod workspaces;
