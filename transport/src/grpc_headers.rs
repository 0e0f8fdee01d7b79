//! The gRPC header names both ends of the h2 wire read and write on every call, made once:
//! looking a header up or inserting it by `&str` parses and validates the name each time.

use http::HeaderName;

/// The caller's deadline (`grpc-timeout`), on a request.
pub(crate) const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");
/// The compression of a request's messages (`grpc-encoding`).
pub(crate) const GRPC_ENCODING: HeaderName = HeaderName::from_static("grpc-encoding");
/// The call's status code (`grpc-status`), in trailers or a trailers-only response.
pub(crate) const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
/// The status message (`grpc-message`), percent-encoded.
pub(crate) const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
/// The status details (`grpc-status-details-bin`), which LCache neither sends nor reads.
pub(crate) const GRPC_STATUS_DETAILS_BIN: HeaderName =
    HeaderName::from_static("grpc-status-details-bin");
