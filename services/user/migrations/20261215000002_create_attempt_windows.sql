-- Counters of the login and sign-up limits (src/limits.rs): one fixed window per key, e.g.
-- `login:ann@example.com` (failed logins for one e-mail) or `signup-from:203.0.113.7`. In
-- the database rather than in each replica's memory, so that a limit holds however many
-- replicas there are, and across restarts.
CREATE TABLE attempt_windows (
    key            TEXT        PRIMARY KEY,
    window_ends_at TIMESTAMPTZ NOT NULL,
    attempts       BIGINT      NOT NULL
);

-- Pruning looks for windows that have ended.
CREATE INDEX attempt_windows_window_ends_at ON attempt_windows (window_ends_at);
