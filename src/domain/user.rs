//! The caller, as their verified token describes them.

use std::collections::BTreeSet;

use crate::domain::UserId;
use crate::domain::consent::Gender;

/// The caller, as the verified token says. Gender stays inside the service.
#[derive(Clone, Debug)]
pub struct AuthUser {
    pub id: UserId,
    pub name: Option<String>,
    pub gender: Gender,
    pub roles: BTreeSet<String>,
}

impl AuthUser {
    pub fn is_admin(&self) -> bool {
        self.roles.contains("admin")
    }
}
