//! The admin account from `ADMIN_EMAIL` / `ADMIN_PASSWORD`, so that a fresh deployment
//! has someone who can create products and credit wallets.

use anyhow::Context;
use service_kit::events::outbox;
use shop_model::{Email, events::UserRegistered};

use crate::{passwords::Passwords, repository, routes::SOURCE, settings::AdminAccount};

/// Creates the account, or gives the existing account with that e-mail the admin role.
/// An existing password is left unchanged: rotating it is the admin's business.
pub async fn ensure_admin(
    pool: &sqlx::PgPool,
    passwords: &Passwords,
    account: &AdminAccount,
) -> anyhow::Result<()> {
    let email = Email::parse(&account.email).context("ADMIN_EMAIL is not a valid e-mail")?;
    let password = crate::domain::Password::parse(
        secrecy::ExposeSecret::expose_secret(&account.password).to_owned(),
    )
    .context("ADMIN_PASSWORD is too short or too long")?;
    let hash = passwords
        .hash(password.secret().clone())
        .await
        .context("hashing ADMIN_PASSWORD failed")?;
    let mut tx = pool.begin().await?;
    let (id, created) = repository::upsert_admin(&mut tx, &email, &hash)
        .await
        .context("creating the admin account failed")?;
    if created {
        // An admin is a user too: payment-service opens a wallet for it.
        let registered = UserRegistered {
            user_id: id,
            email: email.to_string(),
            name: "Administrator".to_owned(),
        };
        outbox::enqueue(&mut tx, SOURCE, &registered, None).await?;
    }
    tx.commit().await?;
    tracing::info!(user_id = %id, email = %email, "admin account ready");
    Ok(())
}
