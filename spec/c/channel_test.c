/* channel_test: a room's view of its channel, fed the server's events —
 * users (list, join, leave, rank, afk, meta, profile, names in any case),
 * options, permissions and rank checks, the playlist lock, media, and a
 * snapshot; events it does not know or malformed ones change nothing. */
#include <stdlib.h>

#include "cytube/channel.h"
#include "tap.h"

static void apply(struct channel *ch, const char *event, const char *json)
{
    json_t *v = json_loads(json, JSON_DECODE_ANY, NULL);
    if (!v)
        printf("# bad JSON in the test: %s\n", json);
    channel_apply(ch, event, v);
    json_decref(v);
}

static double user_rank(struct channel *ch, const char *name)
{
    json_t *r = json_object_get(channel_user(ch, name), "rank");
    return json_is_number(r) ? json_number_value(r) : -99;
}

static void test_users(void)
{
    struct channel ch;
    channel_init(&ch);
    ok(channel_user(&ch, "alice") == NULL, "no users before the userlist");
    apply(&ch, "userlist",
          "[{\"name\":\"Alice\",\"rank\":1,\"meta\":{\"afk\":false}},{\"name\":\"bob\",\"rank\":3,\"meta\":{}},{\"rank\":2}]");
    ok(json_object_size(ch.users) == 2, "the userlist: two named users (an entry without a name is skipped)");
    ok(user_rank(&ch, "alice") == 1 && user_rank(&ch, "ALICE") == 1, "names match in any case");
    apply(&ch, "addUser", "{\"name\":\"carol\",\"rank\":0}");
    ok(json_object_size(ch.users) == 3 && user_rank(&ch, "carol") == 0, "addUser adds");
    apply(&ch, "addUser", "{\"name\":\"ALICE\",\"rank\":2}");
    ok(json_object_size(ch.users) == 3 && user_rank(&ch, "alice") == 2, "addUser again replaces, not duplicates");
    ok(json_object_get(ch.users, "ALICE") && !json_object_get(ch.users, "Alice"), "under the new spelling");
    apply(&ch, "setUserRank", "{\"name\":\"bob\",\"rank\":4}");
    ok(user_rank(&ch, "bob") == 4, "setUserRank");
    apply(&ch, "setUserRank", "{\"name\":\"nobody\",\"rank\":4}");
    ok(json_object_size(ch.users) == 3, "setUserRank for an unknown user adds nobody");
    apply(&ch, "setAFK", "{\"name\":\"alice\",\"afk\":true}");
    ok(json_is_true(json_object_get(json_object_get(channel_user(&ch, "alice"), "meta"), "afk")) == 0,
       "setAFK needs a meta object (ALICE was re-added without one)");
    apply(&ch, "setAFK", "{\"name\":\"bob\",\"afk\":true}");
    ok(json_is_true(json_object_get(json_object_get(channel_user(&ch, "bob"), "meta"), "afk")), "setAFK true");
    apply(&ch, "setAFK", "{\"name\":\"bob\",\"afk\":false}");
    ok(json_is_false(json_object_get(json_object_get(channel_user(&ch, "bob"), "meta"), "afk")), "setAFK false");
    apply(&ch, "setUserMeta", "{\"name\":\"carol\",\"meta\":{\"muted\":true,\"afk\":true}}");
    ok(json_is_true(json_object_get(json_object_get(channel_user(&ch, "carol"), "meta"), "muted")), "setUserMeta");
    apply(&ch, "setUserProfile", "{\"name\":\"carol\",\"profile\":{\"text\":\"hi\"}}");
    ok(json_is_string(json_object_get(json_object_get(channel_user(&ch, "carol"), "profile"), "text")),
       "setUserProfile");
    apply(&ch, "userLeave", "{\"name\":\"Carol\"}");
    ok(json_object_size(ch.users) == 2 && !channel_user(&ch, "carol"), "userLeave removes, in any case");
    apply(&ch, "userLeave", "{\"name\":\"carol\"}");
    ok(json_object_size(ch.users) == 2, "leaving twice changes nothing");
    apply(&ch, "userlist", "[{\"name\":\"dave\",\"rank\":1}]");
    ok(json_object_size(ch.users) == 1 && channel_user(&ch, "dave"), "a new userlist replaces the users");
    channel_clear(&ch);
    ok(ch.users == NULL && ch.rank == -1, "clear forgets the users");
}

