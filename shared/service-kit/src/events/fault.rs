//! Which failures are the infrastructure's and which are the message's.
//!
//! A consumer that cannot apply an event must decide between waiting and giving up. The
//! wrong answer loses work either way: dead-lettering an event because PostgreSQL was
//! failing over for a minute strands the order it belongs to (nothing republishes a dead
//! letter by itself), and retrying for ever an event that is itself bad stops every event
//! behind it. So:
//!
//! - **Infrastructure faults** — the database unreachable, the pool exhausted, a connection
//!   reset, a serialization failure (`40001`), a deadlock (`40P01`), a server shutting down
//!   or out of resources, a read-only server after a fail-over, the broker away — say
//!   nothing about the message. The consumer keeps it unacknowledged and retries for as
//!   long as the fault lasts.
//! - **Message failures** — the message cannot be decoded, breaks an invariant of the
//!   service, or its handler keeps failing while the database answers — go to the
//!   dead-letter topic after a bounded number of attempts (at once when retrying cannot
//!   help).
//!
//! An error that is neither clearly one nor the other (a handler's own error, say) counts
//! as the infrastructure's while a probe of the database fails, and as the message's once
//! the database answers: see `consumer::Consumer`.

use std::error::Error as StdError;

/// Whether `error` is a fault of the database or of the link to it, which retrying later
/// (on another connection) can cure.
pub fn is_infrastructure(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| is_transient_sqlstate(&code)),
        _ => false,
    }
}

/// SQLSTATE codes (PostgreSQL appendix A) of conditions that pass by themselves.
fn is_transient_sqlstate(code: &str) -> bool {
    matches!(
        code,
        // serialization_failure, deadlock_detected: the transaction lost a race; run it again.
        "40001" | "40P01"
        // lock_not_available (a lock timeout), read_only_sql_transaction (connected to a
        // standby during a fail-over).
        | "55P03" | "25006"
    ) || code.starts_with("08") // connection exception
        || code.starts_with("53") // insufficient resources: too many connections, disk full
        || code.starts_with("57P") // admin/crash shutdown, cannot connect now
        || code.starts_with("58") // system error: I/O
}

/// Whether `error` — a sqlx error or a wrapper with one (or an I/O error) in its chain of
/// causes — is an infrastructure fault.
pub fn is_infrastructure_chain(error: &anyhow::Error) -> bool {
    error.chain().any(is_infrastructure_cause)
}

fn is_infrastructure_cause(cause: &(dyn StdError + 'static)) -> bool {
    if let Some(error) = cause.downcast_ref::<sqlx::Error>() {
        return is_infrastructure(error);
    }
    cause.downcast_ref::<std::io::Error>().is_some()
}

/// Whether `error` can never succeed on another attempt: a value that cannot be encoded
/// or decoded is a bug, not bad luck.
pub fn is_permanent(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::Encode(_)
            | sqlx::Error::Decode(_)
            | sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::TypeNotFound { .. }
            | sqlx::Error::ColumnNotFound(_)
            | sqlx::Error::ColumnIndexOutOfBounds { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_and_pool_failures_are_infrastructure() {
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(is_infrastructure(&sqlx::Error::Io(reset)));
        assert!(is_infrastructure(&sqlx::Error::PoolTimedOut));
        assert!(is_infrastructure(&sqlx::Error::PoolClosed));
    }

    #[test]
    fn transient_sqlstates_are_recognised_and_constraint_violations_are_not() {
        for code in [
            "40001", "40P01", "08006", "08001", "57P01", "57P03", "53300", "25006",
        ] {
            assert!(is_transient_sqlstate(code), "{code}");
        }
        for code in ["23505", "23514", "42P01", "22P02"] {
            assert!(!is_transient_sqlstate(code), "{code}");
        }
    }

    #[test]
    fn an_encode_error_is_permanent_not_infrastructure() {
        let error = sqlx::Error::Encode("not representable".into());
        assert!(is_permanent(&error));
        assert!(!is_infrastructure(&error));
    }

    #[test]
    fn a_sqlx_error_deep_in_a_chain_is_found() {
        let error = anyhow::Error::new(sqlx::Error::PoolTimedOut).context("reserving stock");
        assert!(is_infrastructure_chain(&error));
        assert!(!is_infrastructure_chain(&anyhow::anyhow!("no such order")));
    }
}
