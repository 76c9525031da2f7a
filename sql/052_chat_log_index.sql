-- daz_chat_log_channel_time (channel, message_time) duplicated the leading
-- columns of the unique daz_chat_log_dedupe (channel, message_time, username,
-- md5(message)): every query by channel and time range is served by that one
-- too. Each index costs an insertion per logged line, and the chat log is
-- the busiest table (a flood benchmark spent most of PostgreSQL's time on
-- index maintenance), so the redundant one goes.
DROP INDEX IF EXISTS daz_chat_log_channel_time;
