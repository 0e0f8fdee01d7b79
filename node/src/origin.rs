//! The HTTP origin loader: a group whose source of truth is an HTTP service
//! (`--group 'NAME:origin=http://host:port/items/{key}'`).
//!
//! A miss on the key's owner becomes one `GET` of the template with `{key}` replaced by the
//! percent-encoded key, over a pooled HTTP/1.1 client:
//! - `200` → the body is the value; `Cache-Control: max-age=N` sets its lifetime (else the
//!   group's default); a body over the value limit is a load error;
//! - `404` → the key does not exist (a miss, remembered on the owner for `miss-ttl`);
//! - any other status, or a transport error → a load error (the callers see `UNAVAILABLE`).
//!
//! The node bounds each load by `--load-timeout` (and the node-wide `--max-loads`).

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::header::CACHE_CONTROL;
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::loader::{LoadError, Loaded, Loader};

/// The placeholder an origin template must contain.
pub const KEY_PLACEHOLDER: &str = "{key}";

/// Characters left as they are in a key put into a URL path: RFC 3986's unreserved ones.
const KEY_ESCAPES: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Why an origin template is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    /// The template is not an `http://` URL with a `{key}` placeholder.
    #[error("origin `{template}`: {reason}")]
    InvalidTemplate {
        /// The template given.
        template: String,
        /// What is wrong.
        reason: String,
    },
}

/// Loads keys with an HTTP GET of a URL template; see the [module docs](self).
pub struct OriginLoader {
    template: String,
    client: Client<HttpConnector, Empty<Bytes>>,
    max_value_bytes: usize,
}

impl fmt::Debug for OriginLoader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OriginLoader")
            .field("template", &self.template)
            .field("max_value_bytes", &self.max_value_bytes)
            .finish_non_exhaustive()
    }
}

impl OriginLoader {
    /// A loader for `template` (`http://host:port/path/{key}...`), refusing values over
    /// `max_value_bytes`. Checks the template now; connects on the first load.
    pub fn new(template: &str, max_value_bytes: usize) -> Result<Self, OriginError> {
        let invalid = |reason: &str| OriginError::InvalidTemplate {
            template: template.to_owned(),
            reason: reason.to_owned(),
        };
        if !template.contains(KEY_PLACEHOLDER) {
            return Err(invalid("it needs a {key} placeholder"));
        }
        let probe: Uri = template
            .replace(KEY_PLACEHOLDER, "k")
            .parse()
            .map_err(|e: http::uri::InvalidUri| invalid(&e.to_string()))?;
        if probe.scheme_str() != Some("http") || probe.host().is_none() {
            return Err(invalid("only http://host[:port]/... URLs are supported"));
        }
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(OriginLoader {
            template: template.to_owned(),
            client,
            max_value_bytes,
        })
    }

    /// The URL `key` is loaded from.
    pub fn url(&self, key: &[u8]) -> String {
        let key = percent_encode(key, KEY_ESCAPES).to_string();
        self.template.replace(KEY_PLACEHOLDER, &key)
    }
}

/// The lifetime a `Cache-Control` header gives, from its `max-age` directive.
fn max_age(header: Option<&http::HeaderValue>) -> Option<Duration> {
    let value = header?.to_str().ok()?;
    value.split(',').find_map(|directive| {
        let seconds = directive.trim().strip_prefix("max-age=")?;
        seconds
            .trim_matches('"')
            .parse::<u64>()
            .ok()
            .filter(|&s| s > 0)
            .map(Duration::from_secs)
    })
}

#[async_trait::async_trait]
impl Loader for OriginLoader {
    async fn load(&self, key: &[u8]) -> Result<Option<Loaded>, LoadError> {
        let url = self.url(key);
        let uri: Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| LoadError(format!("origin url {url}: {e}")))?;
        let request = Request::get(uri)
            .body(Empty::new())
            .map_err(|e| LoadError(format!("origin request {url}: {e}")))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| LoadError(format!("origin {url}: {e}")))?;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(None),
            status => return Err(LoadError(format!("origin {url} answered {status}"))),
        }
        let ttl = max_age(response.headers().get(CACHE_CONTROL));
        let body = Limited::new(response.into_body(), self.max_value_bytes)
            .collect()
            .await
            .map_err(|e| LoadError(format!("origin {url}: body: {e}")))?
            .to_bytes();
        let loaded = Loaded::new(body);
        Ok(Some(match ttl {
            Some(ttl) => loaded.with_ttl(ttl),
            None => loaded,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_checked() {
        assert!(OriginLoader::new("http://127.0.0.1:8080/items/{key}", 10).is_ok());
        for bad in [
            "http://127.0.0.1:8080/items/",
            "https://example.invalid/{key}",
            "ftp://h/{key}",
            "not a url {key}",
        ] {
            assert!(OriginLoader::new(bad, 10).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn keys_are_percent_encoded_into_the_url() {
        let loader = OriginLoader::new("http://h:1/items/{key}?v=1", 10).unwrap();
        assert_eq!(loader.url(b"user:42"), "http://h:1/items/user%3A42?v=1");
        assert_eq!(loader.url(b"a b/c"), "http://h:1/items/a%20b%2Fc?v=1");
        assert_eq!(loader.url("é".as_bytes()), "http://h:1/items/%C3%A9?v=1");
        assert_eq!(loader.url(b"ok-1.2_~"), "http://h:1/items/ok-1.2_~?v=1");
    }

    #[test]
    fn max_age_sets_the_lifetime() {
        let h = |v: &'static str| http::HeaderValue::from_static(v);
        assert_eq!(
            max_age(Some(&h("public, max-age=60"))),
            Some(Duration::from_secs(60))
        );
        assert_eq!(max_age(Some(&h("no-cache"))), None);
        assert_eq!(max_age(Some(&h("max-age=0"))), None);
        assert_eq!(max_age(Some(&h("max-age=x"))), None);
        assert_eq!(max_age(None), None);
    }
}
