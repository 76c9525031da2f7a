/* channel: see channel.h. */
#include "cytube/channel.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void channel_init(struct channel *ch)
{
    memset(ch, 0, sizeof *ch);
    ch->rank = -1;
    ch->playlist_locked = 1;
}

void channel_clear(struct channel *ch)
{
    json_decref(ch->permissions);
    json_decref(ch->options);
    json_decref(ch->users);
    json_decref(ch->media);
    json_decref(ch->current_uid);
    free(ch->leader);
    channel_init(ch);
}

void channel_settle_rank(struct channel *ch) { ch->rank_settled = 1; }

static int rank_unsettled(const struct channel *ch, char *why, size_t n)
{
    if (ch->rank_settled)
        return 0;
    snprintf(why, n, "the bot's rank in the channel is not known yet (has %g)", ch->rank);
    return 1;
}

json_t *channel_user(const struct channel *ch, const char *name)
{
    if (!ch->users || !name)
        return NULL;
    const char *key;
    json_t *v;
    json_object_foreach(ch->users, key, v) {
        if (strcasecmp(key, name) == 0)
            return v;
    }
    return NULL;
}

static void users_del(struct channel *ch, json_t *u)
{
    json_t *name = json_object_get(u, "name");
    if (!json_is_string(name))
        return;
    char *k = strdup(json_string_value(name)); /* the key goes with the entry */
    if (k) {
        json_object_del(ch->users, k);
        free(k);
    }
}

static void users_put(struct channel *ch, json_t *u)
{
    json_t *name = json_object_get(u, "name");
    if (!json_is_string(name))
        return;
    if (!ch->users)
        ch->users = json_object();
    json_t *old = channel_user(ch, json_string_value(name));
    if (old)
        users_del(ch, old); /* the same user under another spelling */
    json_object_set_new(ch->users, json_string_value(name), json_deep_copy(u));
}

static void replace(json_t **slot, json_t *v)
{
    json_decref(*slot);
    *slot = json_deep_copy(v);
}

void channel_apply(struct channel *ch, const char *name, json_t *arg)
{
    if (strcmp(name, "rank") == 0 && json_is_number(arg)) {
        ch->rank = json_number_value(arg);
    } else if (strcmp(name, "setPermissions") == 0 && json_is_object(arg)) {
        replace(&ch->permissions, arg);
    } else if (strcmp(name, "channelOpts") == 0 && json_is_object(arg)) {
        replace(&ch->options, arg);
    } else if (strcmp(name, "setPlaylistLocked") == 0) {
        ch->playlist_locked = json_is_true(arg);
    } else if (strcmp(name, "userlist") == 0 && json_is_array(arg)) {
        json_decref(ch->users);
        ch->users = json_object();
        size_t i;
        json_t *u;
        json_array_foreach(arg, i, u) users_put(ch, u);
    } else if (strcmp(name, "addUser") == 0 && json_is_object(arg)) {
        users_put(ch, arg);
    } else if (strcmp(name, "userLeave") == 0) {
        json_t *u = channel_user(ch, json_string_value(json_object_get(arg, "name")));
        if (u)
            users_del(ch, u);
    } else if (strcmp(name, "setUserRank") == 0) {
        json_t *u = channel_user(ch, json_string_value(json_object_get(arg, "name")));
        json_t *rank = json_object_get(arg, "rank");
        if (u && json_is_number(rank))
            json_object_set(u, "rank", rank);
    } else if (strcmp(name, "setUserMeta") == 0) {
        json_t *u = channel_user(ch, json_string_value(json_object_get(arg, "name")));
        json_t *meta = json_object_get(arg, "meta");
        if (u && json_is_object(meta))
            json_object_set_new(u, "meta", json_deep_copy(meta));
    } else if (strcmp(name, "setAFK") == 0) {
        json_t *u = channel_user(ch, json_string_value(json_object_get(arg, "name")));
        json_t *meta = json_object_get(u, "meta");
        if (json_is_object(meta))
            json_object_set(meta, "afk", json_is_true(json_object_get(arg, "afk")) ? json_true() : json_false());
    } else if (strcmp(name, "setUserProfile") == 0) {
        json_t *u = channel_user(ch, json_string_value(json_object_get(arg, "name")));
        json_t *profile = json_object_get(arg, "profile");
        if (u && json_is_object(profile))
            json_object_set_new(u, "profile", json_deep_copy(profile));
    } else if (strcmp(name, "changeMedia") == 0 && json_is_object(arg)) {
        replace(&ch->media, arg);
    } else if (strcmp(name, "mediaUpdate") == 0 && json_is_object(arg) && ch->media) {
        json_t *ct = json_object_get(arg, "currentTime"), *paused = json_object_get(arg, "paused");
        if (ct)
            json_object_set(ch->media, "currentTime", ct);
        if (paused)
            json_object_set(ch->media, "paused", paused);
    } else if (strcmp(name, "setCurrent") == 0 && arg) {
        replace(&ch->current_uid, arg);
    } else if (strcmp(name, "usercount") == 0 && json_is_integer(arg)) {
        ch->usercount = (long)json_integer_value(arg);
    } else if (strcmp(name, "setLeader") == 0 && json_is_string(arg)) {
        free(ch->leader);
        ch->leader = strdup(json_string_value(arg));
    }
}

