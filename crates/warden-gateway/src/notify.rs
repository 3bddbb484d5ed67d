//! `--approval-notify URL`: each approval request is also POSTed to a URL (a chat webhook, a
//! pager) with a link to its page on the console, where a person answers it. The queue stays
//! the authority; a notification that cannot be delivered is logged and changes nothing.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use warden_tower::tls::{ClientTls, HttpsClient, https_client};
use warden_tower::{Answer, AnswerFuture, ApprovalDesk, ApprovalRequest, Approver, DeskFuture};

/// How long one notification may take.
const DEADLINE: Duration = Duration::from_secs(5);

/// A desk that announces each request before it waits for the answer.
pub struct Notified {
    inner: Arc<dyn ApprovalDesk>,
    url: http::Uri,
    /// The console's base URL, as people open it.
    console: String,
    client: HttpsClient<Full<Bytes>>,
}

impl Notified {
    /// An `https://` URL is verified as `tls` says.
    pub fn new(
        inner: Arc<dyn ApprovalDesk>,
        url: http::Uri,
        tls: &ClientTls,
        console: String,
    ) -> Result<Notified, crate::Error> {
        let client = https_client(tls).map_err(|e| crate::Error::Config(e.to_string()))?;
        Ok(Notified {
            inner,
            url,
            console: console.trim_end_matches('/').to_owned(),
            client,
        })
    }

    /// The request as JSON, with `console_url`: the page where it is answered.
    fn payload(&self, r: &ApprovalRequest) -> Option<Bytes> {
        let mut v = serde_json::to_value(r).ok()?;
        v["console_url"] = format!("{}/console/approvals#{}", self.console, r.id).into();
        serde_json::to_vec(&v).ok().map(Bytes::from)
    }
}

impl Approver for Notified {
    fn ask(&self, request: ApprovalRequest) -> AnswerFuture {
        if let Some(body) = self.payload(&request) {
            let (client, url, id) = (self.client.clone(), self.url.clone(), request.id.clone());
            tokio::spawn(async move {
                let req = http::Request::post(url)
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(Full::new(body));
                let sent = match req {
                    Ok(req) => match tokio::time::timeout(DEADLINE, client.request(req)).await {
                        Ok(Ok(resp)) if resp.status().is_success() => Ok(()),
                        Ok(Ok(resp)) => Err(format!("answered {}", resp.status())),
                        Ok(Err(e)) => {
                            Err(warden_tower::tls::explain(&e).unwrap_or_else(|| e.to_string()))
                        }
                        Err(_) => Err(format!("no answer within {} s", DEADLINE.as_secs())),
                    },
                    Err(e) => Err(e.to_string()),
                };
                if let Err(why) = sent {
                    tracing::warn!(target: "warden::gateway", id, error = %why, "approval notification not delivered");
                }
            });
        }
        self.inner.ask(request)
    }

    fn via(&self) -> &'static str {
        "queue"
    }
}

impl ApprovalDesk for Notified {
    fn pending(&self) -> DeskFuture<'_, Result<Vec<ApprovalRequest>, String>> {
        self.inner.pending()
    }

    fn answer<'a>(&'a self, id: &'a str, answer: Answer) -> DeskFuture<'a, Result<bool, String>> {
        self.inner.answer(id, answer)
    }
}