static void test_permissions(void)
{
    struct channel ch;
    channel_init(&ch);
    char why[300];
    ok(!channel_permitted(&ch, "chat", why, sizeof why), "nothing is permitted before setPermissions");
    is_str(why, "the channel's permissions are not known yet", "and it says why");
    apply(&ch, "setPermissions", "{\"chat\":0,\"playlistadd\":1.5,\"oplaylistadd\":0,\"kick\":2,\"pollctl\":1.5}");
    ok(channel_permitted(&ch, "chat", why, sizeof why) == 0, "rank -1 (not known yet) may not even chat");
    apply(&ch, "rank", "1");
    ok(ch.rank == 1, "rank");
    /* a registered login: the account's global rank comes first */
    ok(!channel_permitted(&ch, "chat", why, sizeof why), "an unsettled rank permits nothing");
    is_str(why, "the bot's rank in the channel is not known yet (has 1)", "and says so");
    ok(!channel_min_rank(&ch, 0, "afk", why, sizeof why), "nor passes a rank check");
    channel_settle_rank(&ch);
    ok(channel_permitted(&ch, "chat", why, sizeof why), "rank 1, settled: chat (0)");
    ok(!channel_permitted(&ch, "playlistadd", why, sizeof why), "rank 1: not playlistadd (1.5)");
    is_str(why, "refused: needs rank 1.5 for 'playlistadd', the bot has 1", "the refusal names rank and node");
    ok(!channel_permitted(&ch, "voteskip", why, sizeof why), "an unknown node is refused");
    is_str(why, "refused: the channel has no 'voteskip' permission (unregistered channel?)", "and says so");
    apply(&ch, "rank", "2");
    ok(channel_permitted(&ch, "kick", why, sizeof why), "rank 2: kick (2), equal is enough");
    apply(&ch, "rank", "\"3\"");
    ok(ch.rank == 2, "a rank that is not a number is ignored");
    ok(channel_min_rank(&ch, 1.5, "say", why, sizeof why), "min_rank 1.5 at rank 2");
    ok(!channel_min_rank(&ch, 3, "rank", why, sizeof why), "min_rank 3 at rank 2 refused");
    is_str(why, "refused: rank needs rank 3, the bot has 2", "the min_rank refusal");

    is_str(channel_playlist_node(&ch, "playlistadd", "oplaylistadd"), "playlistadd", "the playlist starts locked");
    apply(&ch, "setPlaylistLocked", "false");
    is_str(channel_playlist_node(&ch, "playlistadd", "oplaylistadd"), "oplaylistadd", "unlocked: the open node");
    apply(&ch, "setPlaylistLocked", "true");
    ok(ch.playlist_locked == 1, "locked again");
    channel_clear(&ch);
    ok(ch.permissions == NULL && ch.playlist_locked == 1, "clear forgets the permissions, locks the playlist");
    ok(!ch.rank_settled && ch.rank == -1, "and the rank");
}

static void test_options(void)
{
    struct channel ch;
    channel_init(&ch);
    ok(channel_allows_voteskip(&ch), "voteskip allowed when the options are not known");
    apply(&ch, "channelOpts", "{\"allow_voteskip\":false,\"chat_antiflood\":true}");
    ok(!channel_allows_voteskip(&ch), "allow_voteskip false");
    apply(&ch, "channelOpts", "{\"allow_voteskip\":true}");
    ok(channel_allows_voteskip(&ch) && !json_object_get(ch.options, "chat_antiflood"),
       "channelOpts replaces the options whole");
    apply(&ch, "channelOpts", "[1]");
    ok(json_is_true(json_object_get(ch.options, "allow_voteskip")), "options that are not an object are ignored");
    double b, s, c;
    apply(&ch, "channelOpts", "{\"chat_antiflood\":false,\"chat_antiflood_params\":{\"burst\":3,\"sustained\":1}}");
    channel_flood_limits(&ch, &b, &s, &c);
    ok(b == 20 && s == 10 && c == 2, "antiflood off: the defaults apply");
    apply(&ch, "channelOpts", "{\"chat_antiflood\":true,\"chat_antiflood_params\":{\"burst\":3,\"sustained\":0}}");
    channel_flood_limits(&ch, &b, &s, &c);
    ok(b == 3 && s == 10 && c == 0.3, "sustained 0 is ignored (%g, %g, %g)", b, s, c);
    channel_clear(&ch);
}

