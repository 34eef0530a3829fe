//! LiveKit's webhooks, in the order things happen: verified at the edge
//! (`crate::livekit::webhooks`), stored and acknowledged (`inbox`), then
//! handled per call in arrival order (`inbox::drain`), each event's meaning
//! decided under the call's row lock (`handle`), and LiveKit told what
//! follows after the commit (`crate::calls::enforce`).

pub mod handle;
pub mod inbox;
