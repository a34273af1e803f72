//! The command line's client for a running node's API (`DATA_DIR/api`).

use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use serde::de::DeserializeOwned;

use super::jobs::Job;
use super::{ErrorBody, API_FILE};

/// Errors talking to the node.
#[derive(Debug, thiserror::Error)]
pub enum ApiClientError {
    #[error("node API at {url}: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{0}")]
    Node(String),
}

/// A connection to the node running on a data dir.
pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl ApiClient {
    /// The API of the node running on `data_dir`, if one answers.
    pub async fn discover(data_dir: &Path) -> Option<ApiClient> {
        let text = std::fs::read_to_string(data_dir.join(API_FILE)).ok()?;
        let mut lines = text.lines();
        let url = lines.next()?.trim().to_owned();
        let token = lines.next()?.trim().to_owned();
        // Only ever talk to a loopback API: the file is ours, but be strict about it.
        if !url.starts_with("http://127.0.0.1:") {
            return None;
        }
        let http = reqwest::Client::builder().no_proxy().build().ok()?;
        let me = ApiClient {
            http,
            base: format!("{url}/api/v1"),
            token,
        };
        let probe = me
            .http
            .get(format!("{}/id", me.base))
            .bearer_auth(&me.token)
            .timeout(Duration::from_secs(3));
        match probe.send().await {
            Ok(r) if r.status().is_success() => Some(me),
            _ => None,
        }
    }

    fn err(&self, source: reqwest::Error) -> ApiClientError {
        ApiClientError::Http {
            url: self.base.clone(),
            source,
        }
    }

    async fn decode<T: DeserializeOwned>(&self, r: reqwest::Response) -> Result<T, ApiClientError> {
        if r.status() == reqwest::StatusCode::NO_CONTENT {
            // An answer without a body: `()` (or any `T` that reads from JSON null).
            serde_json::from_str("null").map_err(|e| ApiClientError::Node(e.to_string()))
        } else if r.status().is_success() {
            r.json().await.map_err(|e| self.err(e))
        } else {
            let status = r.status();
            match r.json::<ErrorBody>().await {
                Ok(b) => Err(ApiClientError::Node(b.detail)),
                Err(_) => Err(ApiClientError::Node(format!("node answered {status}"))),
            }
        }
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiClientError> {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| self.err(e))?;
        self.decode(r).await
    }

    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiClientError> {
        let r = self
            .http
            .delete(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| self.err(e))?;
        self.decode(r).await
    }

    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<T, ApiClientError> {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .map_err(|e| self.err(e))?;
        self.decode(r).await
    }

    /// Sends a streaming body (stdin for `add -`).
    pub async fn post_stream<T: DeserializeOwned>(
        &self,
        path: &str,
        body: reqwest::Body,
    ) -> Result<T, ApiClientError> {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .body(body)
            .send()
            .await
            .map_err(|e| self.err(e))?;
        self.decode(r).await
    }

    /// Streams a response body into `sink`, chunk by chunk.
    pub async fn stream(
        &self,
        method: reqwest::Method,
        path: &str,
        mut sink: impl FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<(), ApiClientError> {
        let r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| self.err(e))?;
        if !r.status().is_success() {
            return self.decode::<()>(r).await;
        }
        let mut body = r.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| self.err(e))?;
            sink(&chunk).map_err(|e| ApiClientError::Node(format!("writing output: {e}")))?;
        }
        Ok(())
    }

    /// Follows a fetch job's server-sent events until it ends; returns its last state.
    pub async fn follow_job(
        &self,
        job: u64,
        mut on: impl FnMut(&Job),
    ) -> Result<Job, ApiClientError> {
        let mut buf = Vec::new();
        let mut last: Option<Job> = None;
        self.stream(
            reqwest::Method::GET,
            &format!("/jobs/{job}/events"),
            |bytes| {
                buf.extend_from_slice(bytes);
                while let Some(i) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=i).collect();
                    let Some(data) = line.strip_prefix(b"data:") else {
                        continue;
                    };
                    if let Ok(j) = serde_json::from_slice::<Job>(data.trim_ascii()) {
                        on(&j);
                        last = Some(j);
                    }
                }
                Ok(())
            },
        )
        .await?;
        last.filter(Job::finished)
            .ok_or_else(|| ApiClientError::Node(format!("job {job}'s events ended before it did")))
    }
}
