//! A fault moto cannot be told to make: EC2 out of capacity.
//! [`CapacityOutage`] is a pass-through HTTP proxy in front of moto that
//! answers RunInstances of the instance types it is given with the error real
//! EC2 sends when a zone has none left (`InsufficientInstanceCapacity`, in
//! EC2's documented error response), and hands every other request to moto
//! unchanged. It injects that one fault, as strace injects disk faults
//! (`faults`); moto stays the EC2 and S3 the gate talks to.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// moto behind a proxy that has no capacity for some instance types.
pub struct CapacityOutage {
    endpoint: String,
    server: JoinHandle<()>,
}

struct Outage {
    moto: String,
    instance_types: Vec<String>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl CapacityOutage {
    /// Start the proxy in front of moto at `moto`, out of `instance_types`.
    pub async fn start(moto: &str, instance_types: &[&str]) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let outage = Arc::new(Outage {
            moto: moto.trim_end_matches('/').to_string(),
            instance_types: instance_types.iter().map(|t| t.to_string()).collect(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        });
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let outage = Arc::clone(&outage);
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let outage = Arc::clone(&outage);
                        async move { Ok::<_, Infallible>(outage.answer(req).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self { endpoint, server })
    }

    /// The proxy's URL: give it to the gate as its `--endpoint-url`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

impl Drop for CapacityOutage {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Outage {
    async fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let body = match body.collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => return plain(StatusCode::BAD_REQUEST, e.to_string()),
        };
        if let Some(instance_type) = self.refused(&body) {
            return insufficient_capacity(&instance_type);
        }
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut forward = Request::builder()
            .method(parts.method)
            .uri(format!("{}{path}", self.moto));
        for (name, value) in &parts.headers {
            if name != hyper::header::HOST {
                forward = forward.header(name, value);
            }
        }
        let forward = match forward.body(Full::new(body)) {
            Ok(f) => f,
            Err(e) => return plain(StatusCode::BAD_REQUEST, e.to_string()),
        };
        let answer = match self.client.request(forward).await {
            Ok(a) => a,
            Err(e) => return plain(StatusCode::BAD_GATEWAY, format!("moto: {e}")),
        };
        let (parts, body) = answer.into_parts();
        match body.collect().await {
            Ok(b) => Response::from_parts(parts, Full::new(b.to_bytes())),
            Err(e) => plain(StatusCode::BAD_GATEWAY, format!("moto: {e}")),
        }
    }

    /// The instance type of a RunInstances call this outage refuses.
    fn refused(&self, body: &[u8]) -> Option<String> {
        let form = std::str::from_utf8(body).ok()?;
        let field = |name: &str| {
            form.split('&')
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        };
        let instance_type = field("InstanceType")?;
        (field("Action") == Some("RunInstances")
            && self.instance_types.iter().any(|t| t == instance_type))
        .then(|| instance_type.to_string())
    }
}

/// EC2's answer when a zone has no capacity left for an instance type.
fn insufficient_capacity(instance_type: &str) -> Response<Full<Bytes>> {
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error>\
         <Code>InsufficientInstanceCapacity</Code><Message>We currently do not have \
         sufficient {instance_type} capacity in the Availability Zone you requested \
         (us-east-1a). Our system will be working on provisioning additional capacity. \
         You can currently get {instance_type} capacity by not specifying an Availability \
         Zone in your request or choosing us-east-1b, us-east-1c.</Message></Error></Errors>\
         <RequestID>00000000-0000-4000-8000-000000000000</RequestID></Response>"
    );
    let mut answer = Response::new(Full::new(Bytes::from(xml)));
    *answer.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    answer
}

fn plain(status: StatusCode, text: String) -> Response<Full<Bytes>> {
    let mut answer = Response::new(Full::new(Bytes::from(text)));
    *answer.status_mut() = status;
    answer
}
