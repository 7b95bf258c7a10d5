-- credit-gateway schema 1: the store's ordered key-value space on PostgreSQL.
-- Keys and values are the same bytes the embedded engine (sled) holds; see src/store/mod.rs for
-- the key layout. bytea compares byte by byte, so ORDER BY k is the queues' order.
CREATE TABLE cg_kv (
    k bytea PRIMARY KEY,
    v bytea NOT NULL
);

-- One row: bumped by every write set, so a writer knows whether another node wrote since it did.
CREATE TABLE cg_writer (
    id smallint PRIMARY KEY CHECK (id = 1),
    epoch bigint NOT NULL
);
INSERT INTO cg_writer (id, epoch) VALUES (1, 0);

-- Outbox sequence numbers and other identifiers, handed out in blocks to the node that writes.
CREATE SEQUENCE cg_ids INCREMENT BY 1024 START WITH 1024 MINVALUE 0;

-- Work done by one node at a time (a destination's deliveries, timers), held until expires_at.
CREATE TABLE cg_leases (
    name text PRIMARY KEY,
    holder text NOT NULL,
    expires_at timestamptz NOT NULL
);
