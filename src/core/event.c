/* event: see event.h. The type and room strings live in the same allocation
 * as the struct: an event is made and freed on every publish, so one malloc
 * instead of three is most of its cost. */
#include "core/event.h"

#include <stdlib.h>
#include <string.h>

static struct event_lua_hooks hooks;
static struct event_native_hooks native_hooks;

void event_set_native_hooks(const struct event_native_hooks *h)
{
    if (h)
        native_hooks = *h;
    else
        memset(&native_hooks, 0, sizeof native_hooks);
}

void event_set_lua_hooks(const struct event_lua_hooks *h)
{
    if (h)
        hooks = *h;
    else
        memset(&hooks, 0, sizeof hooks);
}

static int clamp_priority(int priority)
{
    if (priority < EVENT_PRIO_NORMAL)
        return EVENT_PRIO_NORMAL;
    if (priority > EVENT_PRIO_CRITICAL)
        return EVENT_PRIO_CRITICAL;
    return priority;
}

static void free_fields(struct event *ev)
{
    for (int i = 0; i < ev->tag_count; i++)
        if (ev->tags[i] != ev->room_tag)
            free(ev->tags[i]);
    if (ev->tags != ev->inline_tags)
        free(ev->tags);
    free(ev->json);
    free(ev->error);
}

/* Appends an owned (or, for the room tag, embedded) string to the tags. */
static int push_tag(struct event *ev, char *tag)
{
    int cap = (int)(sizeof ev->inline_tags / sizeof ev->inline_tags[0]);
    if (ev->tags == ev->inline_tags && ev->tag_count == cap) {
        char **heap = malloc((size_t)(cap + 1) * sizeof *heap);
        if (!heap)
            return -1;
        memcpy(heap, ev->inline_tags, sizeof ev->inline_tags);
        ev->tags = heap;
    } else if (ev->tags != ev->inline_tags) {
        char **tags = realloc(ev->tags, (size_t)(ev->tag_count + 1) * sizeof *tags);
        if (!tags)
            return -1;
        ev->tags = tags;
    }
    ev->tags[ev->tag_count++] = tag;
    return 0;
}

struct event *event_new_take(const char *type, const char *room, int priority,
                             char *json, size_t json_len)
{
    if (!type || !*type) {
        free(json);
        return NULL;
    }
    size_t type_len = strlen(type);
    size_t room_len = room ? strlen(room) : 0;
    /* type, room and "room:<room>" share the struct's allocation. */
    size_t extra = type_len + 1 + (room ? 2 * room_len + 7 : 0);
    struct event *ev = malloc(sizeof *ev + extra);
    if (!ev) {
        free(json);
        return NULL;
    }
    memset(ev, 0, sizeof *ev);
    ev->refcount = 1;
    ev->priority = clamp_priority(priority);
    ev->type = (char *)(ev + 1);
    memcpy(ev->type, type, type_len + 1);
    ev->tags = ev->inline_tags;
    if (room) {
        ev->room = ev->type + type_len + 1;
        memcpy(ev->room, room, room_len + 1);
        ev->room_tag = ev->room + room_len + 1;
        memcpy(ev->room_tag, "room:", 5);
        memcpy(ev->room_tag + 5, room, room_len + 1);
    }
    ev->json = json;
    ev->json_len = json ? json_len : 0;
    ev->lua_data_ref = EVENT_NO_REF;
    ev->lua_event_ref = EVENT_NO_REF;
    if (room)
        push_tag(ev, ev->room_tag); /* the inline array has room: cannot fail */
    return ev;
}

struct event *event_new(const char *type, const char *room, int priority,
                        const char *json, size_t json_len)
{
    char *copy = NULL;
    if (json) {
        copy = malloc(json_len + 1);
        if (!copy)
            return NULL;
        memcpy(copy, json, json_len);
        copy[json_len] = '\0';
    }
    return event_new_take(type, room, priority, copy, json_len);
}

int event_add_tag(struct event *ev, const char *tag)
{
    if (!ev || !tag)
        return -1;
    if (event_has_tag(ev, tag))
        return 0;
    char *copy = strdup(tag);
    if (!copy)
        return -1;
    if (push_tag(ev, copy) != 0) {
        free(copy);
        return -1;
    }
    return 0;
}

int event_has_tag(const struct event *ev, const char *tag)
{
    if (!ev || !tag)
        return 0;
    for (int i = 0; i < ev->tag_count; i++) {
        if (strcmp(ev->tags[i], tag) == 0)
            return 1;
    }
    return 0;
}

struct event *event_ref(struct event *ev)
{
    if (ev)
        ev->refcount++;
    return ev;
}

void event_unref(struct event *ev)
{
    if (!ev || --ev->refcount > 0)
        return;
    if (hooks.release)
        hooks.release(ev);
    if (ev->native && native_hooks.release)
        native_hooks.release(ev->native);
    free_fields(ev);
    free(ev);
}

const char *event_json(struct event *ev, size_t *len)
{
    if (!ev->json && ev->native) {
        size_t n = 0;
        char *text = native_hooks.encode ? native_hooks.encode(ev->native, &n) : NULL;
        if (!text)
            return NULL;
        ev->json = text;
        ev->json_len = n;
    }
    /* LUA_NOREF (-2) and LUA_REFNIL (-1) both mean "no table to encode". */
    if (!ev->json && ev->lua_data_ref >= 0) {
        if (!hooks.encode || hooks.encode(ev) != 0 || !ev->json)
            return NULL;
    }
    if (!ev->json) {
        if (len)
            *len = 4;
        return "null";
    }
    if (len)
        *len = ev->json_len;
    return ev->json;
}

int event_set_error(struct event *ev, const char *error)
{
    char *copy = NULL;
    if (error && !(copy = strdup(error)))
        return -1;
    free(ev->error);
    ev->error = copy;
    return 0;
}
