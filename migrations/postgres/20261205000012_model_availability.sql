-- Whether each style of a kind served by Cog model servers can run now, as the
-- workers' health checks last saw it (one row per kind and style, the newest report
-- wins). The API reads it for `/v1/styles`, `/readyz` and before accepting a
-- generation, so it never calls a model server itself; a row older than a few health
-- intervals means no worker is watching, and counts as unavailable.
CREATE TABLE model_availability (
    kind        TEXT NOT NULL,
    style       TEXT NOT NULL,
    available   BIGINT NOT NULL,
    detail      TEXT NOT NULL,
    checked_at  BIGINT NOT NULL,
    PRIMARY KEY (kind, style)
);
