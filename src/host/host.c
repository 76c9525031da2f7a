/* lua_host: see host.h (and host_private.h for its data).
 *
 * Tasks. Each plugin has one worker coroutine that runs its deliveries in
 * order; concurrent subscriptions get pooled coroutines of their own. A task
 * body is a small Lua loop (WORKER_SOURCE) that xpcalls the handler and then
 * yields DONE_MARK back to us, so one coroutine serves many deliveries. A C
 * function that waits yields WAIT_MARK; its completion resumes the task with
 * the results. An instruction-count hook, armed before every resume, yields
 * the task out when it runs past its budget; such a task is thrown away. */
#include "host/host.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "host/host_private.h"
#include "host/watchdog.h"

static char WAIT_MARK, DONE_MARK;

const double host_hist_bounds[HOST_HIST_BUCKETS] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                                    0.01,   0.025,   0.05,   0.1,   0.5,    1.0};


/* The task body: runs fn(ev), then waits for the next. No pcall here: an
 * error ends lua_resume, which leaves the coroutine's stack for a traceback,
 * and the task is replaced — cheaper than a protected call per delivery. */
static const char WORKER_SOURCE[] =
    "local DONE, yield = ...\n"
    "return function(fn, ev)\n"
    "  while true do\n"
    "    fn(ev)\n"
    "    fn, ev = yield(DONE)\n"
    "  end\n"
    "end\n";

static void observe(struct plugin *p, double seconds)
{
    int i = 0;
    while (i < HOST_HIST_BUCKETS && seconds > host_hist_bounds[i])
        i++;
    p->hist[i]++;
    p->handler_seconds += seconds;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* --------------------------------------------------- repeated log lines */

/* Handler errors and inbox drops can repeat at event rate: each site (an
 * error's "file:line:", the inbox) is logged in full the first few times,
 * then in one summary line per interval. The counters stay exact. */
#define ERRLOG_BURST 10
#define ERRLOG_SITES 16
static const char INBOX_SITE[] = "(inbox full)";

static void emit_summary(const struct ratelog_site *s, uint64_t count, double seconds, void *ctx)
{
    struct plugin *p = ctx;
    char n[32];
    ratelog_format_count(count, n, sizeof n);
    if (strcmp(s->key, INBOX_SITE) == 0)
        log_warn(p->name, "%s more deliveries dropped in the last %.3g s: %s", n, seconds, s->msg);
    else
        log_error(p->name, "%s more errors like this in the last %.3g s: %s", n, seconds, s->msg);
}

static void on_errlog_timer(uv_timer_t *timer);

static void arm_errlog(struct host *h)
{
    if (h->closing || h->errlog_armed)
        return;
    double now = now_seconds(), due = -1;
    for (struct plugin *p = h->plugins; p; p = p->next) {
        double d = ratelog_next_due(&p->errlog, now);
        if (d >= 0 && (due < 0 || d < due))
            due = d;
    }
    if (due < 0)
        return;
    h->errlog_armed = 1;
    uv_timer_start(&h->errlog_timer, on_errlog_timer, (uint64_t)(due * 1000.0) + 1, 0);
}

static void on_errlog_timer(uv_timer_t *timer)
{
    struct host *h = timer->data;
    h->errlog_armed = 0;
    double now = now_seconds();
    for (struct plugin *p = h->plugins; p; p = p->next)
        ratelog_flush(&p->errlog, now, 0, emit_summary, p);
    arm_errlog(h);
}

/* Logs "<prefix><err>" for plugin p, in full or into a summary. */
static void log_plugin_error(struct plugin *p, const char *prefix, const char *err)
{
    char site[RATELOG_KEY_MAX];
    ratelog_error_site(err, site, sizeof site);
    if (ratelog_hit(&p->errlog, site, err, now_seconds(), emit_summary, p))
        log_error(p->name, "%s%s", prefix, err);
    else
        arm_errlog(p->h);
}

/* ------------------------------------------------------------------ refs */

int host_ref(struct host *h, lua_State *L)
{
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (ref != LUA_NOREF && ref != LUA_REFNIL)
        h->refs++;
    return ref;
}

void host_unref(struct host *h, int ref)
{
    if (ref == LUA_NOREF || ref == LUA_REFNIL)
        return;
    luaL_unref(h->L, LUA_REGISTRYINDEX, ref);
    h->refs--;
}

long host_refs_outstanding(const struct host *h) { return h->refs; }

/* ------------------------------------------------------------- accessors */

static const char HOST_KEY = 'h';

struct host *host_from_lua(lua_State *L)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &HOST_KEY);
    struct host *h = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return h;
}

