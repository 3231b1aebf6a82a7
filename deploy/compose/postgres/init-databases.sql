-- Database-per-service: one database for each service, owned by that service's own role.
-- A service can connect to its own database only (CONNECT is revoked from everybody
-- else), so no service can read another's tables: data crosses service boundaries through
-- APIs and events, never through shared tables.
--
-- The official postgres image runs this file once, when the data volume is first created
-- (`docker compose down -v` to run it again). The tables are created by each service's
-- embedded migrations at start-up, not here.
--
-- DEVELOPMENT PASSWORDS, for the local demo only. A real deployment creates these roles
-- with generated secrets and hands each service only its own.

CREATE ROLE user_service LOGIN PASSWORD 'user-service-dev-password';
CREATE DATABASE users OWNER user_service;
REVOKE ALL ON DATABASE users FROM PUBLIC;

CREATE ROLE order_service LOGIN PASSWORD 'order-service-dev-password';
CREATE DATABASE orders OWNER order_service;
REVOKE ALL ON DATABASE orders FROM PUBLIC;

CREATE ROLE payment_service LOGIN PASSWORD 'payment-service-dev-password';
CREATE DATABASE payments OWNER payment_service;
REVOKE ALL ON DATABASE payments FROM PUBLIC;

CREATE ROLE inventory_service LOGIN PASSWORD 'inventory-service-dev-password';
CREATE DATABASE inventory OWNER inventory_service;
REVOKE ALL ON DATABASE inventory FROM PUBLIC;
