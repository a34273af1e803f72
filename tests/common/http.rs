//! Talking to a node's HTTP API from a test: with its token (from `DATA_DIR/api`) or
//! without one.
#![allow(dead_code)]

use std::time::Duration;

use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;

use crate::procs::NodeProc;

pub struct Http {
    pub base: String,
    token: Option<String>,
    pub client: reqwest::Client,
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("HTTP client")
}

impl Http {
    /// The node's API with its token.
    pub fn of(node: &NodeProc) -> Http {
        let file = std::fs::read_to_string(node.data_dir.join("api")).expect("DATA_DIR/api");
        let token = file.lines().nth(1).expect("a token line").trim().to_owned();
        Http {
            base: node.api.clone(),
            token: Some(token),
            client: client(),
        }
    }

    /// `base` with `token` (a node in a container).
    pub fn with_token(base: &str, token: &str) -> Http {
        Http {
            base: base.trim_end_matches('/').to_owned(),
            token: Some(token.to_owned()),
            client: client(),
        }
    }

    /// `base` without a token (a gateway, or a stranger).
    pub fn anonymous(base: &str) -> Http {
        Http {
            base: base.trim_end_matches('/').to_owned(),
            token: None,
            client: client(),
        }
    }

    pub fn token(&self) -> &str {
        self.token.as_deref().unwrap_or("")
    }

    pub fn req(&self, method: Method, path: &str) -> RequestBuilder {
        let r = self.client.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// Sends and reads the answer as JSON (Null when it is not JSON).
    pub async fn send_json(&self, r: RequestBuilder) -> (StatusCode, Value) {
        let resp = r.send().await.expect("the node answers");
        let status = resp.status();
        let body = resp.bytes().await.expect("a body");
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send_json(self.req(Method::GET, path)).await
    }

    pub async fn post(&self, path: &str) -> (StatusCode, Value) {
        self.send_json(self.req(Method::POST, path)).await
    }

    /// POSTs `body` as JSON; the status and the answer.
    pub async fn post_json(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.send_json(self.req(Method::POST, path).json(body))
            .await
    }

    /// Uploads `data` as a file called `name`; its ID.
    pub async fn upload(&self, name: &str, data: Vec<u8>) -> String {
        let (status, v) = self
            .send_json(
                self.req(Method::POST, &format!("/api/v1/upload?name={name}"))
                    .body(data),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "upload: {v}");
        v["id"].as_str().expect("an id").to_owned()
    }

    /// Starts a fetch job and follows its events to the end; the last state.
    pub async fn fetch(&self, id: &str) -> Value {
        let (status, job) = self.post(&format!("/api/v1/fetch/{id}")).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{job}");
        let n = job["job"].as_u64().expect("a job number");
        let resp = self
            .req(Method::GET, &format!("/api/v1/jobs/{n}/events"))
            .send()
            .await
            .expect("job events");
        assert_eq!(
            resp.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        let text = resp.text().await.expect("the stream ends with the job");
        let last = text
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .next_back()
            .expect("at least one event");
        serde_json::from_str(last.trim()).expect("a job")
    }
}

/// The JSON error of a failed request: its code, after checking its status.
pub fn error_code(got: &(StatusCode, Value), status: u16) -> String {
    assert_eq!(got.0.as_u16(), status, "{}", got.1);
    assert!(
        got.1["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "an error says what went wrong: {}",
        got.1
    );
    got.1["error"].as_str().expect("an error code").to_owned()
}