lua_State *host_lua(struct host *h) { return h->L; }
struct bus *host_bus(struct host *h) { return h->bus; }
uv_loop_t *host_loop(struct host *h) { return h->loop; }
const char *plugin_name(const struct plugin *p) { return p ? p->name : "core"; }

/* The task running on L, from the coroutine's extra space. */
static struct task *task_of(lua_State *L)
{
    return *(struct task **)lua_getextraspace(L);
}

/* ---------------------------------------------------------------- errors */

void host_plugin_record_error(struct plugin *p, const char *msg)
{
    if (!p)
        return;
    p->errors++;
    free(p->last_error);
    p->last_error = strdup(msg ? msg : "?");
    double now = now_seconds();
    if (now - p->error_window_start > 60) {
        p->error_window_start = now;
        p->errors_in_window = 0;
    }
    if (++p->errors_in_window >= p->h->opt.degraded_after_errors && !p->degraded) {
        p->degraded = 1;
        log_warn(p->name, "marked degraded: %d errors within a minute", p->errors_in_window);
    }
}

int host_traceback(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);
    if (!msg)
        msg = luaL_typename(L, 1);
    luaL_traceback(L, L, msg, 1);
    return 1;
}

int host_pcall(struct host *h, struct plugin *p, const char *what, int nargs, int nresults)
{
    lua_State *L = h->L;
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, host_traceback);
    lua_insert(L, base);
    int rc = lua_pcall(L, nargs, nresults, base);
    if (rc != LUA_OK) {
        const char *err = lua_tostring(L, -1);
        log_error(plugin_name(p), "%s: %s", what, err ? err : "(error object is not a string)");
        host_plugin_record_error(p, err);
        lua_pop(L, 1);
    }
    lua_remove(L, base);
    return rc;
}

/* ----------------------------------------------------------------- tasks */

static void budget_hook(lua_State *co, lua_Debug *ar)
{
    (void)ar;
    struct task *t = task_of(co);
    if (t && lua_isyieldable(co)) {
        t->aborted = 1;
        lua_yield(co, 0);
        return;
    }
    /* A coroutine the handler made itself, or a C boundary: raise instead. */
    luaL_error(co, "instruction budget exceeded");
}

/* Set from the watchdog's signal handler once Lua has run past the
 * threshold: from then on, `budget` more instructions and it is aborted. */
static int budget_instructions = 10000000;

static void arm_budget(lua_State *L)
{
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, budget_instructions);
}

static struct task *task_new(struct plugin *p, int is_worker)
{
    struct host *h = p->h;
    struct task *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    lua_State *co = lua_newthread(h->L);
    t->co_ref = host_ref(h, h->L);
    t->co = co;
    t->p = p;
    t->is_worker = is_worker;
    *(struct task **)lua_getextraspace(co) = t;
    lua_rawgeti(h->L, LUA_REGISTRYINDEX, h->worker_factory_ref);
    lua_xmove(h->L, co, 1);
    t->next = p->tasks;
    p->tasks = t;
    return t;
}

static void wait_cancel(struct host_wait *w);

