//! [`RedisApprovals`]: one approval queue for every replica.
//!
//! A replica that asks stores the request under `<prefix>approval:<id>` (expiring with the
//! rule's timeout) and indexes it in the sorted set `<prefix>approvals`; any replica lists
//! them. An answer is one script: it deletes the request (so it can be answered once),
//! stores the answer under `<prefix>answer:<id>` for a minute and publishes it on
//! `<prefix>answers`. The asking replica hears it on that channel, or reads the answer key
//! (every second, for an answer published while its subscription was reconnecting). Ids
//! carry the call's hash and are never reused, so an answer releases exactly one call; a
//! replica that dies leaves requests that expire on their own and that no other call can
//! match.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use ::redis::{AsyncCommands, Script};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::Redis;
use crate::approval::{Answer, AnswerFuture, ApprovalDesk, ApprovalRequest, Approver, DeskFuture};

/// The approval queue of every replica sharing this Redis and prefix.
#[derive(Clone)]
pub struct RedisApprovals {
    desk: Arc<Desk>,
}

struct Desk {
    redis: Redis,
    /// Calls of this replica waiting for an answer, by request id.
    waiters: Mutex<HashMap<String, oneshot::Sender<Answer>>>,
    answer: Script,
}

impl std::fmt::Debug for RedisApprovals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisApprovals")
            .field("redis", &self.desk.redis)
            .finish()
    }
}

