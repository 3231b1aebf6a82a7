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

/// Creates the account as an admin, or promotes the existing account with this e-mail.
/// Idempotent, and safe when several replicas start at once. Returns the id and whether
/// the account was created now.
#[tracing::instrument(skip_all)]
pub async fn upsert_admin(
    conn: &mut PgConnection,
    email: &Email,
    password_hash: &str,
) -> Result<(UserId, bool), sqlx::Error> {
    // `xmax = 0` holds for a freshly inserted row and not for an updated one.
    let row = sqlx::query!(
        r#"INSERT INTO users (id, email, name, password_hash, role)
           VALUES ($1, $2, 'Administrator', $3, 'admin')
           ON CONFLICT (email) DO UPDATE SET role = 'admin'
           RETURNING id, (xmax = 0) AS "created!""#,
        UserId::new().as_uuid(),
        email.as_str(),
        password_hash,
    )
    .fetch_one(conn)
    .await?;
    Ok((UserId::from_uuid(row.id), row.created))
}