/* Forget a task: cancel its wait, close the coroutine, free it. */
static void task_discard(struct task *t)
{
    struct plugin *p = t->p;
    if (t->wait)
        wait_cancel(t->wait);
    for (struct task **pp = &p->tasks; *pp; pp = &(*pp)->next) {
        if (*pp == t) {
            *pp = t->next;
            break;
        }
    }
    if (p->worker == t)
        p->worker = NULL;
    *(struct task **)lua_getextraspace(t->co) = NULL;
    lua_resetthread(t->co);
    host_unref(p->h, t->co_ref);
    free(t);
}

static void plugin_pump(struct plugin *p);
static void run_ready(struct host *h);

/* Resume t with `nargs` values already on its stack; handle how it stops. */
static void task_resume(struct task *t, int nargs)
{
    struct plugin *p = t->p;
    struct host *h = p->h;
    lua_State *co = t->co;
    int nres = 0;

    t->busy = 1;
    lua_sethook(co, NULL, 0, 0); /* a hook armed in an earlier run must not linger */
    struct task *saved = h->current;
    h->current = t;
    h->depth++;
    double start = now_seconds();
    lua_State *outer = watchdog_enter(co);
    int st = lua_resume(co, h->L, nargs, &nres);
    watchdog_leave(outer);
    observe(p, now_seconds() - start);
    h->depth--;
    h->current = saved;

    if (st == LUA_YIELD && t->aborted) {
        char msg[160];
        snprintf(msg, sizeof msg, "handler aborted: instruction budget of %ld exceeded",
                 h->opt.instruction_budget);
        log_plugin_error(p, "", msg);
        host_plugin_record_error(p, msg);
        task_discard(t);
    } else if (st == LUA_YIELD && nres >= 1 && lua_touserdata(co, -nres) == &WAIT_MARK) {
        lua_pop(co, nres); /* waiting: host_wait_complete resumes it */
    } else if (st == LUA_YIELD && nres >= 1 && lua_touserdata(co, -nres) == &DONE_MARK) {
        p->handled++;
        lua_pop(co, nres);
        t->busy = 0;
        if (!t->is_worker) {
            /* Park it for the next concurrent delivery. */
            for (struct task **pp = &p->tasks; *pp; pp = &(*pp)->next) {
                if (*pp == t) {
                    *pp = t->next;
                    break;
                }
            }
            t->next = p->pool;
            p->pool = t;
        }
    } else if (st == LUA_YIELD) {
        const char *err = "handler yielded outside a daz wait (coroutine.yield?)";
        log_plugin_error(p, "handler failed: ", err);
        host_plugin_record_error(p, err);
        task_discard(t);
    } else {
        /* The handler raised: its frames are still on co for the traceback. */
        p->handled++;
        const char *msg = lua_tostring(co, -1);
        luaL_traceback(h->L, co, msg ? msg : "(error object is not a string)", 0);
        const char *err = lua_tostring(h->L, -1);
        log_plugin_error(p, "handler failed: ", err);
        host_plugin_record_error(p, err);
        lua_pop(h->L, 1);
        task_discard(t);
    }
    if (h->depth == 0)
        run_ready(h);
    plugin_pump(p);
}

/* Starts fn(ev) on task t. */
static void task_run(struct task *t, int fn_ref, struct event *ev)
{
    struct host *h = t->p->h;
    lua_State *co = t->co;
    if (!lua_checkstack(co, 2)) {
        host_plugin_record_error(t->p, "out of Lua stack");
        return;
    }
    lua_rawgeti(co, LUA_REGISTRYINDEX, fn_ref);
    if (ev)
        h->api.push_event ? h->api.push_event(h, co, ev) : lua_pushnil(co);
    else
        lua_pushnil(co);
    task_resume(t, 2);
}

static struct task *concurrent_task(struct plugin *p)
{
    struct task *t = p->pool;
    if (t) {
        p->pool = t->next;
        t->next = p->tasks;
        p->tasks = t;
        return t;
    }
    return task_new(p, 0);
}

/* ----------------------------------------------------------------- waits */

