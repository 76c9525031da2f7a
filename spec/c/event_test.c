/* Unit tests for event.c: construction, tags, refcounts, payload copy and
 * the Lua hooks. */
#include <stdlib.h>

#include "core/event.h"
#include "tap.h"

/* tap.h's ok() evaluates its condition twice; these conditions publish,
 * respond and unref, so evaluate them once. */
#define check(cond, ...)                                                     \
    do {                                                                     \
        int check_ = !!(cond);                                               \
        ok(check_, __VA_ARGS__);                                             \
        if (!check_)                                                         \
            printf("#   condition: %s\n", #cond);                            \
    } while (0)

static int released;
static struct event *released_ev;
static int encode_calls;
static int encode_result;

static void count_release(struct event *ev)
{
    released++;
    released_ev = ev;
}

static int fake_encode(struct event *ev)
{
    encode_calls++;
    if (encode_result != 0)
        return encode_result;
    ev->json = strdup("{\"from\":\"lua\"}");
    ev->json_len = ev->json ? strlen(ev->json) : 0;
    return ev->json ? 0 : -1;
}

int main(void)
{
    struct event_lua_hooks hooks = {.release = count_release, .encode = fake_encode};
    event_set_lua_hooks(&hooks);

    char payload[] = "{\"msg\":\"hi\"}";
    struct event *ev = event_new("cytube.event.chatMsg", "lobby", EVENT_PRIO_HIGH,
                                 payload, strlen(payload));
    check(ev != NULL, "event_new makes an event");
    is_str(ev->type, "cytube.event.chatMsg", "the type is kept");
    is_str(ev->room, "lobby", "the room is kept");
    check(ev->priority == EVENT_PRIO_HIGH, "the priority is kept");
    check(ev->refcount == 1, "a new event has one reference");
    check(ev->correlation_id == 0 && ev->error == NULL && ev->next == NULL && ev->btype == NULL,
       "correlation id, error and bus links start empty");
    check(ev->lua_data_ref == EVENT_NO_REF && ev->lua_event_ref == EVENT_NO_REF,
       "Lua refs start as LUA_NOREF");
    check(ev->tag_count == 1 && event_has_tag(ev, "room:lobby"), "the room tag is added");

    payload[2] = 'X';
    size_t len = 0;
    const char *json = event_json(ev, &len);
    is_str(json, "{\"msg\":\"hi\"}", "the payload is copied, not borrowed");
    check(len == strlen("{\"msg\":\"hi\"}"), "the payload length is kept");
    check(encode_calls == 0, "a JSON payload is not re-encoded");

    check(event_add_tag(ev, "urgent") == 0 && event_has_tag(ev, "urgent"), "a tag can be added");
    check(event_add_tag(ev, "urgent") == 0 && ev->tag_count == 2, "adding a tag twice keeps one copy");
    check(!event_has_tag(ev, "room:other"), "a missing tag is not found");
    check(!event_has_tag(ev, "room:"), "a tag prefix is not a match");
    /* The first few tags live in the event itself; more move to the heap. */
    int added = 1;
    char tag[16];
    for (int i = 0; i < 7; i++) {
        snprintf(tag, sizeof tag, "t%d", i);
        added &= event_add_tag(ev, tag) == 0;
    }
    check(added && ev->tag_count == 9, "many tags can be added");
    check(event_has_tag(ev, "room:lobby") && event_has_tag(ev, "urgent") && event_has_tag(ev, "t0") &&
              event_has_tag(ev, "t6"),
          "every tag is still there after the move (ASan checks the frees)");

    check(event_set_error(ev, "boom") == 0, "an error can be set");
    is_str(ev->error, "boom", "the error is kept");
    check(event_set_error(ev, NULL) == 0 && ev->error == NULL, "the error can be cleared");
    check(event_set_error(ev, "again") == 0, "an error can be set again (freed at the end)");

    check(event_ref(ev) == ev && ev->refcount == 2, "event_ref adds a reference");
    event_unref(ev);
    check(released == 0 && ev->refcount == 1, "dropping one of two references keeps the event");
    event_unref(ev);
    check(released == 1 && released_ev == ev, "the last unref calls the release hook once");

    struct event *bare = event_new("timer.tick", NULL, EVENT_PRIO_NORMAL, NULL, 0);
    check(bare && bare->room == NULL && bare->tag_count == 0, "no room means no room tag");
    json = event_json(bare, &len);
    is_str(json, "null", "no payload reads as null");
    check(len == 4, "with length 4");
    check(encode_calls == 0, "no Lua table means no encoding");
    event_unref(bare);

    struct event *lua = event_new("plugin.request.x", NULL, EVENT_PRIO_NORMAL, NULL, 0);
    lua->lua_data_ref = 7;
    json = event_json(lua, &len);
    is_str(json, "{\"from\":\"lua\"}", "a Lua payload is encoded on demand");
    json = event_json(lua, NULL);
    check(encode_calls == 1, "and only once");
    lua->lua_data_ref = EVENT_NO_REF;
    event_unref(lua);

    struct event *bad = event_new("plugin.request.y", NULL, EVENT_PRIO_NORMAL, NULL, 0);
    bad->lua_data_ref = 8;
    encode_result = -1;
    check(event_json(bad, &len) == NULL, "a failed encoding returns NULL");
    bad->lua_data_ref = EVENT_NO_REF;
    event_unref(bad);

    char *owned = strdup("[1,2,3]");
    struct event *taken = event_new_take("x.take", "r", 99, owned, 7);
    check(taken && taken->json == owned, "event_new_take keeps the buffer it is given");
    check(taken->priority == EVENT_PRIO_CRITICAL, "a priority above critical is clamped");
    event_unref(taken);

    struct event *low = event_new("x.low", NULL, -5, "{}", 2);
    check(low && low->priority == EVENT_PRIO_NORMAL, "a negative priority is clamped to normal");
    event_unref(low);

    check(event_new(NULL, NULL, 0, NULL, 0) == NULL, "a NULL type is refused");
    check(event_new("", NULL, 0, NULL, 0) == NULL, "an empty type is refused");
    check(event_new_take("", NULL, 0, strdup("{}"), 2) == NULL,
       "event_new_take refuses an empty type (and frees the buffer: LSan checks)");

    int before = released;
    event_set_lua_hooks(NULL);
    event_unref(event_new("x.nohook", NULL, 0, NULL, 0));
    check(released == before, "without hooks nothing is called on release");
    event_unref(NULL);
    check(event_ref(NULL) == NULL, "ref and unref accept NULL");
    return tap_done();
}
