-- The retry queue (lua/plugins/retry.lua): failed operations, each with its
-- own schedule, and every attempt made for them.
CREATE TABLE daz_retry_queue (
    id              bigserial PRIMARY KEY,
    operation       text        NOT NULL,           -- policy name, e.g. cytube_command
    event_type      text        NOT NULL,           -- replayed as a bus request of this type
    payload         jsonb       NOT NULL,
    correlation_id  text        NOT NULL UNIQUE,    -- one row per failed operation
    status          text        NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'processing', 'completed', 'failed', 'dead_letter')),
    priority        smallint    NOT NULL DEFAULT 0,
    attempts        integer     NOT NULL DEFAULT 0,
    max_attempts    integer     NOT NULL,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    locked_until    timestamptz,                    -- a processing row is taken back after this
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
-- The scheduler's query: due pending rows, highest priority first.
CREATE INDEX daz_retry_queue_due ON daz_retry_queue (priority DESC, next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX daz_retry_queue_status ON daz_retry_queue (status);

CREATE TABLE daz_retry_history (
    id          bigserial PRIMARY KEY,
    retry_id    bigint      NOT NULL REFERENCES daz_retry_queue (id) ON DELETE CASCADE,
    attempt     integer     NOT NULL,
    outcome     text        NOT NULL,                -- failed (the original failure), ok, error, timeout, dead_letter
    error       text,
    duration_ms double precision,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX daz_retry_history_retry ON daz_retry_history (retry_id);