struct host_wait *host_wait_begin(lua_State *L, host_cancel_fn cancel, void *ctx)
{
    struct task *t = task_of(L);
    if (!t || t->wait || t->co != L)
        return NULL;
    struct host_wait *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->t = t;
    w->cancel = cancel;
    w->ctx = ctx;
    t->wait = w;
    return w;
}

void host_wait_abandon(struct host_wait *w)
{
    w->t->wait = NULL;
    free(w);
}

int host_wait_yield(lua_State *L)
{
    lua_pushlightuserdata(L, &WAIT_MARK);
    return lua_yield(L, 1);
}

static void wait_cancel(struct host_wait *w)
{
    w->t->wait = NULL;
    if (w->cancel)
        w->cancel(w->ctx);
    if (w->queued)
        w->t = NULL; /* run_ready frees it */
    else
        free(w);
}

void host_wait_complete(struct host_wait *w, host_push_fn push, void *arg)
{
    struct task *t = w->t;
    struct host *h = t->p->h;
    w->nres = push ? push(t->co, arg) : 0;
    w->cancel = NULL;
    if (h->depth == 0) {
        t->wait = NULL;
        int n = w->nres;
        free(w);
        task_resume(t, n);
        return;
    }
    /* Completed from inside a running task: resume once that one yields. */
    w->queued = 1;
    w->next_ready = NULL;
    *h->ready_tail = w;
    h->ready_tail = &w->next_ready;
}

static void run_ready(struct host *h)
{
    while (h->ready) {
        struct host_wait *w = h->ready;
        h->ready = w->next_ready;
        if (!h->ready)
            h->ready_tail = &h->ready;
        struct task *t = w->t;
        int n = w->nres;
        free(w);
        if (!t)
            continue; /* cancelled after completing */
        t->wait = NULL;
        task_resume(t, n);
    }
}

/* ----------------------------------------------------------------- inbox */

static int inbox_push(struct plugin *p, struct lua_sub *sub, int fn_ref, struct event *ev)
{
    if (p->in_count == p->in_cap) {
        if (p->in_cap >= p->h->opt.inbox_size)
            return -1;
        size_t cap = p->in_cap ? p->in_cap * 2 : 16;
        if (cap > p->h->opt.inbox_size)
            cap = p->h->opt.inbox_size;
        struct inbox_item *items = malloc(cap * sizeof *items);
        if (!items)
            return -1;
        for (size_t i = 0; i < p->in_count; i++)
            items[i] = p->inbox[(p->in_head + i) % p->in_cap];
        free(p->inbox);
        p->inbox = items;
        p->in_cap = cap;
        p->in_head = 0;
    }
    struct inbox_item *it = &p->inbox[(p->in_head + p->in_count) % p->in_cap];
    it->sub = sub;
    it->fn_ref = fn_ref;
    it->ev = ev ? event_ref(ev) : NULL;
    if (sub)
        sub->pending++;
    p->in_count++;
    return 0;
}

static void sub_release_pending(struct lua_sub *s);

static void item_release(struct plugin *p, struct inbox_item *it)
{
    if (it->ev)
        event_unref(it->ev);
    if (it->sub)
        sub_release_pending(it->sub);
    else
        host_unref(p->h, it->fn_ref);
}

static int worker_ready(struct plugin *p)
{
    if (p->hold || p->state == PLUGIN_STOPPED || p->state == PLUGIN_FAILED)
        return 0;
    if (p->worker && p->worker->busy)
        return 0;
    if (!p->worker)
        p->worker = task_new(p, 1);
    return p->worker != NULL;
}

/* Run queued deliveries while the worker is free. */
/* How long one loop turn may spend on a backed-up inbox, so that a plugin
 * whose wait just ended does not hold up the network and other plugins. */
#define PUMP_SLICE_S 0.002

static void on_pump_turn(uv_idle_t *idle)
{
    struct host *h = idle->data;
    uv_idle_stop(idle);
    for (struct plugin *p = h->plugins; p; p = p->next) {
        if (p->pump_wanted) {
            p->pump_wanted = 0;
            plugin_pump(p);
        }
    }
}

