-- name: load
SELECT name, txid, position, holder, updated_at FROM projection_checkpoints WHERE name = %(name)s;

-- name: save
INSERT INTO projection_checkpoints (name, txid, position, holder, updated_at)
VALUES (%(name)s, %(txid)s, %(position)s, %(holder)s, now())
ON CONFLICT (name) DO UPDATE
SET txid = EXCLUDED.txid, position = EXCLUDED.position, holder = EXCLUDED.holder, updated_at = now();

-- name: reset
DELETE FROM projection_checkpoints WHERE name = %(name)s;

-- name: all
SELECT name, txid, position, holder, updated_at FROM projection_checkpoints ORDER BY name;
