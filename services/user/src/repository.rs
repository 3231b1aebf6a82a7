//! SQL of user-service. Functions take a connection; the caller owns the transaction.

use shop_model::{Email, Role, UserId, api::User};
use sqlx::PgConnection;
use time::OffsetDateTime;

pub struct StoredUser {
    pub user: User,
    pub password_hash: String,
}

struct UserRow {
    id: uuid::Uuid,
    email: String,
    name: String,
    role: String,
    password_hash: String,
    created_at: OffsetDateTime,
}

impl TryFrom<UserRow> for StoredUser {
    type Error = anyhow::Error;

    fn try_from(row: UserRow) -> Result<Self, Self::Error> {
        Ok(Self {
            user: User {
                id: UserId::from_uuid(row.id),
                email: row.email,
                name: row.name,
                role: row.role.parse::<Role>()?,
                created_at: row.created_at,
            },
            password_hash: row.password_hash,
        })
    }
}

/// Inserts a new account. A duplicate e-mail surfaces as a unique violation of
/// `users_email_key`.
#[tracing::instrument(skip_all, fields(user_id = %id))]
pub async fn insert(
    conn: &mut PgConnection,
    id: UserId,
    email: &Email,
    name: &str,
    password_hash: &str,
    role: Role,
) -> Result<User, sqlx::Error> {
    let row = sqlx::query_as!(
        UserRow,
        r#"INSERT INTO users (id, email, name, password_hash, role)
           VALUES ($1, $2, $3, $4, $5)
           RETURNING id, email, name, role, password_hash, created_at"#,
        id.as_uuid(),
        email.as_str(),
        name,
        password_hash,
        role.as_str(),
    )
    .fetch_one(conn)
    .await?;
    StoredUser::try_from(row)
        .map(|stored| stored.user)
        .map_err(|e| sqlx::Error::Decode(e.into()))
}

#[tracing::instrument(skip_all)]
pub async fn find_by_email(
    conn: &mut PgConnection,
    email: &Email,
) -> Result<Option<StoredUser>, sqlx::Error> {
    let row = sqlx::query_as!(
        UserRow,
        "SELECT id, email, name, role, password_hash, created_at FROM users WHERE email = $1",
        email.as_str(),
    )
    .fetch_optional(conn)
    .await?;
    row.map(StoredUser::try_from)
        .transpose()
        .map_err(|e| sqlx::Error::Decode(e.into()))
}

#[tracing::instrument(skip_all, fields(user_id = %id))]
pub async fn find_by_id(conn: &mut PgConnection, id: UserId) -> Result<Option<User>, sqlx::Error> {
    let row = sqlx::query_as!(
        UserRow,
        "SELECT id, email, name, role, password_hash, created_at FROM users WHERE id = $1",
        id.as_uuid(),
    )
    .fetch_optional(conn)
    .await?;
    row.map(|row| StoredUser::try_from(row).map(|stored| stored.user))
        .transpose()
        .map_err(|e| sqlx::Error::Decode(e.into()))
}

/// The advisory-lock namespace of [`lock_admin_bootstrap`]: "user". The two-key form keeps
/// it apart from the one-key lock of the migrator and from the kit's outbox locks ("outb").
const USER_LOCK_SPACE: i32 = 0x7573_6572;

/// Waits for, then holds until the end of the caller's transaction, the lock under which
/// start-up ensures the admin account: replicas starting at once take turns, and each sees
/// what the one before it did.
#[tracing::instrument(skip_all)]
pub async fn lock_admin_bootstrap(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "SELECT pg_advisory_xact_lock($1, hashtext('admin-bootstrap'))",
        USER_LOCK_SPACE,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Gives an existing account the admin role.
#[tracing::instrument(skip_all, fields(user_id = %id))]
pub async fn make_admin(conn: &mut PgConnection, id: UserId) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE users SET role = 'admin' WHERE id = $1",
        id.as_uuid()
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// One fixed window of a limit, after counting an attempt in it.
pub struct WindowCount {
    /// Attempts in the current window, this one included.
    pub attempts: i64,
    /// Seconds until the window ends (at least a fraction of one).
    pub seconds_left: f64,
}

/// Counts an attempt against `key`: in its current window, or in a new window of
/// `window_secs` when there is none or it has ended. One statement, so that concurrent
/// attempts (from any replica) are each counted once.
#[tracing::instrument(skip_all)]
pub async fn count_attempt(
    conn: &mut PgConnection,
    key: &str,
    window_secs: f64,
) -> Result<WindowCount, sqlx::Error> {
    // Every SET expression reads the row as it was, so both see the same verdict on
    // whether the window has ended.
    let row = sqlx::query!(
        r#"INSERT INTO attempt_windows (key, window_ends_at, attempts)
           VALUES ($1, now() + make_interval(secs => $2), 1)
           ON CONFLICT (key) DO UPDATE SET
               attempts = CASE WHEN attempt_windows.window_ends_at <= now() THEN 1
                               ELSE attempt_windows.attempts + 1 END,
               window_ends_at = CASE WHEN attempt_windows.window_ends_at <= now()
                                     THEN EXCLUDED.window_ends_at
                                     ELSE attempt_windows.window_ends_at END
           RETURNING attempts AS "attempts!",
                     extract(epoch FROM window_ends_at - now())::float8 AS "seconds_left!""#,
        key,
        window_secs,
    )
    .fetch_one(conn)
    .await?;
    Ok(WindowCount {
        attempts: row.attempts,
        seconds_left: row.seconds_left,
    })
}

/// Forgets the attempts counted against `key` (a login that succeeded).
#[tracing::instrument(skip_all)]
pub async fn forget_attempts(conn: &mut PgConnection, key: &str) -> Result<(), sqlx::Error> {
    sqlx::query!("DELETE FROM attempt_windows WHERE key = $1", key)
        .execute(conn)
        .await?;
    Ok(())
}

/// Deletes up to `batch` windows that have ended, so that the table holds about as many
/// rows as there were keys in the last hour. Rows another session is updating are left
/// for the next call.
#[tracing::instrument(skip_all)]
pub async fn prune_attempt_windows(
    conn: &mut PgConnection,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query!(
        r#"DELETE FROM attempt_windows WHERE key IN (
               SELECT key FROM attempt_windows WHERE window_ends_at <= now()
               ORDER BY window_ends_at LIMIT $1 FOR UPDATE SKIP LOCKED)"#,
        batch,
    )
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}