static void plugin_pump(struct plugin *p)
{
    if (p->pumping)
        return; /* the outer call keeps going: no recursion per item */
    p->pumping = 1;
    double until = now_seconds() + PUMP_SLICE_S;
    unsigned n = 0;
    while (p->in_count > 0 && worker_ready(p)) {
        if ((++n & 15) == 0 && now_seconds() > until) {
            p->pump_wanted = 1;
            if (!p->h->closing)
                uv_idle_start(&p->h->pump_idle, on_pump_turn);
            break;
        }
        struct inbox_item it = p->inbox[p->in_head];
        p->in_head = (p->in_head + 1) % p->in_cap;
        p->in_count--;
        if (!it.sub || !it.sub->dead)
            task_run(p->worker, it.sub ? it.sub->fn_ref : it.fn_ref, it.ev);
        item_release(p, &it);
    }
    p->pumping = 0;
}

static void deliver(struct plugin *p, struct lua_sub *sub, int fn_ref, struct event *ev, int concurrent)
{
    if (p->state == PLUGIN_STOPPED || p->state == PLUGIN_FAILED)
        return;
    if (concurrent && !p->hold) {
        struct task *t = concurrent_task(p);
        if (t)
            task_run(t, fn_ref, ev);
        return;
    }
    if (p->in_count == 0 && worker_ready(p)) {
        task_run(p->worker, fn_ref, ev); /* the common case: no queueing */
        return;
    }
    if (inbox_push(p, sub, fn_ref, ev) != 0) {
        p->dropped++;
        char msg[96];
        snprintf(msg, sizeof msg, "inbox full (%zu): deliveries dropped", p->in_cap);
        if (ratelog_hit(&p->errlog, INBOX_SITE, msg, now_seconds(), emit_summary, p))
            log_warn(p->name, "inbox full (%zu): %llu deliveries dropped so far", p->in_cap,
                     (unsigned long long)p->dropped);
        else
            arm_errlog(p->h);
    }
}

/* --------------------------------------------------------- subscriptions */

static void on_bus_event(struct event *ev, void *ctx)
{
    struct lua_sub *s = ctx;
    if (!s->dead)
        deliver(s->p, s, s->fn_ref, ev, s->concurrent);
}

struct lua_sub *host_subscribe(struct plugin *p, const char *pattern, const char *const *tags,
                               int tag_count, int priority, int fn_ref, int concurrent)
{
    struct lua_sub *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->p = p;
    s->fn_ref = fn_ref;
    s->concurrent = concurrent;
    s->pattern = strdup(pattern);
    s->tags = tag_count ? calloc((size_t)tag_count, sizeof *s->tags) : NULL;
    int ok = s->pattern && (tag_count == 0 || s->tags);
    for (int i = 0; ok && i < tag_count; i++) {
        s->tags[i] = strdup(tags[i]);
        ok = s->tags[i] != NULL;
        s->tag_count = i + 1;
    }
    if (ok)
        s->bsub = bus_subscribe(p->h->bus, pattern, tags, tag_count, priority, on_bus_event, s);
    if (!ok || !s->bsub) {
        for (int i = 0; i < s->tag_count; i++)
            free(s->tags[i]);
        free(s->tags);
        free(s->pattern);
        free(s);
        return NULL;
    }
    s->next = p->subs;
    p->subs = s;
    return s;
}

static void sub_free(struct lua_sub *s)
{
    host_unref(s->p->h, s->fn_ref);
    for (int i = 0; i < s->tag_count; i++)
        free(s->tags[i]);
    free(s->tags);
    free(s->pattern);
    free(s);
}

static void sub_release_pending(struct lua_sub *s)
{
    if (--s->pending == 0 && s->dead)
        sub_free(s);
}

