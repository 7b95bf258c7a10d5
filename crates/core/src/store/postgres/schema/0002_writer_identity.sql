-- credit-gateway schema 2: the writer that wrote last, beside the epoch. A writer reloads what it
-- keeps in memory unless both the epoch and the identity are its own: after a fail-over to a
-- standby that had not received the last commits, the epoch can repeat, the identity cannot.
ALTER TABLE cg_writer ADD COLUMN writer text NOT NULL DEFAULT '';
