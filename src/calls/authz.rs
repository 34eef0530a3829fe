//! Who may call whom: with `CALL_AUTHZ_URL`, the host application decides
//! before anything rings. A deny is 403 `call_not_allowed` whatever the
//! reason (nothing of the hook's answer is passed on); no answer in time is
//! 503, unless `CALL_AUTHZ_FAIL_OPEN`. Without the hook, everyone may.

use crate::calls::{CallError, Core};
use crate::domain::{CallType, Code, UserId};
use crate::infra::authz::{self, Question};

pub async fn may_call(
    app: &Core,
    caller: &UserId,
    callees: &[UserId],
    conversation: Option<&str>,
    call_type: CallType,
) -> Result<(), CallError> {
    let Some(hook) = &app.config.call_authz else { return Ok(()) };
    let ids: Vec<&str> = callees.iter().map(UserId::as_str).collect();
    let cache = !hook.cache.is_zero();
    if cache {
        let known = authz::cached(&app.redis, caller.as_str(), &ids, conversation).await;
        if known.contains(&Some(false)) {
            return Err(denied());
        }
        if known.iter().all(|d| *d == Some(true)) {
            return Ok(());
        }
    }
    let question = Question {
        caller_id: caller.as_str(),
        callee_ids: ids.clone(),
        conversation_id: conversation,
        call_type: call_type.as_str(),
    };
    match authz::ask(hook, &question, app.clock.now().timestamp()).await {
        Ok(allow) => {
            if cache {
                authz::remember(&app.redis, caller.as_str(), &ids, conversation, allow, hook.cache).await;
            }
            if allow { Ok(()) } else { Err(denied()) }
        }
        Err(error) if hook.fail_open => {
            tracing::warn!(
                error,
                "the call authorization hook did not answer; allowing (CALL_AUTHZ_FAIL_OPEN)"
            );
            Ok(())
        }
        Err(error) => {
            tracing::warn!(error, "the call authorization hook did not answer; refusing");
            Err(CallError::Unavailable("the call authorization hook"))
        }
    }
}

fn denied() -> CallError {
    CallError::forbidden(Code::CallNotAllowed, "you may not call this user")
}