static void test_media(void)
{
    struct channel ch;
    channel_init(&ch);
    apply(&ch, "mediaUpdate", "{\"currentTime\":5,\"paused\":false}");
    ok(ch.media == NULL, "a mediaUpdate before changeMedia is ignored");
    apply(&ch, "changeMedia", "{\"id\":\"abc\",\"title\":\"T\",\"currentTime\":0,\"paused\":true}");
    is_str(json_string_value(json_object_get(ch.media, "id")), "abc", "changeMedia");
    apply(&ch, "mediaUpdate", "{\"currentTime\":12.5,\"paused\":false}");
    ok(json_number_value(json_object_get(ch.media, "currentTime")) == 12.5 &&
           json_is_false(json_object_get(ch.media, "paused")),
       "mediaUpdate moves the time and the pause");
    is_str(json_string_value(json_object_get(ch.media, "title")), "T", "and keeps the rest");
    apply(&ch, "setCurrent", "7");
    ok(json_integer_value(ch.current_uid) == 7, "setCurrent");
    apply(&ch, "usercount", "12");
    ok(ch.usercount == 12, "usercount");
    apply(&ch, "usercount", "1.5");
    ok(ch.usercount == 12, "a usercount that is not an integer is ignored");
    apply(&ch, "setLeader", "\"bob\"");
    is_str(ch.leader, "bob", "setLeader");
    apply(&ch, "setLeader", "\"\"");
    is_str(ch.leader, "", "setLeader \"\" clears it");
    apply(&ch, "chatMsg", "{\"username\":\"x\",\"msg\":\"hi\"}");
    ok(ch.usercount == 12 && ch.users == NULL, "events the view does not keep change nothing");

    apply(&ch, "rank", "3");
    apply(&ch, "setPermissions", "{\"chat\":0}");
    apply(&ch, "addUser", "{\"name\":\"bob\",\"rank\":1}");
    json_t *o = json_object();
    channel_snapshot(&ch, o);
    ok(json_number_value(json_object_get(o, "rank")) == 3, "snapshot: rank");
    ok(json_object_get(json_object_get(o, "users"), "bob") != NULL, "snapshot: users");
    ok(json_integer_value(json_object_get(json_object_get(o, "permissions"), "chat")) == 0, "snapshot: permissions");
    ok(json_is_object(json_object_get(o, "options")) && json_object_size(json_object_get(o, "options")) == 0,
       "snapshot: options {} when not known");
    is_str(json_string_value(json_object_get(json_object_get(o, "media"), "id")), "abc", "snapshot: media");
    ok(json_integer_value(json_object_get(o, "current_uid")) == 7 && json_integer_value(json_object_get(o, "usercount")) == 12,
       "snapshot: current_uid, usercount");
    ok(json_is_true(json_object_get(o, "playlist_locked")), "snapshot: playlist_locked");
    json_object_set_new(json_object_get(json_object_get(o, "users"), "bob"), "rank", json_integer(9));
    ok(user_rank(&ch, "bob") == 1, "the snapshot is a copy");
    json_decref(o);
    channel_clear(&ch);
    ok(ch.media == NULL && ch.leader == NULL && ch.usercount == 0 && ch.current_uid == NULL, "clear forgets the media");
}

int main(void)
{
    test_users();
    test_permissions();
    test_options();
    test_media();
    return tap_done();
}
