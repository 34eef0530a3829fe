//! Who may call whom: with `CALL_AUTHZ_URL`, the host application decides
//! before anything rings. A deny (`{"allow": false}`, or the hook's own 4xx)
//! is 403 `call_not_allowed` whatever the reason (nothing of the hook's
//! answer is passed on). An answer that is no decision (a 5xx, a redirect, a
//! body that is not `{"allow": bool}` or is over 4 KB) is 503; so is no
//! answer in time or a failed connection, which alone
//! `CALL_AUTHZ_FAIL_OPEN` lets ring. Without the hook, everyone may.

use crate::calls::{CallError, Core};
use crate::domain::{CallType, Code, UserId};
use crate::infra::authz::{self, Answer, Question};

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
        answer @ (Answer::Allow | Answer::Deny) => {
            let allow = answer == Answer::Allow;
            if cache {
                authz::remember(&app.redis, caller.as_str(), &ids, conversation, allow, hook.cache).await;
            }
            if allow { Ok(()) } else { Err(denied()) }
        }
        Answer::Refused(status) => {
            tracing::debug!(status, "the call authorization hook refused the call");
            Err(denied())
        }
        Answer::Unusable(error) => {
            tracing::warn!(error, "the call authorization hook's answer is no decision; refusing");
            Err(CallError::Unavailable("the call authorization hook"))
        }
        Answer::Unreachable(error) if hook.fail_open => {
            tracing::warn!(
                error,
                "the call authorization hook did not answer; allowing (CALL_AUTHZ_FAIL_OPEN)"
            );
            Ok(())
        }
        Answer::Unreachable(error) => {
            tracing::warn!(error, "the call authorization hook did not answer; refusing");
            Err(CallError::Unavailable("the call authorization hook"))
        }
    }
}

fn denied() -> CallError {
    CallError::forbidden(Code::CallNotAllowed, "you may not call this user")
}
