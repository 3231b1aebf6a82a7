//! The REST API of user-service.

use actix_web::{HttpRequest, HttpResponse, get, http::header, post, web};
use service_kit::{
    ApiError, Problem,
    auth::{Identity, TokenIssuer},
    db::is_unique_violation,
    events::outbox,
};
use shop_model::{
    Email, Role, UserId,
    api::{RegisterUser, TokenRequest, TokenResponse, User},
    events::UserRegistered,
};
use sqlx::PgPool;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::{domain::NewUser, error::UserError, limits::Limits, passwords::Passwords, repository};

/// The CloudEvents `source` of the events this service publishes.
pub const SOURCE: &str = "/user-service";

pub fn configure(config: &mut ServiceConfig) {
    config
        .service(register)
        .service(issue_token)
        .service(me)
        .service(get_user)
        .service(jwks);
}

/// Register a customer account.
#[utoipa::path(
    tag = "users",
    request_body = RegisterUser,
    responses(
        (status = 201, description = "The account was created", body = User),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The e-mail is taken", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many requests from this caller, or too many sign-ups from this address within the hour (`SIGNUP_MAX_PER_HOUR_PER_ADDRESS`)", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before the next request"))),
        (status = 503, description = "Too many sign-ups and logins at once (see `Retry-After`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/api/v1/users")]
#[tracing::instrument(skip_all)]
async fn register(
    pool: web::Data<PgPool>,
    passwords: web::Data<Passwords>,
    limits: web::Data<Limits>,
    request: HttpRequest,
    body: web::Json<RegisterUser>,
) -> Result<HttpResponse, ApiError> {
    let new_user = NewUser::try_from(body.into_inner())?;
    // Every valid attempt counts, before its hash is paid for, the ones that find the
    // e-mail taken too: sign-up is also a way to probe which e-mails have an account (409).
    let mut conn = pool.acquire().await.map_err(UserError::from)?;
    limits
        .signup_from(&mut conn, limits.address(&request))
        .await?;
    drop(conn);
    let hash = passwords.hash(new_user.password.secret().clone()).await?;
    let id = UserId::new();
    // The account and its UserRegistered event commit together (transactional outbox):
    // payment-service opens a wallet for every account that exists, and for no other.
    let mut tx = pool.begin().await.map_err(UserError::from)?;
    let user = repository::insert(
        &mut tx,
        id,
        &new_user.email,
        new_user.name.as_str(),
        &hash,
        Role::Customer,
    )
    .await
    .map_err(|e| {
        if is_unique_violation(&e, Some("users_email_key")) {
            UserError::EmailTaken
        } else {
            UserError::Database(e)
        }
    })?;
    let registered = UserRegistered {
        user_id: user.id,
        email: user.email.clone(),
        name: user.name.clone(),
    };
    outbox::enqueue(&mut tx, SOURCE, &registered)
        .await
        .map_err(UserError::from)?;
    tx.commit().await.map_err(UserError::from)?;
    tracing::info!(user_id = %user.id, "user registered");
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/v1/users/{}", user.id)))
        .json(user))
}

/// Exchange an e-mail and password for an access token.
#[utoipa::path(
    tag = "auth",
    request_body = TokenRequest,
    responses(
        (status = 200, description = "A bearer token", body = TokenResponse),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Unknown e-mail or wrong password (the same answer for both)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "The body is too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "JSON of the wrong shape (a field missing or of the wrong type)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many requests from this caller, too many logins from this address within the minute (`LOGIN_MAX_ATTEMPTS_PER_MINUTE_PER_ADDRESS`), or too many failed logins for this e-mail within the minute (`LOGIN_MAX_FAILURES_PER_MINUTE`; then even the right password waits). The same answer for known and unknown e-mails", body = Problem, content_type = "application/problem+json",
            headers(("Retry-After" = u64, description = "Seconds to wait before the next request"))),
        (status = 503, description = "Too many logins at once (see `Retry-After`)", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/api/v1/auth/token")]
#[tracing::instrument(skip_all)]
async fn issue_token(
    pool: web::Data<PgPool>,
    issuer: web::Data<TokenIssuer>,
    passwords: web::Data<Passwords>,
    limits: web::Data<Limits>,
    request: HttpRequest,
    body: web::Json<TokenRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let mut conn = pool.acquire().await.map_err(UserError::from)?;
    limits
        .login_from(&mut conn, limits.address(&request))
        .await?;
    let Ok(email) = Email::parse(&body.email) else {
        return Err(UserError::InvalidCredentials.into());
    };
    // Counted for known and unknown e-mails alike, before the password is checked (see
    // `limits.rs`).
    limits.login_for(&mut conn, &email).await?;
    let stored = repository::find_by_email(&mut conn, &email)
        .await
        .map_err(UserError::from)?;
    drop(conn);
    let password = secrecy::SecretString::from(body.password);
    let hash = stored.as_ref().map(|s| s.password_hash.clone());
    let (Some(stored), true) = (stored, passwords.verify(password, hash).await?) else {
        tracing::info!("login failed");
        return Err(UserError::InvalidCredentials.into());
    };
    let mut conn = pool.acquire().await.map_err(UserError::from)?;
    limits.login_succeeded(&mut conn, &email).await?;
    drop(conn);
    let issued = issuer.issue(stored.user.id, stored.user.role)?;
    tracing::info!(user_id = %stored.user.id, "token issued");
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(TokenResponse {
            access_token: issued.token,
            token_type: "Bearer".to_owned(),
            expires_in: issued.expires_in.as_secs(),
        }))
}

/// The caller's own account.
#[utoipa::path(
    tag = "users",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = User),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The account no longer exists", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/api/v1/users/me")]
#[tracing::instrument(skip_all, fields(user_id = %identity.user_id))]
async fn me(pool: web::Data<PgPool>, identity: Identity) -> Result<web::Json<User>, ApiError> {
    find(&pool, identity.user_id).await.map(web::Json)
}

/// An account by id: the caller's own, or any for an admin.
#[utoipa::path(
    tag = "users",
    security(("bearer" = [])),
    params(("id" = UserId, Path, description = "User id")),
    responses(
        (status = 200, description = "The account", body = User),
        (status = 401, description = "No valid token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Another user's account, and the caller is not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/api/v1/users/{id}")]
#[tracing::instrument(skip_all, fields(user_id = %id))]
async fn get_user(
    pool: web::Data<PgPool>,
    identity: Identity,
    id: web::Path<UserId>,
) -> Result<web::Json<User>, ApiError> {
    let id = id.into_inner();
    if !identity.can_access(id) {
        return Err(UserError::NotYourAccount.into());
    }
    find(&pool, id).await.map(web::Json)
}

async fn find(pool: &PgPool, id: UserId) -> Result<User, ApiError> {
    let mut conn = pool.acquire().await.map_err(UserError::from)?;
    repository::find_by_id(&mut conn, id)
        .await
        .map_err(UserError::from)?
        .ok_or_else(|| UserError::NotFound.into())
}

/// The public keys that verify access tokens (RFC 7517).
#[utoipa::path(
    tag = "auth",
    responses((status = 200, description = "The JSON Web Key Set", content_type = "application/json"))
)]
#[get("/.well-known/jwks.json")]
async fn jwks(issuer: web::Data<TokenIssuer>) -> HttpResponse {
    HttpResponse::Ok()
        // Verifiers cache the keys; five minutes bounds how long a rotation takes to reach them.
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .json(issuer.jwks())
}
