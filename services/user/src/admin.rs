//! The admin account from `ADMIN_EMAIL` / `ADMIN_PASSWORD`, so that a fresh deployment
//! has someone who can create products and credit wallets.
//!
//! E-mail addresses are not verified, so an account that already has `ADMIN_EMAIL` may
//! belong to anyone who signed up with it first. Start-up therefore never makes an
//! existing account an admin on the strength of its address alone:
//!
//! | existing account with `ADMIN_EMAIL` | `ADMIN_PASSWORD` verifies | start-up |
//! |---|---|---|
//! | none | — | creates the admin (and its `UserRegistered`) |
//! | admin | yes | goes on |
//! | admin | no | goes on; the stored password is kept, with a warning (the environment does not rotate a password) |
//! | customer | yes | promotes it, with a warning: whoever registered it chose `ADMIN_PASSWORD`, so knows it already |
//! | customer | no | **stops** with an error: promoting it would hand the admin role to whoever registered the address |

use anyhow::{Context, bail};
use service_kit::events::outbox;
use shop_model::{Email, Role, UserId, events::UserRegistered};
use sqlx::PgConnection;

use crate::{
    domain::Password, passwords::Passwords, repository, routes::SOURCE, settings::AdminAccount,
};

pub async fn ensure_admin(
    pool: &sqlx::PgPool,
    passwords: &Passwords,
    account: &AdminAccount,
) -> anyhow::Result<()> {
    let email = Email::parse(&account.email).context("ADMIN_EMAIL is not a valid e-mail")?;
    let password =
        Password::parse(secrecy::ExposeSecret::expose_secret(&account.password).to_owned())
            .context("ADMIN_PASSWORD is too short or too long")?;
    let mut tx = pool.begin().await?;
    repository::lock_admin_bootstrap(&mut tx).await?;
    let existing = repository::find_by_email(&mut tx, &email)
        .await
        .context("looking up the admin account failed")?;
    let Some(existing) = existing else {
        let id = create(&mut tx, passwords, &email, &password).await?;
        tx.commit().await?;
        tracing::info!(user_id = %id, email = %email, "admin account created");
        return Ok(());
    };
    let id = existing.user.id;
    let verifies = passwords
        .verify(password.secret().clone(), Some(existing.password_hash))
        .await
        .context("checking ADMIN_PASSWORD failed")?;
    match (existing.user.role, verifies) {
        (Role::Admin, true) => tracing::info!(user_id = %id, email = %email, "admin account ready"),
        (Role::Admin, false) => tracing::warn!(
            user_id = %id,
            email = %email,
            "ADMIN_PASSWORD is not the admin account's password; the stored password is \
             kept (start-up creates the admin, it does not change its password)"
        ),
        (Role::Customer, true) => {
            repository::make_admin(&mut tx, id)
                .await
                .context("promoting the account to admin failed")?;
            tracing::warn!(
                user_id = %id,
                email = %email,
                "an existing customer account has ADMIN_EMAIL and ADMIN_PASSWORD as its \
                 password: promoted to admin"
            );
        }
        (Role::Customer, false) => bail!(
            "ADMIN_EMAIL {email} belongs to an existing customer account whose password is \
             not ADMIN_PASSWORD; refusing to make it an admin, because e-mail addresses are \
             not verified and anyone may have signed up with it. Set ADMIN_EMAIL to an \
             address that has no account yet, or, if that account is yours, ADMIN_PASSWORD \
             to its password"
        ),
    }
    tx.commit().await?;
    Ok(())
}

/// Inserts the admin account and its `UserRegistered` (an admin is a user too:
/// payment-service opens a wallet for it).
async fn create(
    tx: &mut PgConnection,
    passwords: &Passwords,
    email: &Email,
    password: &Password,
) -> anyhow::Result<UserId> {
    let hash = passwords
        .hash(password.secret().clone())
        .await
        .context("hashing ADMIN_PASSWORD failed")?;
    let user = repository::insert(
        &mut *tx,
        UserId::new(),
        email,
        "Administrator",
        &hash,
        Role::Admin,
    )
    .await
    .context("creating the admin account failed")?;
    let registered = UserRegistered {
        user_id: user.id,
        email: user.email,
        name: user.name,
    };
    outbox::enqueue(tx, SOURCE, &registered).await?;
    Ok(user.id)
}
