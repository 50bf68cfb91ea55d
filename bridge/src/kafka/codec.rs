//! Kafka wire format of one exchange: a request frame (without its length prefix) split into a
//! decoded [`RequestHeader`] and a body decoded on demand, and responses encoded as header + body.
//!
//! Invariants: nothing here panics on any input. The header's version is derived from the API
//! key and version as Kafka specifies (`ApiKey::request_header_version`), the response header's
//! likewise (`response_header_version`), and a body is decoded only after [`guard::check`] has
//! proved that no array in it claims more elements than the frame could hold, so a hostile
//! length cannot make the decoder reserve gigabytes.

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};

use super::{guard, Error, Result};

/// One request: what it is, its header, and its still-encoded body.
#[derive(Debug, Clone)]
pub(crate) struct Frame {
    /// The API, from the header.
    pub api: ApiKey,
    /// The API version, from the header.
    pub version: i16,
    /// The decoded header (correlation id, client id).
    pub header: RequestHeader,
    /// The body, positioned after the header.
    pub body: Bytes,
}

impl Frame {
    /// The header's correlation id, echoed in the response.
    pub fn correlation_id(&self) -> i32 {
        self.header.correlation_id
    }

    /// The header's client id, "" when null.
    pub fn client_id(&self) -> String {
        self.header.client_id.as_deref().unwrap_or_default().to_owned()
    }

    /// "Fetch v12 request", for errors.
    pub fn describe(&self) -> String {
        format!("{:?} v{} request", self.api, self.version)
    }

    /// Decodes the body as `T` at the request's version, after the array-length guard.
    pub fn decode<T: Decodable>(&self) -> Result<T> {
        let malformed = |reason: String| Error::Malformed { request: self.describe(), reason };
        guard::check(self.api, self.version, &self.body).map_err(|e| malformed(e.to_string()))?;
        let mut body = self.body.clone();
        T::decode(&mut body, self.version).map_err(|e| malformed(format!("{e:#}")))
    }

    /// Encodes `body` as the response to this request (same API and version).
    pub fn respond<T: Encodable>(&self, body: &T) -> Result<Bytes> {
        encode_response(self.api, self.version, self.correlation_id(), body)
    }
}

/// Splits a frame into header and body. Fails on an unknown API key or an undecodable header.
pub(crate) fn parse(frame: Bytes) -> Result<Frame> {
    let malformed = |reason: &str| Error::Malformed { request: "request header".into(), reason: reason.into() };
    if frame.len() < 4 {
        return Err(malformed("shorter than an API key and version"));
    }
    let mut peek = &frame[..4];
    let key = peek.get_i16();
    let version = peek.get_i16();
    let api = ApiKey::try_from(key).map_err(|()| Error::UnknownApiKey(key))?;
    let mut body = frame;
    let header = RequestHeader::decode(&mut body, api.request_header_version(version)).map_err(|e| {
        Error::Malformed { request: format!("{api:?} v{version} request header"), reason: format!("{e:#}") }
    })?;
    Ok(Frame { api, version, header, body })
}

/// Encodes a response header (at the version Kafka specifies for `api` at `version`) and `body`.
pub(crate) fn encode_response<T: Encodable>(api: ApiKey, version: i16, correlation_id: i32, body: &T) -> Result<Bytes> {
    let failed = |reason: String| Error::Encode { api, version, reason };
    let header_version = api.response_header_version(version);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_size = header.compute_size(header_version).map_err(|e| failed(format!("{e:#}")))?;
    let body_size = body.compute_size(version).map_err(|e| failed(format!("{e:#}")))?;
    let mut buf = BytesMut::with_capacity(header_size + body_size);
    header.encode(&mut buf, header_version).map_err(|e| failed(format!("{e:#}")))?;
    body.encode(&mut buf, version).map_err(|e| failed(format!("{e:#}")))?;
    Ok(buf.freeze())
}
