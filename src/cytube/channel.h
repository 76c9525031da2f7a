/* channel: a room's view of its CyTube channel — the bot's rank, the users,
 * options, permissions, playlist lock, media and leader, kept from the
 * server's events — and the checks the commands need (permission nodes,
 * ranks, the chat flood limits). Pure: takes event names and JSON payloads,
 * does no I/O. Uses jansson. */
#ifndef DAZ_CYTUBE_CHANNEL_H
#define DAZ_CYTUBE_CHANNEL_H

#include <jansson.h>
#include <stddef.h>

struct channel {
    double rank;          /* the bot's; -1 until the server says */
    int rank_settled;     /* rank is the one the bot has in this channel (see channel_settle_rank) */
    json_t *permissions;  /* setPermissions: node -> minimum rank */
    json_t *options;      /* channelOpts */
    json_t *users;        /* name -> userlist entry */
    json_t *media;        /* changeMedia, kept current by mediaUpdate */
    json_t *current_uid;  /* setCurrent */
    int playlist_locked;
    long usercount;
    char *leader;
};

void channel_init(struct channel *ch);
/* Forgets everything (a new session): back to channel_init's state. */
void channel_clear(struct channel *ch);

/* Updates the view from one server event (name, argument); events it does
 * not know leave it as it is. */
void channel_apply(struct channel *ch, const char *event, json_t *arg);

/* The rank the server sent last is the bot's rank in this channel: after a
 * registered login CyTube first sends the account's global rank, then the
 * login reply, then (fetched from its database) the channel rank. Until
 * then permission and rank checks refuse. */
void channel_settle_rank(struct channel *ch);

/* The user entry by name, case-insensitively (borrowed), or NULL. */
json_t *channel_user(const struct channel *ch, const char *name);

/* Is the bot allowed permission `node`? Fills `why` when not (also while
 * the rank is not settled). */
int channel_permitted(const struct channel *ch, const char *node, char *why, size_t n);
/* Has the bot at least rank `need` for `what`? Fills `why` when not. */
int channel_min_rank(const struct channel *ch, double need, const char *what, char *why, size_t n);
/* The playlist permission node: `locked` while the playlist is locked. */
const char *channel_playlist_node(const struct channel *ch, const char *locked, const char *open);
/* The channel does not turn voteskips off. */
int channel_allows_voteskip(const struct channel *ch);

/* The chat flood limits that bind the bot: chat_antiflood_params when the
 * channel has antiflood on and the bot's rank is below 2 or not settled
 * (moderators are exempt), CyTube's defaults (20, 10/s, 2 s) otherwise. */
void channel_flood_limits(const struct channel *ch, double *burst, double *sustained, double *cooldown_s);

/* Adds rank, permissions, options, users, media, current_uid, leader,
 * playlist_locked and usercount (copies) to the object `o`. */
void channel_snapshot(const struct channel *ch, json_t *o);

#endif
