-- The contact-center backend: customers, their orders and subscriptions, and the tickets the bot writes.
-- Portable SQL: the same file creates the schema in SQLite (embedded default) and PostgreSQL.
-- Dates are ISO strings (YYYY-MM-DD) and money is in pence, so both engines return the same values.

CREATE TABLE IF NOT EXISTS customers (
    account_number TEXT PRIMARY KEY,            -- 8 digits
    name           TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS orders (
    order_number   TEXT PRIMARY KEY,            -- 6 digits
    account_number TEXT NOT NULL REFERENCES customers (account_number),
    item           TEXT NOT NULL,
    total_pence    INTEGER NOT NULL CHECK (total_pence >= 0),
    status         TEXT NOT NULL CHECK (status IN ('processing', 'shipped', 'delivered', 'lost', 'refunded')),
    ordered_on     TEXT NOT NULL,
    expected_on    TEXT,                        -- processing / shipped: the promised delivery day
    delivered_on   TEXT,                        -- delivered: the day it arrived
    carrier        TEXT
);

CREATE TABLE IF NOT EXISTS subscriptions (
    subscription_id TEXT PRIMARY KEY,
    account_number  TEXT NOT NULL REFERENCES customers (account_number),
    plan            TEXT NOT NULL,
    monthly_pence   INTEGER NOT NULL CHECK (monthly_pence >= 0),
    status          TEXT NOT NULL CHECK (status IN ('active', 'cancelling', 'cancelled')),
    renews_on       TEXT NOT NULL,              -- end of the period already paid for
    ends_on         TEXT                        -- cancelling / cancelled: the last day of access
);

CREATE TABLE IF NOT EXISTS tickets (
    reference       TEXT PRIMARY KEY,           -- 6 digits, read back to the caller
    kind            TEXT NOT NULL CHECK (kind IN ('refund', 'complaint', 'cancellation')),
    account_number  TEXT NOT NULL REFERENCES customers (account_number),
    order_number    TEXT REFERENCES orders (order_number),
    subscription_id TEXT REFERENCES subscriptions (subscription_id),
    category        TEXT,
    details         TEXT NOT NULL DEFAULT '',
    amount_pence    INTEGER,
    conversation_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,       -- one write per conversation and subject
    status          TEXT NOT NULL DEFAULT 'open',
    created_at      TEXT NOT NULL
);

CREATE INDEX IF NOT EXISTS tickets_by_order ON tickets (order_number, kind);
CREATE INDEX IF NOT EXISTS orders_by_account ON orders (account_number);
