/* host_private: the host's data (tasks, waits, subscriptions, inboxes,
 * plugin slots) shared by the files of the host component, and the calls
 * manager.c makes into host.c (never the other way). Uses host.h. */
#ifndef DAZ_HOST_PRIVATE_H
#define DAZ_HOST_PRIVATE_H

#include "core/ratelog.h"
#include "host/host.h"

struct task {
    struct plugin *p;
    lua_State *co;
    int co_ref;
    int is_worker;
    int busy;      /* running or waiting */
    int aborted;   /* the budget hook fired */
    struct host_wait *wait;
    struct task *next; /* in p->tasks */
};

struct host_wait {
    struct task *t;
    host_cancel_fn cancel;
    void *ctx;
    int nres;          /* values pushed on t->co by the completion */
    int queued;        /* in the host's ready list: run_ready frees it */
    struct host_wait *next_ready;
};

struct lua_sub {
    struct plugin *p;
    struct bus_sub *bsub;
    int fn_ref;
    int concurrent;
    int dead;
    int pending;       /* inbox items that point here */
    char *pattern;
    char **tags;
    int tag_count;
    struct lua_sub **handle; /* the Lua handle's pointer to us, nulled when we die */
    struct lua_sub *next;
};

struct inbox_item {
    struct lua_sub *sub; /* NULL: a call whose fn_ref the item owns */
    int fn_ref;
    struct event *ev;
};

struct plugin {
    struct host *h;
    char *name;
    enum plugin_state state;
    int hold;
    struct task *worker;
    struct task *tasks;    /* every live task, the worker included */
    struct task *pool;     /* idle concurrent tasks, linked by next */
    struct inbox_item *inbox;
    size_t in_head, in_count, in_cap;
    struct lua_sub *subs;
    struct plugin_resource resources; /* sentinel of a circular list */
    uint64_t handled, errors, dropped;
    double handler_seconds;
    char *last_error;
    double error_window_start;
    int errors_in_window;
    int degraded;
    int pumping;
    int pump_wanted;   /* its inbox was left for the next loop turn */
    unsigned long long hist[HOST_HIST_BUCKETS + 1];
    struct ratelog errlog;  /* handler errors and inbox drops, per site */
    struct plugin *next;
};

struct host {
    uv_loop_t *loop;
    struct bus *bus;
    lua_State *L;
    struct host_options opt;
    int worker_factory_ref;
    long refs;
    int depth;                 /* > 0 while a task runs */
    struct task *current;
    struct host_wait *ready, **ready_tail;
    struct plugin *plugins;
    struct plugin **plugins_tail;
    int manager_ref;           /* lua/core/plugins.lua */
    uv_idle_t reload_idle;
    uv_idle_t pump_idle;       /* continues inboxes left over from a turn */
    char *reload_name;         /* "" = every changed plugin */
    int reload_pending;
    uv_timer_t errlog_timer;   /* the plugins' summary lines when due */
    int errlog_armed;
    int closing;
    struct host_api_hooks api; /* what the API layer (api.c) registered */
};


/* The traceback message handler host_pcall uses (a lua_CFunction). */
int host_traceback(lua_State *L);

/* Everything the plugin registered, cancelled. Queued deliveries stay in
 * the inbox (a reload hands them to the new code). */
void host_plugin_cancel_registrations(struct plugin *p);
/* Queued deliveries thrown away. */
void host_plugin_drop_inbox(struct plugin *p);
/* After a reload: deliveries the old code's subscriptions queued go to the
 * new code's subscriptions that match them, in their original order. */
void host_plugin_reroute_inbox(struct plugin *p);

#endif