/// An answer as it travels between replicas.
#[derive(Debug, Serialize, Deserialize)]
struct Wire {
    id: String,
    approved: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

const ANSWER_SCRIPT: &str = r"
if redis.call('DEL', KEYS[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SET', KEYS[3], ARGV[2], 'PX', 60000)
redis.call('PUBLISH', ARGV[3], ARGV[2])
return 1
";

/// How often a waiting call reads its answer key, in case a publish was missed.
const POLL: Duration = Duration::from_secs(1);

impl RedisApprovals {
    /// Starts listening for answers. Outside a tokio runtime there is no listener, and
    /// waiting calls find their answers by polling alone.
    pub fn new(redis: Redis) -> Self {
        let desk = Arc::new(Desk {
            redis,
            waiters: Mutex::new(HashMap::new()),
            answer: Script::new(ANSWER_SCRIPT),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(listen(Arc::downgrade(&desk)));
        }
        RedisApprovals { desk }
    }
}

impl Desk {
    fn zset(&self) -> String {
        self.redis.key(&["approvals"])
    }
    fn request_key(&self, id: &str) -> String {
        self.redis.key(&["approval", id])
    }
    fn answer_key(&self, id: &str) -> String {
        self.redis.key(&["answer", id])
    }
    fn channel(&self) -> String {
        self.redis.key(&["answers"])
    }

    fn deliver(&self, wire: Wire) {
        let tx = self
            .waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&wire.id);
        if let Some(tx) = tx {
            let _ = tx.send(wire.into_answer());
        }
    }

    async fn publish(&self, request: &ApprovalRequest) -> Result<(), String> {
        let json = serde_json::to_string(request).map_err(|e| e.to_string())?;
        let ttl_ms = request.timeout_secs.max(1).saturating_mul(1000);
        let expires = epoch_ms().saturating_add(ttl_ms);
        let mut pipe = ::redis::pipe();
        pipe.atomic()
            .cmd("SET")
            .arg(self.request_key(&request.id))
            .arg(json)
            .arg("PX")
            .arg(ttl_ms)
            .ignore()
            .cmd("ZADD")
            .arg(self.zset())
            .arg(expires)
            .arg(&request.id)
            .ignore();
        self.redis
            .run("approval_ask", |mut con| {
                let pipe = pipe.clone();
                async move { pipe.query_async::<()>(&mut con).await }
            })
            .await
    }

    /// Reads an answer stored for `id`, if any.
    async fn stored_answer(&self, id: &str) -> Option<Wire> {
        let key = self.answer_key(id);
        let text: Option<String> = self
            .redis
            .run("approval_poll", |mut con| {
                let key = key.clone();
                async move { con.get(key).await }
            })
            .await
            .ok()
            .flatten();
        text.and_then(|t| serde_json::from_str(&t).ok())
    }
}

impl Wire {
    fn into_answer(self) -> Answer {
        if self.approved {
            Answer::Approved
        } else {
            Answer::Denied(self.reason)
        }
    }
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Forwards published answers to the waiting calls of this replica; reconnects after any
/// loss, and stops once the desk is gone.
async fn listen(desk: Weak<Desk>) {
    loop {
        let Some(strong) = desk.upgrade() else { return };
        let client = strong.redis.client().clone();
        let channel = strong.channel();
        let deadline = strong
            .redis
            .config()
            .timeout
            .max(Duration::from_millis(500));
        drop(strong);
        if let Ok(Ok(mut pubsub)) = tokio::time::timeout(deadline, client.get_async_pubsub()).await
        {
            if pubsub.subscribe(&channel).await.is_ok() {
                let mut messages = pubsub.into_on_message();
                loop {
                    let next = tokio::time::timeout(Duration::from_secs(5), messages.next()).await;
                    let Some(strong) = desk.upgrade() else { return };
                    match next {
                        Ok(Some(msg)) => {
                            let wire = msg
                                .get_payload::<String>()
                                .ok()
                                .and_then(|t| serde_json::from_str::<Wire>(&t).ok());
                            if let Some(wire) = wire {
                                strong.deliver(wire);
                            }
                        }
                        Ok(None) => break,
                        Err(_) => {} // quiet channel: check the desk is alive, go on
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Takes a finished or abandoned request off the shared queue.
struct Cleanup {
    desk: Arc<Desk>,
    id: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        self.desk
            .waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let desk = self.desk.clone();
        let id = std::mem::take(&mut self.id);
        rt.spawn(async move {
            let mut pipe = ::redis::pipe();
            pipe.atomic()
                .del(desk.request_key(&id))
                .ignore()
                .zrem(desk.zset(), &id)
                .ignore();
            let _ = desk
                .redis
                .run("approval_cleanup", |mut con| {
                    let pipe = pipe.clone();
                    async move { pipe.query_async::<()>(&mut con).await }
                })
                .await;
        });
    }
}

impl Approver for RedisApprovals {
    fn ask(&self, request: ApprovalRequest) -> AnswerFuture {
        let desk = self.desk.clone();
        Box::pin(async move {
            let (tx, mut rx) = oneshot::channel();
            desk.waiters
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(request.id.clone(), tx);
            let _cleanup = Cleanup {
                desk: desk.clone(),
                id: request.id.clone(),
            };
            if let Err(why) = desk.publish(&request).await {
                // Nobody could see the request, so nobody can approve it: fail closed.
                return Answer::Denied(Some(format!(
                    "the approval queue is unavailable ({why}); nobody could be asked"
                )));
            }
            loop {
                tokio::select! {
                    answer = &mut rx => return answer.unwrap_or(Answer::Denied(None)),
                    () = tokio::time::sleep(POLL) => {
                        if let Some(wire) = desk.stored_answer(&request.id).await {
                            if wire.id == request.id {
                                return wire.into_answer();
                            }
                        }
                    }
                }
            }
        })
    }

    fn via(&self) -> &'static str {
        "queue"
    }
}

impl ApprovalDesk for RedisApprovals {
    fn pending(&self) -> DeskFuture<'_, Result<Vec<ApprovalRequest>, String>> {
        Box::pin(async move {
            let desk = &self.desk;
            let zset = desk.zset();
            // Entries past their expiry (plus slack for replicas' clocks) are only an index.
            let stale = epoch_ms().saturating_sub(60_000);
            let mut pipe = ::redis::pipe();
            pipe.zrembyscore(&zset, "-inf", stale)
                .ignore()
                .zrange(&zset, 0, -1);
            let ids: Vec<String> = desk
                .redis
                .run("approval_list", |mut con| {
                    let pipe = pipe.clone();
                    async move {
                        pipe.query_async::<(Vec<String>,)>(&mut con)
                            .await
                            .map(|(ids,)| ids)
                    }
                })
                .await?;
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let keys: Vec<String> = ids.iter().map(|id| desk.request_key(id)).collect();
            let texts: Vec<Option<String>> = desk
                .redis
                .run("approval_list", |mut con| {
                    let mget = ::redis::cmd("MGET").arg(&keys).clone();
                    async move { mget.query_async(&mut con).await }
                })
                .await?;
            let mut out: Vec<ApprovalRequest> = texts
                .into_iter()
                .flatten()
                .filter_map(|t| serde_json::from_str(&t).ok())
                .collect();
            out.sort_by(|a, b| (a.asked_at, &a.id).cmp(&(b.asked_at, &b.id)));
            Ok(out)
        })
    }

    fn answer<'a>(&'a self, id: &'a str, answer: Answer) -> DeskFuture<'a, Result<bool, String>> {
        Box::pin(async move {
            let desk = &self.desk;
            let (approved, reason) = match answer {
                Answer::Approved => (true, None),
                Answer::Denied(r) => (false, r),
            };
            let wire = Wire {
                id: id.to_owned(),
                approved,
                reason,
            };
            let json = serde_json::to_string(&wire).map_err(|e| e.to_string())?;
            let keys = [desk.request_key(id), desk.zset(), desk.answer_key(id)];
            let args = [id.to_owned(), json, desk.channel()];
            let done: i64 = desk
                .redis
                .run("approval_answer", |mut con| {
                    let mut invocation = desk.answer.prepare_invoke();
                    invocation.key(&keys).arg(&args);
                    async move { invocation.invoke_async(&mut con).await }
                })
                .await?;
            Ok(done == 1)
        })
    }
}
