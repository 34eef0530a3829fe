//! What a participant who is not `admin` reads of the ledger ("nothing tells
//! who declined", docs/consent.md). With [`super::visible_actor`] for the
//! actor of what they read.

use super::LedgerKind;

/// Whether `reader` reads a ledger row at all. Everyone reads the steps
/// everyone in the call lives through (requests, outcomes, video turning on
/// or off, withdrawals, violations); an answer (consent, reject, revoke) is
/// read by the one who gave it only. An answer shown without its actor would
/// still say, by its place, its time or how many there are, who is a
/// consenter and who said what.
pub fn readable(kind: LedgerKind, actor: Option<&str>, reader: &str) -> bool {
    match kind {
        LedgerKind::Consent | LedgerKind::Reject | LedgerKind::Revoke => actor == Some(reader),
        LedgerKind::Request
        | LedgerKind::Declined
        | LedgerKind::Expire
        | LedgerKind::Withdraw
        | LedgerKind::On
        | LedgerKind::Off
        | LedgerKind::Violation => true,
    }
}
