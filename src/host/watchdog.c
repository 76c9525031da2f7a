/* watchdog: see watchdog.h. */
#include "host/watchdog.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "core/log.h"

/* Written by the loop thread, read by the watch thread and the handler. */
static _Atomic(lua_State *) running;
static atomic_ulong run_seq;      /* bumped at every enter */
static atomic_ulong arm_seq;      /* the run the watch thread asked to arm */
static watchdog_arm_fn arm_fn;
static long threshold_ns;
static pthread_t loop_thread, watch_thread;
static atomic_int stopping;
static int started;
static int signum;

static void on_signal(int sig)
{
    (void)sig;
    int saved = errno;
    lua_State *L = atomic_load(&running);
    /* Only the run that was too long: it may have ended meanwhile. */
    if (L && atomic_load(&run_seq) == atomic_load(&arm_seq))
        arm_fn(L);
    errno = saved;
}

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Polls often (half the threshold) while Lua is running or has just run,
 * and every IDLE_POLL_NS otherwise: a bot whose plugins only wake for a
 * timer now and then would otherwise take thousands of wake-ups a second.
 * The cost: a long run that starts after a quiet spell is seen up to
 * IDLE_POLL_NS late, so it is armed after at most threshold + IDLE_POLL_NS. */
#define IDLE_POLL_NS 20000000L

static void *watch(void *arg)
{
    (void)arg;
    unsigned long seen = atomic_load(&run_seq), armed = 0;
    long long seen_at = now_ns();
    int active = 0;
    while (!atomic_load(&stopping)) {
        struct timespec nap = {0, active ? threshold_ns / 2 : IDLE_POLL_NS};
        nanosleep(&nap, NULL);
        long long now = now_ns();
        unsigned long seq = atomic_load(&run_seq);
        int in_lua = atomic_load(&running) != NULL;
        if (seq != seen) {
            seen = seq;
            seen_at = now;
            active = 1;
            continue;
        }
        active = in_lua;
        if (in_lua && seq != armed && now - seen_at >= threshold_ns) {
            armed = seq;
            atomic_store(&arm_seq, seq);
            pthread_kill(loop_thread, signum);
        }
    }
    return NULL;
}

int watchdog_start(long threshold_us, watchdog_arm_fn arm)
{
    arm_fn = arm;
    threshold_ns = (threshold_us > 0 ? threshold_us : 1000) * 1000L;
    signum = SIGRTMIN + 3;
    loop_thread = pthread_self();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(signum, &sa, NULL) != 0) {
        log_error("watchdog", "sigaction: %s", strerror(errno));
        return -1;
    }
    /* The watch thread must not take the signal itself. */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, signum);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    int rc = pthread_create(&watch_thread, NULL, watch, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        log_error("watchdog", "cannot start its thread: %s", strerror(rc));
        return -1;
    }
    started = 1;
    return 0;
}

void watchdog_stop(void)
{
    if (!started)
        return;
    atomic_store(&stopping, 1);
    pthread_join(watch_thread, NULL);
    started = 0;
    atomic_store(&stopping, 0);
    signal(signum, SIG_IGN);
}

lua_State *watchdog_enter(lua_State *L)
{
    lua_State *previous = atomic_exchange(&running, L);
    atomic_fetch_add(&run_seq, 1);
    return previous;
}

void watchdog_leave(lua_State *previous)
{
    atomic_store(&running, previous);
    atomic_fetch_add(&run_seq, 1);
}
