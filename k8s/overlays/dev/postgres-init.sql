-- DEVELOPMENT ONLY. Run once by the PostgreSQL image when the data directory is empty.
-- Database per service: each service gets its own database, owned by its own role, and
-- no other role may connect to it. The passwords are public (the dev overlay's Secrets);
-- production databases and credentials are created by the operator.
CREATE ROLE user_service LOGIN PASSWORD 'dev-user-service';
CREATE DATABASE users OWNER user_service;
REVOKE ALL ON DATABASE users FROM PUBLIC;

CREATE ROLE order_service LOGIN PASSWORD 'dev-order-service';
CREATE DATABASE orders OWNER order_service;
REVOKE ALL ON DATABASE orders FROM PUBLIC;

CREATE ROLE payment_service LOGIN PASSWORD 'dev-payment-service';
CREATE DATABASE payments OWNER payment_service;
REVOKE ALL ON DATABASE payments FROM PUBLIC;

CREATE ROLE inventory_service LOGIN PASSWORD 'dev-inventory-service';
CREATE DATABASE inventory OWNER inventory_service;
REVOKE ALL ON DATABASE inventory FROM PUBLIC;