void host_sub_set_handle(struct lua_sub *s, struct lua_sub **handle)
{
    s->handle = handle;
}

void host_unsubscribe(struct lua_sub *s)
{
    if (s->dead)
        return;
    s->dead = 1;
    if (s->handle)
        *s->handle = NULL;
    s->handle = NULL;
    bus_unsubscribe(s->p->h->bus, s->bsub);
    s->bsub = NULL;
    for (struct lua_sub **pp = &s->p->subs; *pp; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    }
    if (s->pending == 0)
        sub_free(s);
}

void host_call_later(struct plugin *p, int fn_ref)
{
    struct host *h = p->h;
    lua_rawgeti(h->L, LUA_REGISTRYINDEX, fn_ref);
    int own = host_ref(h, h->L);
    if (p->in_count == 0 && worker_ready(p)) {
        task_run(p->worker, own, NULL);
        host_unref(h, own);
        return;
    }
    if (inbox_push(p, NULL, own, NULL) != 0) {
        host_unref(h, own);
        p->dropped++;
    }
}

/* --------------------------------------------------------------- plugins */

struct plugin *host_plugin_new(struct host *h, const char *name)
{
    struct plugin *p = calloc(1, sizeof *p);
    if (!p || !(p->name = strdup(name))) {
        free(p);
        return NULL;
    }
    p->h = h;
    p->resources.next = p->resources.prev = &p->resources;
    ratelog_init(&p->errlog, ERRLOG_BURST, 0, ERRLOG_SITES);
    *h->plugins_tail = p;
    h->plugins_tail = &p->next;
    return p;
}

void host_plugin_set_state(struct plugin *p, enum plugin_state state)
{
    p->state = state;
    if (state == PLUGIN_STARTED)
        plugin_pump(p);
}

void host_plugin_own(struct plugin *p, struct plugin_resource *r)
{
    r->next = p->resources.next;
    r->prev = &p->resources;
    p->resources.next->prev = r;
    p->resources.next = r;
}

void host_plugin_disown(struct plugin_resource *r)
{
    if (!r->next)
        return;
    r->prev->next = r->next;
    r->next->prev = r->prev;
    r->next = r->prev = NULL;
}

void host_plugin_hold(struct plugin *p, int hold)
{
    p->hold = hold;
    if (!hold)
        plugin_pump(p);
}

void host_plugin_cancel_registrations(struct plugin *p)
{
    while (p->subs)
        host_unsubscribe(p->subs);
    while (p->resources.next != &p->resources) {
        struct plugin_resource *r = p->resources.next;
        host_plugin_disown(r);
        r->cancel(r);
    }
    while (p->tasks)
        task_discard(p->tasks);
    while (p->pool) {
        struct task *t = p->pool;
        p->pool = t->next;
        t->next = p->tasks;
        p->tasks = t;
        task_discard(t);
    }
}

void host_plugin_drop_inbox(struct plugin *p)
{
    while (p->in_count > 0) {
        struct inbox_item it = p->inbox[p->in_head];
        p->in_head = (p->in_head + 1) % p->in_cap;
        p->in_count--;
        item_release(p, &it);
    }
}

void host_plugin_cancel_all(struct plugin *p)
{
    host_plugin_cancel_registrations(p);
    host_plugin_drop_inbox(p);
}

void host_plugin_reroute_inbox(struct plugin *p)
{
    size_t n = p->in_count;
    for (size_t i = 0; i < n; i++) {
        struct inbox_item it = p->inbox[p->in_head];
        p->in_head = (p->in_head + 1) % p->in_cap;
        p->in_count--;
        if (it.sub && it.sub->dead && it.ev) {
            for (struct lua_sub *s = p->subs; s; s = s->next) {
                int match = bus_pattern_match(s->pattern, it.ev->type);
                for (int k = 0; match && k < s->tag_count; k++)
                    match = event_has_tag(it.ev, s->tags[k]);
                if (match && inbox_push(p, s, s->fn_ref, it.ev) != 0)
                    p->dropped++;
            }
            item_release(p, &it);
        } else if (inbox_push(p, it.sub, it.fn_ref, it.ev) == 0) {
            /* re-queued as it was: drop the extra references we just took */
            if (it.ev)
                event_unref(it.ev);
            if (it.sub)
                it.sub->pending--;
        } else {
            item_release(p, &it);
        }
    }
}

