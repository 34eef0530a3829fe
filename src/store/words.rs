//! How the domain's words and ids come out of their text columns, for the
//! query macros' type overrides (`state as "state: AppointmentState"`).
//! `domain/` names no sqlx (ARCHITECTURE.md), so their `sqlx::Type` and
//! `Decode` are written here, beside the SQL. They are bound as text
//! (`state.as_str()`), which the macros check against the column.

use sqlx::Postgres;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgTypeInfo, PgValueRef};

use crate::domain::{
    AppointmentOutcome, AppointmentRole, AppointmentState, CallId, CallState, CallType, ModerationAction,
    ParticipantStatus, ReportReason, Role, UserId,
};
use crate::store::participants::StoredGender;

/// A text column read through the type's `TryFrom<String>`: an unknown
/// word (or a malformed id) is a decoding error, never a string passed on.
macro_rules! text_column {
    ($($ty:ty),+ $(,)?) => {$(
        impl sqlx::Type<Postgres> for $ty {
            fn type_info() -> PgTypeInfo {
                <String as sqlx::Type<Postgres>>::type_info()
            }

            fn compatible(ty: &PgTypeInfo) -> bool {
                <String as sqlx::Type<Postgres>>::compatible(ty)
            }
        }

        impl<'r> sqlx::Decode<'r, Postgres> for $ty {
            fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
                let text = <String as sqlx::Decode<Postgres>>::decode(value)?;
                Ok(<$ty>::try_from(text)?)
            }
        }
    )+};
}

text_column!(
    CallType,
    AppointmentState,
    AppointmentOutcome,
    AppointmentRole,
    ModerationAction,
    ReportReason,
    UserId,
    CallState,
    Role,
    ParticipantStatus,
    StoredGender,
);

/// A call's id, out of its uuid column (`id as "id: CallId"`).
impl sqlx::Type<Postgres> for CallId {
    fn type_info() -> PgTypeInfo {
        <uuid::Uuid as sqlx::Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <uuid::Uuid as sqlx::Type<Postgres>>::compatible(ty)
    }
}

impl<'r> sqlx::Decode<'r, Postgres> for CallId {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(CallId(<uuid::Uuid as sqlx::Decode<Postgres>>::decode(value)?))
    }
}