int channel_permitted(const struct channel *ch, const char *node, char *why, size_t n)
{
    if (!ch->permissions) {
        snprintf(why, n, "the channel's permissions are not known yet");
        return 0;
    }
    if (rank_unsettled(ch, why, n))
        return 0;
    json_t *v = json_object_get(ch->permissions, node);
    if (!json_is_number(v)) {
        snprintf(why, n, "refused: the channel has no '%s' permission (unregistered channel?)", node);
        return 0;
    }
    if (ch->rank < json_number_value(v)) {
        snprintf(why, n, "refused: needs rank %g for '%s', the bot has %g", json_number_value(v), node, ch->rank);
        return 0;
    }
    return 1;
}

int channel_min_rank(const struct channel *ch, double need, const char *what, char *why, size_t n)
{
    if (rank_unsettled(ch, why, n))
        return 0;
    if (ch->rank >= need)
        return 1;
    snprintf(why, n, "refused: %s needs rank %g, the bot has %g", what, need, ch->rank);
    return 0;
}

const char *channel_playlist_node(const struct channel *ch, const char *locked, const char *open)
{
    return ch->playlist_locked ? locked : open;
}

int channel_allows_voteskip(const struct channel *ch)
{
    return !json_is_false(json_object_get(ch->options, "allow_voteskip"));
}

void channel_flood_limits(const struct channel *ch, double *burst, double *sustained, double *cooldown_s)
{
    *burst = 20, *sustained = 10, *cooldown_s = 2;
    json_t *af = json_object_get(ch->options, "chat_antiflood");
    if (json_is_true(af) && (ch->rank < 2 || !ch->rank_settled)) {
        json_t *p = json_object_get(ch->options, "chat_antiflood_params");
        json_t *b = json_object_get(p, "burst"), *s = json_object_get(p, "sustained"), *c = json_object_get(p, "cooldown");
        if (json_is_number(b))
            *burst = json_number_value(b);
        if (json_is_number(s) && json_number_value(s) > 0)
            *sustained = json_number_value(s);
        *cooldown_s = json_is_number(c) ? json_number_value(c) : *burst / *sustained;
    }
}

void channel_snapshot(const struct channel *ch, json_t *o)
{
    json_object_set_new(o, "rank", json_real(ch->rank));
    json_object_set_new(o, "permissions", ch->permissions ? json_deep_copy(ch->permissions) : json_object());
    json_object_set_new(o, "options", ch->options ? json_deep_copy(ch->options) : json_object());
    json_object_set_new(o, "users", ch->users ? json_deep_copy(ch->users) : json_object());
    if (ch->media)
        json_object_set_new(o, "media", json_deep_copy(ch->media));
    if (ch->current_uid)
        json_object_set_new(o, "current_uid", json_deep_copy(ch->current_uid));
    if (ch->leader)
        json_object_set_new(o, "leader", json_string(ch->leader));
    json_object_set_new(o, "playlist_locked", json_boolean(ch->playlist_locked));
    json_object_set_new(o, "usercount", json_integer(ch->usercount));
}