void host_set_api_hooks(struct host *h, const struct host_api_hooks *hooks)
{
    h->api = *hooks;
}

/* ------------------------------------------------------------ lifecycle */

struct host *host_new(uv_loop_t *loop, struct bus *bus, lua_State *L, const struct host_options *opts)
{
    struct host *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->loop = loop;
    h->bus = bus;
    h->L = L;
    *(struct task **)lua_getextraspace(L) = NULL; /* no task: threads copy this, so waits outside a task refuse */
    h->opt = *opts;
    if (h->opt.instruction_budget <= 0 || h->opt.instruction_budget > 0x7fffffff)
        h->opt.instruction_budget = 10000000;
    if (h->opt.inbox_size == 0)
        h->opt.inbox_size = 10000;
    h->ready_tail = &h->ready;
    h->plugins_tail = &h->plugins;
    h->worker_factory_ref = LUA_NOREF;
    h->manager_ref = LUA_NOREF;
    lua_pushlightuserdata(L, h);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &HOST_KEY);

    if (luaL_loadbufferx(L, WORKER_SOURCE, sizeof WORKER_SOURCE - 1, "=worker", "t") != LUA_OK) {
        log_error("host", "worker: %s", lua_tostring(L, -1));
        lua_pop(L, 1);
        free(h);
        return NULL;
    }
    lua_pushlightuserdata(L, &DONE_MARK);
    lua_getglobal(L, "coroutine");
    lua_getfield(L, -1, "yield");
    lua_remove(L, -2);
    if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
        log_error("host", "worker: %s", lua_tostring(L, -1));
        lua_pop(L, 1);
        free(h);
        return NULL;
    }
    h->worker_factory_ref = host_ref(h, L);
    budget_instructions = (int)h->opt.instruction_budget;
    if (watchdog_start(h->opt.budget_after_us, arm_budget) != 0) {
        host_unref(h, h->worker_factory_ref);
        free(h);
        return NULL;
    }
    uv_idle_init(loop, &h->reload_idle); /* cannot fail */
    uv_idle_init(loop, &h->pump_idle);
    uv_timer_init(loop, &h->errlog_timer);
    h->errlog_timer.data = h;
    h->reload_idle.data = h->pump_idle.data = h;
    return h;
}

static void on_host_handle_closed(uv_handle_t *handle) { (void)handle; }

void host_close(struct host *h)
{
    h->closing = 1;
    watchdog_stop();
    for (struct plugin *p = h->plugins; p; p = p->next)
        host_plugin_cancel_all(p);
    run_ready(h);
    host_unref(h, h->worker_factory_ref);
    host_unref(h, h->manager_ref);
    h->worker_factory_ref = h->manager_ref = LUA_NOREF;
    uv_close((uv_handle_t *)&h->reload_idle, on_host_handle_closed);
    uv_close((uv_handle_t *)&h->pump_idle, on_host_handle_closed);
    /* What is still counted is said now, not lost. */
    double now = now_seconds();
    for (struct plugin *p = h->plugins; p; p = p->next)
        ratelog_flush(&p->errlog, now, 1, emit_summary, p);
    uv_close((uv_handle_t *)&h->errlog_timer, on_host_handle_closed);
}

void host_free(struct host *h)
{
    if (!h)
        return;
    struct plugin *p = h->plugins;
    while (p) {
        struct plugin *next = p->next;
        free(p->inbox);
        free(p->last_error);
        ratelog_free(&p->errlog);
        free(p->name);
        free(p);
        p = next;
    }
    free(h->reload_name);
    free(h);
}
